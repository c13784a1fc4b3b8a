"""One galaxy's own Galaxy Zoo answers, read from its true parameters or from volunteers' votes.

A class label says what a class looks like; the answers say what this galaxy looks like. They
follow the GZ DECaLS decision tree (Walmsley et al. 2022): smooth or featured; a smooth galaxy
is asked how rounded; a featured one whether it is an edge-on disk; an edge-on disk what its
bulge looks like; a face-on one about a bar, spiral arms (how many, how tightly wound) and the
bulge size; every galaxy whether it is merging or disturbed. Each answer carries a confidence in
[0, 1] (the share of votes, or how far a synthetic parameter is from the answer's boundary). A
question off a galaxy's path is None (False for yes/no questions) with confidence 0.

`symbols.render_galaxy_symbol` draws these answers and `caption` words them as volunteers
answered, so a galaxy's symbol and text carry its own structure, not just its class.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from galaxalign.errors import GalaxAlignError
from galaxalign.morphology.votes import ANSWER_COLUMNS, VOTE_COLUMNS, VOTE_NAMES, answered, vote_fractions
from galaxalign.synth.params import PARAM_NAMES
from galaxalign.taxonomy import BULGE_FRACTION, BULGE_LEVELS, DISTURBANCE, PITCH_DEG, WINDING_LEVELS

__all__ = [
    "EXTRA_VOTE_COLUMNS",
    "GalaxyAnswers",
    "PARAM_RULES",
    "answer_fractions",
    "answers_from_params",
    "answers_from_votes",
    "caption",
    "dataset_answers",
]

# The answers each question may get, in GZ DECaLS words (bulge and winding words from the taxonomy).
SMOOTH_OR_FEATURED = ("smooth", "featured")
HOW_ROUNDED = ("cigar", "in-between", "round")
EDGE_ON_BULGE = ("none", "rounded", "boxy")
BAR = ("none", "weak", "strong")
ARM_COUNTS = (1, 2, 3, 4, "more")
WINDING = WINDING_LEVELS
BULGE_SIZE = BULGE_LEVELS
MERGING = ("none", "minor disturbance", "major disturbance", "merger")


def _edges(ranges: Mapping[str, tuple[float, float]], levels: tuple[str, ...]) -> tuple[float, ...]:
    """Boundaries between consecutive levels: the middle of where their ranges meet or overlap."""
    return tuple((ranges[a][1] + ranges[b][0]) / 2 for a, b in zip(levels, levels[1:]))


# ---------------------------------------------------------------- parameters -> answers, in one place
#
# Every rule is (edges, ramps): the answer changes at each edge, and its confidence is 0.5 right at
# an edge, rising linearly to 1 at that edge's ramp away from it. Graded rather than always 1,
# because Galaxy10-Sim overlaps neighbouring classes on purpose (difficulty widens every range) and
# volunteers split near a boundary too: a bar at the weak/strong edge is drawn half-faded. A zero
# ramp means a sharp edge (confidence 1 on both sides).
# Where the taxonomy or the generator defines the words, the edges are derived from it.
PARAM_RULES: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    # bulge_g_r - disk_g_r above this: the galaxy has its own bluer disk. The generator gives a
    # smooth galaxy one colour (gap 0) and a disk 0.45-0.7 against a bulge's 0.78-0.95 (gap >= 0.08).
    "disk_colour_gap": ((0.04,), (0.0,)),
    # disk axis_ratio below: edge-on (galaxy10 edge-on classes reach 0.35, face-on disks start at 0.4).
    "edge_on": ((0.375,), (0.075,)),
    # smooth axis_ratio: cigar | in-between | round, the middles of the galaxy10 smooth classes'
    # overlapping axis-ratio ranges (cigar 0.2-0.5, in-between 0.45-0.8, round 0.75-1).
    "how_rounded": ((0.475, 0.775), (0.05, 0.05)),
    # bar_strength (share of disk light in the bar): none | weak | strong. Weak bars are drawn at
    # 0.02-0.07, strong ones at 0.18-0.46 (params.WEAK_BAR, params._bar).
    "bar": ((0.01, 0.12), (0.01, 0.04)),
    # arm_strength above, with n_arms >= 1: spiral arms (drawn ones are >= 0.39).
    "spiral": ((0.15,), (0.1,)),
    # pitch_deg: tight | medium | loose, from taxonomy.PITCH_DEG (14 and 23 degrees).
    "winding": (_edges(PITCH_DEG, WINDING_LEVELS), (3.0, 3.0)),
    # bulge_fraction: none | small | moderate | large | dominant, from taxonomy.BULGE_FRACTION.
    "bulge_size": (_edges(BULGE_FRACTION, BULGE_LEVELS), (0.03, 0.04, 0.05, 0.05)),
    # edge-on bulge_fraction above: a rounded bulge; boxy when the disk also has a strong bar (a
    # boxy/peanut bulge is a bar seen side on); none below.
    "edge_on_bulge": ((BULGE_FRACTION["small"][1],), (0.06,)),
    # tail_strength above: merging (a companion without tails is a chance projection).
    "merger": ((0.05,), (0.04,)),
    # disturbance: none | minor | major disturbance, from taxonomy.DISTURBANCE (0.15 and 0.55).
    "disturbance": (_edges(DISTURBANCE, ("none", "mild", "strong")), (0.08, 0.08)),
}
# A parameter a hand-made row leaves out takes this value (NaN: unknown).
PARAM_DEFAULTS = {
    "axis_ratio": np.nan,
    "position_angle": np.nan,
    "bulge_fraction": 0.0,
    "bar_strength": 0.0,
    "n_arms": 0.0,
    "pitch_deg": np.nan,
    "arm_strength": 1.0,
    "disturbance": 0.0,
    "tail_strength": 0.0,
    "dust_strength": 0.0,
    "disk_g_r": np.nan,
    "bulge_g_r": np.nan,
    "merger_angle": np.nan,
}

# ---------------------------------------------------------------- votes -> answers
#
# Answers `votes.VOTE_COLUMNS` does not name (it keeps what the GZ2 summary needs), read by the
# same reader (`votes.vote_fractions`).
EXTRA_VOTE_COLUMNS = ANSWER_COLUMNS
ANSWER_NAMES = (*VOTE_NAMES, *EXTRA_VOTE_COLUMNS)


@dataclass(frozen=True)
class GalaxyAnswers:
    """One galaxy's majority answer at each Galaxy Zoo question, each with its confidence.

    None (False for edge_on and spiral) with confidence 0 marks a question off the galaxy's path.
    `axis_ratio` and `position_angle` (degrees, as the generator draws it: from the image's +x
    axis towards +y, rows down) are the geometry to draw with, None where unknown; for a merger
    the angle is the pair's, from the galaxy towards its companion, which is what its symbol turns.
    """

    smooth_or_featured: str = "smooth"
    smooth_or_featured_conf: float = 0.0
    how_rounded: str | None = None  # smooth only
    how_rounded_conf: float = 0.0
    edge_on: bool = False  # featured only
    edge_on_conf: float = 0.0
    edge_on_bulge: str | None = None  # edge-on only
    edge_on_bulge_conf: float = 0.0
    bar: str | None = None  # face-on only
    bar_conf: float = 0.0
    spiral: bool = False  # face-on only
    spiral_conf: float = 0.0
    arms: int | str | None = None  # spiral only
    arms_conf: float = 0.0
    winding: str | None = None  # spiral only
    winding_conf: float = 0.0
    bulge_size: str | None = None  # face-on only
    bulge_size_conf: float = 0.0
    merging: str = "none"
    merging_conf: float = 0.0
    axis_ratio: float | None = None
    position_angle: float | None = None

    def __post_init__(self) -> None:
        for name, choices in _CHOICES.items():
            value = getattr(self, name)
            if value not in choices or isinstance(value, bool) is not isinstance(choices[0], bool):
                raise GalaxAlignError(f"answers: {name}: {value!r} is not one of {', '.join(map(str, choices))}")
        for f in fields(self):
            if f.name.endswith("_conf"):
                value = getattr(self, f.name)
                if not 0.0 <= value <= 1.0:  # NaN fails too
                    raise GalaxAlignError(f"answers: {f.name}: must be in [0, 1], got {value!r}")
                object.__setattr__(self, f.name, float(value))
        if self.axis_ratio is not None and not 0.0 < self.axis_ratio <= 1.0:
            raise GalaxAlignError(f"answers: axis_ratio: must be in (0, 1], got {self.axis_ratio!r}")

    @property
    def face_on(self) -> bool:
        """Featured and not edge-on: the galaxies asked about bars, arms and bulge size."""
        return self.smooth_or_featured == "featured" and not self.edge_on


_CHOICES: dict[str, tuple] = {
    "smooth_or_featured": SMOOTH_OR_FEATURED,
    "how_rounded": (None, *HOW_ROUNDED),
    "edge_on": (False, True),
    "edge_on_bulge": (None, *EDGE_ON_BULGE),
    "bar": (None, *BAR),
    "spiral": (False, True),
    "arms": (None, *ARM_COUNTS),
    "winding": (None, *WINDING),
    "bulge_size": (None, *BULGE_SIZE),
    "merging": MERGING,
}


# ---------------------------------------------------------------- from generating parameters


def _level(x: np.ndarray, rule: str) -> tuple[np.ndarray, np.ndarray]:
    """Which interval between a rule's edges each value falls in, and how sure (0 where x is NaN)."""
    edges, ramps = (np.asarray(v) for v in PARAM_RULES[rule])
    index = np.searchsorted(edges, np.nan_to_num(x, nan=-np.inf), side="right")
    with np.errstate(divide="ignore", invalid="ignore"):  # a zero ramp: sure on either side
        closeness = np.abs(x[:, None] - edges[None, :]) / ramps[None, :]
    conf = 0.5 + 0.5 * np.clip(np.nan_to_num(closeness, nan=1.0).min(axis=1), 0.0, 1.0)
    return index, np.where(np.isnan(x), 0.0, conf)


def answers_from_params(params: Mapping[str, Any]) -> list[GalaxyAnswers]:
    """The answers a careful volunteer would give for each Galaxy10-Sim galaxy, from its true
    generating parameters (`GalaxyParams` names, one array per name; see `PARAM_RULES`)."""
    columns = {k: np.atleast_1d(np.asarray(v, dtype=np.float64)) for k, v in params.items()}
    if not columns:
        raise GalaxAlignError("answers: no parameter columns")
    n = len(next(iter(columns.values())))

    def col(name: str) -> np.ndarray:
        return columns.get(name, np.full(n, PARAM_DEFAULTS[name]))

    q, bulge, bar_strength, n_arms = col("axis_ratio"), col("bulge_fraction"), col("bar_strength"), col("n_arms")
    colour_gap = np.nan_to_num(col("bulge_g_r") - col("disk_g_r"), nan=0.0)
    has_arms = n_arms >= 1
    disk = (
        (colour_gap > PARAM_RULES["disk_colour_gap"][0][0])
        | has_arms
        | (bar_strength >= PARAM_RULES["bar"][0][0])
        | (col("dust_strength") > 0)
    )
    edge, edge_conf = _level(q, "edge_on")
    edge_on = (edge == 0) & (edge_conf > 0)  # below the edge, and the axis ratio is known
    rounded, rounded_conf = _level(q, "how_rounded")
    bar, bar_conf = _level(bar_strength, "bar")
    spiral, spiral_conf = _level(col("arm_strength"), "spiral")
    winding, winding_conf = _level(col("pitch_deg"), "winding")
    bulge_size, bulge_conf = _level(bulge, "bulge_size")
    edge_bulge, edge_bulge_conf = _level(bulge, "edge_on_bulge")
    merger, merger_conf = _level(col("tail_strength"), "merger")
    pair = (merger == 1) & ~np.isnan(col("merger_angle"))
    pa = np.where(pair, col("merger_angle"), col("position_angle"))
    disturbed, disturbed_conf = _level(col("disturbance"), "disturbance")

    out = []
    for i in range(n):
        a: dict[str, Any] = {"axis_ratio": _known(q[i]), "position_angle": _known(pa[i])}
        if disk[i]:
            a.update(smooth_or_featured="featured", smooth_or_featured_conf=1.0)
            a.update(edge_on=bool(edge_on[i]), edge_on_conf=edge_conf[i])
            if a["edge_on"]:
                shape = "boxy" if bar[i] == 2 else "rounded"
                a.update(edge_on_bulge=shape if edge_bulge[i] else "none", edge_on_bulge_conf=edge_bulge_conf[i])
            else:
                a.update(
                    bar=BAR[bar[i]],
                    bar_conf=bar_conf[i],
                    bulge_size=BULGE_SIZE[bulge_size[i]],
                    bulge_size_conf=bulge_conf[i],
                )
                arms = bool(has_arms[i] and spiral[i])
                a.update(spiral=arms, spiral_conf=spiral_conf[i] if has_arms[i] else 1.0)
                if arms:
                    count = int(n_arms[i])
                    a.update(arms=count if count <= 4 else "more", arms_conf=1.0)
                    known = winding_conf[i] > 0
                    a.update(winding=WINDING[winding[i]] if known else "medium", winding_conf=winding_conf[i])
        else:
            a.update(smooth_or_featured="smooth", smooth_or_featured_conf=1.0)
            known = rounded_conf[i] > 0
            a.update(how_rounded=HOW_ROUNDED[rounded[i]] if known else "in-between", how_rounded_conf=rounded_conf[i])
        if merger[i]:
            a.update(merging="merger", merging_conf=merger_conf[i])
        else:
            a.update(merging=MERGING[disturbed[i]], merging_conf=min(merger_conf[i], disturbed_conf[i]))
        out.append(GalaxyAnswers(**a))
    return out


def _known(value: float) -> float | None:
    return None if np.isnan(value) else float(value)


# ---------------------------------------------------------------- from vote fractions


def answers_from_votes(fractions: Mapping[str, Any]) -> list[GalaxyAnswers]:
    """The majority answer at each question down the tree, confidence = that answer's vote share.

    `fractions` holds canonical names (`votes.VOTE_NAMES`, plus `EXTRA_VOTE_COLUMNS` where known),
    NaN where a question was not asked. A question on a galaxy's path without votes gives its
    default answer with confidence 0. As in `votes.gz2_summary_keys`, a galaxy is barred when
    strong plus weak outvote no bar (strong or weak by which got more; a yes/no catalogue's yes
    counts as strong) and the confidence is the share who saw a bar.
    """
    columns = {k: np.atleast_1d(np.asarray(v, dtype=np.float64)) for k, v in fractions.items() if k in ANSWER_NAMES}
    if not columns:
        raise GalaxAlignError(f"answers: no vote fractions (expected some of {', '.join(VOTE_NAMES)})")
    n = len(next(iter(columns.values())))
    nan = np.full(n, np.nan)

    def get(name: str) -> np.ndarray:
        return columns.get(name, nan)

    def node(names: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
        return _plurality(np.stack([get(k) for k in names]))

    top, top_conf = node(("smooth", "featured"))
    rounded, rounded_conf = node(("cigar", "in_between", "round"))
    edge, edge_conf = node(("edge_on_no", "edge_on_yes"))
    edge_bulge, edge_bulge_conf = node(("edge_bulge_none", "edge_bulge_rounded", "edge_bulge_boxy"))
    strong, weak = get("bar_strong"), get("bar_weak")
    split = ~np.isnan(strong) & ~np.isnan(weak)
    bar_yes = np.where(split, strong + weak, get("bar_yes"))
    barred, bar_conf = _plurality(np.stack([get("bar_no"), bar_yes]))
    bar = np.where(barred == 1, np.where(split & (weak > strong), 1, 2), 0)  # BAR: none, weak, strong
    spiral, spiral_conf = node(("spiral_no", "spiral_yes"))
    arms, arms_conf = node(("arms_1", "arms_2", "arms_3", "arms_4", "arms_more"))
    winding, winding_conf = node(("winding_tight", "winding_medium", "winding_loose"))
    bulge, bulge_conf = node(("bulge_none", "bulge_small", "bulge_moderate", "bulge_large", "bulge_dominant"))
    merging, merging_conf = node(("merging_none", "merging_minor", "merging_major", "merging_merger"))
    # Catalogues with only the merger share (GZ2) decide merger against not-merger.
    only_merger = (merging_conf == 0) & ~np.isnan(get("merger"))
    merger_share = np.nan_to_num(get("merger"), nan=0.0)
    merging = np.where(only_merger, np.where(merger_share > 0.5, 3, 0), merging)
    merging_conf = np.where(only_merger, np.maximum(merger_share, 1 - merger_share), merging_conf)

    def pick(answers: tuple, index: np.ndarray, conf: np.ndarray, i: int, default) -> tuple[Any, float]:
        return (answers[index[i]], float(conf[i])) if conf[i] > 0 else (default, 0.0)

    out = []
    for i in range(n):
        a: dict[str, Any] = {}
        top_answer, a["smooth_or_featured_conf"] = pick(SMOOTH_OR_FEATURED, top, top_conf, i, "smooth")
        a["smooth_or_featured"] = top_answer
        if top_answer == "smooth":
            a["how_rounded"], a["how_rounded_conf"] = pick(HOW_ROUNDED, rounded, rounded_conf, i, "in-between")
        else:
            a["edge_on"], a["edge_on_conf"] = pick((False, True), edge, edge_conf, i, False)
            if a["edge_on"]:
                a["edge_on_bulge"], a["edge_on_bulge_conf"] = pick(
                    EDGE_ON_BULGE, edge_bulge, edge_bulge_conf, i, "none"
                )
            else:
                a["bar"], a["bar_conf"] = pick(BAR, bar, bar_conf, i, "none")
                a["spiral"], a["spiral_conf"] = pick((False, True), spiral, spiral_conf, i, False)
                if a["spiral"]:
                    a["arms"], a["arms_conf"] = pick(ARM_COUNTS, arms, arms_conf, i, 2)
                    a["winding"], a["winding_conf"] = pick(WINDING, winding, winding_conf, i, "medium")
                a["bulge_size"], a["bulge_size_conf"] = pick(BULGE_SIZE, bulge, bulge_conf, i, "none")
        a["merging"], a["merging_conf"] = pick(MERGING, merging, merging_conf, i, "none")
        out.append(GalaxyAnswers(**a))
    return out


def _plurality(stack: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per galaxy (column of `stack`, one row per answer): the plurality answer's index and its
    share; share 0 where nobody answered, or where the row is broken (`votes.answered`). Ties go
    to the first answer."""
    index = np.argmax(np.nan_to_num(stack, nan=-1.0), axis=0)
    share = np.nan_to_num(stack[index, np.arange(stack.shape[1])], nan=0.0)
    return index, np.where(answered(stack), np.clip(share, 0.0, 1.0), 0.0)


def answer_fractions(table: Mapping[str, Any], kind: str = "auto") -> dict[str, np.ndarray] | None:
    """`votes.vote_fractions` of the summary's answers and of `votes.ANSWER_COLUMNS`."""
    return vote_fractions(table, kind, {**VOTE_COLUMNS, **ANSWER_COLUMNS})


# ---------------------------------------------------------------- from a dataset


def dataset_answers(dataset) -> list[GalaxyAnswers] | None:
    """Every galaxy's answers from what `dataset.attributes()` holds: Galaxy10-Sim parameters or
    catalogue vote fractions; None when it holds neither.

    A catalogue's attributes name only the answers the GZ2 summary needs, so for a catalogue
    (or a view of one) the other questions (bulge size, arm count, bar strength, merging) are
    read from its table too.
    """
    attrs = dataset.attributes()
    if not attrs:
        return None
    if set(attrs) & set(PARAM_NAMES):
        return answers_from_params(attrs)
    fractions = {k: v for k, v in attrs.items() if k in ANSWER_NAMES}
    if not fractions:
        return None
    table, rows = _catalogue_table(dataset)
    if table is not None:
        extra = answer_fractions(table) or {}
        fractions.update({k: v[rows] for k, v in extra.items() if k not in fractions})
    return answers_from_votes(fractions)


def _catalogue_table(dataset) -> tuple[Any, Any]:
    """A catalogue's table and the rows of `dataset` in it; (None, None) for anything else."""
    rows = slice(None)
    if hasattr(dataset, "_parent_index"):  # a DatasetView: its parent is never a view
        dataset, rows = dataset._parent, dataset._parent_index
    table = getattr(dataset, "_table", None)
    return (table, rows) if table is not None and hasattr(table, "keys") else (None, None)


# ---------------------------------------------------------------- captions

_ROUNDED_WORDS = {
    "round": "completely round",
    "in-between": "in between round and cigar-shaped",
    "cigar": "cigar-shaped",
}
_EDGE_BULGE_WORDS = {"rounded": "a rounded bulge", "boxy": "a boxy bulge", "none": "no bulge"}
_BAR_WORDS = {"strong": "barred", "weak": "weakly barred"}
_COUNT_WORDS = {1: "one", 2: "two", 3: "three", 4: "four", "more": "more than four"}
_WINDING_WORDS = {"tight": "tightly", "medium": "moderately", "loose": "loosely"}
_MERGING_WORDS = {"minor disturbance": "minor disturbance", "major disturbance": "major disturbance"}


def caption(answers: GalaxyAnswers) -> str:
    """The answers in volunteer words, e.g. "featured, barred, two tightly wound arms, small bulge".

    Deterministic and short: one phrase per answer on the galaxy's path, confidences left out. A
    merger is named as such alone, as its symbol draws only the merging pair.
    """
    a = answers
    if a.merging == "merger":
        return "merging, with tidal debris"
    if a.smooth_or_featured == "smooth":
        parts = ["smooth", _ROUNDED_WORDS[a.how_rounded or "in-between"]]
    elif a.edge_on:
        parts = [f"edge-on disk with {_EDGE_BULGE_WORDS[a.edge_on_bulge or 'none']}"]
    else:
        parts = ["featured"]
        if a.bar in _BAR_WORDS:
            parts.append(_BAR_WORDS[a.bar])
        if a.spiral:
            count = a.arms if a.arms is not None else 2
            arm = "arm" if count == 1 else "arms"
            parts.append(f"{_COUNT_WORDS[count]} {_WINDING_WORDS[a.winding or 'medium']} wound {arm}")
        else:
            parts.append("no spiral arms")
        size = a.bulge_size or "none"
        parts.append("no bulge" if size == "none" else f"{size} bulge")
    if a.merging in _MERGING_WORDS:
        parts.append(_MERGING_WORDS[a.merging])
    return ", ".join(parts)
