"""The morphology taxonomy: the one source of truth for classes, features, words and symbols.

A *scheme* (Galaxy10 DECaLS, the GZ2 seven-class summary, or a user's own JSON/YAML file) lists
classes. Each class has structured morphology features in Galaxy Zoo terms, a canonical text
label, several volunteer-style descriptions, and a symbol spec derived from its features. The
symbol renderer, the Galaxy10-Sim generator, the text prompts and the evaluation all read from
here, so a class is described once.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from galaxalign.errors import GalaxAlignError

BULGE_LEVELS = ("none", "small", "moderate", "large", "dominant")
# Bulge-to-total flux ratio range behind each prominence word (Galaxy Zoo "bulge size" answers).
BULGE_FRACTION = {
    "none": (0.0, 0.05),
    "small": (0.05, 0.2),
    "moderate": (0.2, 0.4),
    "large": (0.4, 0.7),
    "dominant": (0.7, 1.0),
}
WINDING_LEVELS = ("tight", "medium", "loose")
# Logarithmic-spiral pitch angle range in degrees behind each winding word.
PITCH_DEG = {"tight": (7.0, 15.0), "medium": (13.0, 24.0), "loose": (22.0, 38.0)}
DISTURBANCE_LEVELS = ("none", "mild", "strong")
# Continuous disturbance (0 calm .. 1 torn) behind each disturbance word.
DISTURBANCE = {"none": (0.0, 0.05), "mild": (0.25, 0.5), "strong": (0.6, 1.0)}
BUILTIN_SCHEMES = ("galaxy10", "gz2")


@dataclass(frozen=True)
class MorphologyFeatures:
    """What a class looks like, in the vocabulary of the Galaxy Zoo decision tree."""

    bulge: str  # one of BULGE_LEVELS
    disk: bool
    bar: bool
    spiral_arms: bool
    arm_winding: str | None  # one of WINDING_LEVELS, or None without arms
    arm_count: tuple[int, int]  # inclusive range; (0, 0) without arms
    edge_on: bool
    axis_ratio: tuple[float, float]  # projected minor/major axis ratio range
    merger: bool
    disturbance: str  # one of DISTURBANCE_LEVELS

    @property
    def bulge_fraction(self) -> tuple[float, float]:
        return BULGE_FRACTION[self.bulge]

    @property
    def pitch_deg(self) -> tuple[float, float] | None:
        return PITCH_DEG[self.arm_winding] if self.arm_winding else None


@dataclass(frozen=True)
class SymbolSpec:
    """How to draw a class's schematic symbol; derived from its features, never written by hand."""

    shape: str  # smooth | disk | spiral | edge_on | merger | irregular
    axis_ratio: float  # of the main body
    bulge_radius: float  # relative to the body's major radius; 0 means no bulge
    bar: bool
    arms: int
    pitch_deg: float  # 0 without arms
    tails: bool
    asymmetry: float  # 0 symmetric .. 1 strongly irregular


@dataclass(frozen=True)
class ClassSpec:
    id: int
    key: str
    name: str
    label: str
    descriptions: tuple[str, ...]
    features: MorphologyFeatures
    group: str | None = None  # the scheme's coarse group this class falls in (see Scheme.groups)

    @property
    def symbol(self) -> SymbolSpec:
        return symbol_spec(self.features)

    @property
    def texts(self) -> tuple[str, ...]:
        """Every phrase that names this class: the label first, then the descriptions."""
        return (self.label, *self.descriptions)


@dataclass(frozen=True)
class Scheme:
    """A class scheme. `groups` are coarse groups (key, display name) shared across schemes, so
    that runs of different schemes, or labels no scheme's classes fit, can meet at a coarser
    level (smooth, featured, edge-on, merger); each class names its group. Optional for a
    user's scheme."""

    name: str
    title: str
    classes: tuple[ClassSpec, ...]
    groups: tuple[tuple[str, str], ...] = ()

    def __len__(self) -> int:
        return len(self.classes)

    def __getitem__(self, class_id: int) -> ClassSpec:
        return self.classes[class_id]

    def __iter__(self):
        return iter(self.classes)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.classes]

    @property
    def keys(self) -> list[str]:
        return [c.key for c in self.classes]

    @property
    def group_names(self) -> dict[str, str]:
        """Coarse group key -> display name, in the scheme's order."""
        return dict(self.groups)

    def by_key(self, key: str) -> ClassSpec:
        """Look a class up by key, id (as text) or name, case-insensitively."""
        wanted = key.strip().lower()
        for c in self.classes:
            if wanted in (c.key.lower(), str(c.id), c.name.lower()):
                return c
        raise GalaxAlignError(f"scheme {self.name}: no class {key!r} (known: {', '.join(self.keys)})")

    def to_dict(self) -> dict[str, Any]:
        classes = []
        for c in self.classes:
            d: dict[str, Any] = {"id": c.id, "key": c.key, "name": c.name}
            if c.group is not None:
                d["group"] = c.group
            d["label"] = c.label
            d["descriptions"] = list(c.descriptions)
            d["features"] = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(c.features).items()}
            classes.append(d)
        out: dict[str, Any] = {"name": self.name, "title": self.title}
        if self.groups:
            out["groups"] = [{"key": k, "name": n} for k, n in self.groups]
        return {**out, "classes": classes}


def symbol_spec(f: MorphologyFeatures) -> SymbolSpec:
    """Map morphology features to the drawing a Galaxy Zoo volunteer would be shown."""
    bulge_radius = {"none": 0.0, "small": 0.12, "moderate": 0.2, "large": 0.3, "dominant": 0.0}[f.bulge]
    if f.merger:
        shape = "merger"
    elif f.disturbance == "strong":
        shape = "irregular"
    elif f.edge_on:
        shape = "edge_on"
    elif f.spiral_arms:
        shape = "spiral"
    elif f.disk:
        shape = "disk"
    else:
        shape = "smooth"
        bulge_radius = 0.0  # a smooth galaxy is all bulge: the body itself is drawn
    # Face-on disks are drawn face on, as Galaxy Zoo's icons do; other shapes at their typical ratio.
    q = f.axis_ratio[1] if shape in ("spiral", "disk") else (f.axis_ratio[0] + f.axis_ratio[1]) / 2
    arms = (f.arm_count[0] + f.arm_count[1]) // 2 if f.spiral_arms else 0
    pitch = sum(PITCH_DEG[f.arm_winding]) / 2 if f.spiral_arms and f.arm_winding else 0.0
    asymmetry = {"none": 0.0, "mild": 0.35, "strong": 0.7}[f.disturbance]
    return SymbolSpec(
        shape=shape,
        axis_ratio=round(q, 3),
        bulge_radius=bulge_radius,
        bar=f.bar,
        arms=arms,
        pitch_deg=pitch,
        tails=f.merger,
        asymmetry=asymmetry,
    )


# ---------------------------------------------------------------- parsing and validation


def _field(obj: dict, name: str, where: str, source: str):
    if not isinstance(obj, dict):
        raise GalaxAlignError(f"{source}: {where}: expected an object, got {type(obj).__name__}")
    if name not in obj:
        raise GalaxAlignError(f"{source}: {where}.{name}: missing field")
    return obj[name]


def _typed(value, kind, path: str, source: str):
    ok = isinstance(value, kind) and not (kind in (int, float, (int, float)) and isinstance(value, bool))
    if not ok:
        want = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise GalaxAlignError(f"{source}: {path}: expected {want}, got {value!r}")
    return value


def _choice(value, choices, path: str, source: str):
    if value not in choices:
        raise GalaxAlignError(f"{source}: {path}: {value!r} is not one of {', '.join(map(str, choices))}")
    return value


def _range(value, kind, lo, hi, path: str, source: str) -> tuple:
    if not (isinstance(value, (list, tuple)) and len(value) == 2):
        raise GalaxAlignError(f"{source}: {path}: expected [min, max], got {value!r}")
    a, b = (_typed(v, kind, path, source) for v in value)
    if not (lo <= a <= b <= hi):
        raise GalaxAlignError(f"{source}: {path}: expected {lo} <= min <= max <= {hi}, got {list(value)}")
    return (a, b)


def _parse_features(d, path: str, source: str) -> MorphologyFeatures:
    def get(name):
        return _field(d, name, path, source)

    p = lambda name: f"{path}.{name}"  # noqa: E731
    spiral = _typed(get("spiral_arms"), bool, p("spiral_arms"), source)
    winding = get("arm_winding")
    if spiral:
        _choice(winding, WINDING_LEVELS, p("arm_winding"), source)
    elif winding is not None:
        raise GalaxAlignError(f"{source}: {p('arm_winding')}: must be null when spiral_arms is false")
    arm_count = _range(get("arm_count"), int, 0, 8, p("arm_count"), source)
    if spiral and arm_count[0] < 1:
        raise GalaxAlignError(f"{source}: {p('arm_count')}: a spiral class needs at least 1 arm")
    return MorphologyFeatures(
        bulge=_choice(get("bulge"), BULGE_LEVELS, p("bulge"), source),
        disk=_typed(get("disk"), bool, p("disk"), source),
        bar=_typed(get("bar"), bool, p("bar"), source),
        spiral_arms=spiral,
        arm_winding=winding,
        arm_count=arm_count,
        edge_on=_typed(get("edge_on"), bool, p("edge_on"), source),
        axis_ratio=_range(get("axis_ratio"), (int, float), 0.01, 1.0, p("axis_ratio"), source),
        merger=_typed(get("merger"), bool, p("merger"), source),
        disturbance=_choice(get("disturbance"), DISTURBANCE_LEVELS, p("disturbance"), source),
    )


def _parse_groups(raw: Any, source: str) -> tuple[tuple[str, str], ...]:
    if not isinstance(raw, list) or not raw:
        raise GalaxAlignError(f"{source}: scheme.groups: expected a non-empty list of {{key, name}}")
    groups = []
    for i, g in enumerate(raw):
        where = f"groups[{i}]"
        key = _typed(_field(g, "key", where, source), str, f"{where}.key", source)
        groups.append((key, _typed(_field(g, "name", where, source), str, f"{where}.name", source)))
    keys = [k for k, _ in groups]
    if len(set(keys)) != len(keys):
        raise GalaxAlignError(f"{source}: scheme.groups: duplicate key(s) {', '.join(sorted(set(keys)))}")
    return tuple(groups)


def parse_scheme(data: Any, source: str = "<scheme>") -> Scheme:
    """Validate a scheme given as plain data; errors name the source and the field."""
    classes_raw = _field(data, "classes", "scheme", source)
    groups = _parse_groups(data["groups"], source) if "groups" in data else ()
    if not isinstance(classes_raw, list) or not classes_raw:
        raise GalaxAlignError(f"{source}: scheme.classes: expected a non-empty list")
    classes = []
    for i, c in enumerate(classes_raw):
        where = f"classes[{i}]"
        cid = _typed(_field(c, "id", where, source), int, f"{where}.id", source)
        if cid != i:
            raise GalaxAlignError(f"{source}: {where}.id: ids must run 0..N-1 in order, got {cid} at position {i}")
        descriptions = _field(c, "descriptions", where, source)
        if not isinstance(descriptions, list) or not descriptions:
            raise GalaxAlignError(f"{source}: {where}.descriptions: expected a non-empty list of strings")
        for j, text in enumerate(descriptions):
            _typed(text, str, f"{where}.descriptions[{j}]", source)
        group = c.get("group")
        if groups and group is None:
            raise GalaxAlignError(f"{source}: {where}.group: missing field (the scheme declares groups)")
        if group is not None:
            if not groups:
                raise GalaxAlignError(f"{source}: {where}.group: the scheme declares no groups")
            _choice(group, [k for k, _ in groups], f"{where}.group", source)
        classes.append(
            ClassSpec(
                id=cid,
                key=_typed(_field(c, "key", where, source), str, f"{where}.key", source),
                name=_typed(_field(c, "name", where, source), str, f"{where}.name", source),
                label=_typed(_field(c, "label", where, source), str, f"{where}.label", source),
                descriptions=tuple(descriptions),
                features=_parse_features(_field(c, "features", where, source), f"{where}.features", source),
                group=group,
            )
        )
    keys = [c.key for c in classes]
    dupes = sorted({k for k in keys if keys.count(k) > 1})
    if dupes:
        raise GalaxAlignError(f"{source}: classes: duplicate key(s) {', '.join(dupes)}")
    name = _typed(data.get("name", Path(source).stem), str, "scheme.name", source)
    title = _typed(data.get("title", name), str, "scheme.title", source)
    return Scheme(name=name, title=title, classes=tuple(classes), groups=groups)


def load_scheme(name_or_path: str | Path = "galaxy10") -> Scheme:
    """A built-in scheme by name (`galaxy10`, `gz2`) or a user's JSON/YAML file."""
    if isinstance(name_or_path, Scheme):
        return name_or_path
    text_name = str(name_or_path)
    if text_name in BUILTIN_SCHEMES:
        raw = resources.files(__package__).joinpath("schemes", f"{text_name}.json").read_text()
        return parse_scheme(json.loads(raw), source=f"{text_name}.json")
    path = Path(text_name)
    if not path.exists():
        raise GalaxAlignError(f"{path}: no such scheme file (built-in schemes: {', '.join(BUILTIN_SCHEMES)})")
    try:
        raw_text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise GalaxAlignError(f"{path}: cannot read scheme file ({exc})") from None
    is_yaml = path.suffix.lower() in (".yaml", ".yml")
    try:
        if is_yaml:
            import yaml

            data = yaml.safe_load(raw_text)
        else:
            data = json.loads(raw_text)
    except Exception as exc:  # yaml and json raise their own error types
        message = " ".join(str(exc).split())
        raise GalaxAlignError(f"{path}: not valid {'YAML' if is_yaml else 'JSON'}: {message}") from None
    return parse_scheme(data, source=str(path))
