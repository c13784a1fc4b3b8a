"""Drawing primitives of the schematic symbols: vector geometry, then PNG and SVG from the same geometry.

A class's `SymbolSpec` is turned once into a short list of vector primitives (filled or stroked
polygons and polylines in normalised coordinates, [-1, 1] on both axes, y pointing down). Two
small emitters then write that same geometry as a raster (PIL, supersampled and downsampled for
anti-aliasing) or as SVG, so the PNG and SVG of a symbol cannot drift apart. Light strokes on a
black sky, like the Galaxy Zoo icons and like the galaxy images the symbols are aligned with.

With `seed=None` a symbol is canonical (major axis horizontal, the spec's exact parameters); a
seed gives a variant (any rotation, stroke width, ~15% jitter of shape parameters, arm count).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
from PIL import Image, ImageDraw

from galaxalign.errors import GalaxAlignError
from galaxalign.taxonomy import SymbolSpec

BACKGROUND = 0.0  # grey level of the sky
INK = 1.0  # grey level of outlines, arms and bars
SUPERSAMPLE = 4
MAX_CANVAS = 8192  # supersampling is reduced above this many pixels a side, to bound memory
GRADIENT_GRID = 1024  # gradients are smooth: computed at most this fine, then resized
MIN_SIZE, MAX_SIZE = 16, 4096
RADIUS = 0.82  # major radius of the main body, leaving a margin for strokes and tails
LINE = 0.035  # outline width in normalised units (1 = half the image side)


@dataclass(frozen=True)
class Gradient:
    """An elliptical radial fill: `inner` grey at `centre`, `outer` at the ellipse `radii`."""

    centre: tuple[float, float]
    radii: tuple[float, float]
    angle_deg: float
    inner: float
    outer: float


@dataclass(frozen=True, eq=False)
class Primitive:
    """One polygon (closed) or polyline (open) with optional fill and stroke; grey levels 0..1."""

    points: np.ndarray  # (N, 2) normalised coordinates
    closed: bool = True
    fill: float | Gradient | None = None
    stroke: float | None = None
    width: float = 0.0


@dataclass(frozen=True)
class _Style:
    """Everything a seed may change about a symbol, resolved up front so builders stay pure."""

    rotation_deg: float
    width: float  # multiplier of every line width
    axis_ratio: float
    bulge_radius: float
    pitch_deg: float
    arms: int
    harmonics: tuple[tuple[float, float], ...]  # (amplitude, phase) of the blob outline, k = 1..
    jitter: tuple[float, ...]  # merger layout jitter, each in [-1, 1]
    knots: tuple[float, ...]  # angles of the irregular galaxy's star-forming knots


# Canonical (seed=None) blob outline and knot angles: lopsided, chosen to read as "irregular".
_CANON_HARMONICS = ((0.34, 0.6), (0.22, 2.2), (0.14, 4.1), (0.09, 1.3))
_CANON_KNOTS = (0.9, 2.6, 4.4)


# ---------------------------------------------------------------- style (canonical or seeded)


def _style(spec: SymbolSpec, seed: int | None) -> _Style:
    """The spec's own parameters, or a seeded variation of them."""
    if seed is None:
        return _Style(
            0.0,
            1.0,
            spec.axis_ratio,
            spec.bulge_radius,
            spec.pitch_deg,
            spec.arms,
            _CANON_HARMONICS,
            (0.0,) * 6,
            _CANON_KNOTS,
        )
    rng = np.random.default_rng(seed % 2**64)

    def jitter() -> float:
        return float(rng.uniform(0.85, 1.15))

    arms = spec.arms
    if arms > 0:  # a bar feeds two arms from its ends, so barred variants keep an even count
        arms = int(rng.choice([2, 4] if spec.bar else [2, 3, 4]))
    harmonics = tuple(
        (amp * float(rng.uniform(0.7, 1.3)), float(rng.uniform(0, 2 * math.pi))) for amp, _ in _CANON_HARMONICS
    )
    return _Style(
        rotation_deg=float(rng.uniform(0, 360)),
        width=float(rng.uniform(0.75, 1.4)),
        axis_ratio=float(np.clip(spec.axis_ratio * jitter(), 0.04, 1.0)),
        bulge_radius=spec.bulge_radius * jitter(),
        pitch_deg=spec.pitch_deg * jitter(),
        arms=arms,
        harmonics=harmonics,
        jitter=tuple(float(v) for v in rng.uniform(-1, 1, 6)),
        knots=tuple(float(v) for v in np.sort(rng.uniform(0, 2 * math.pi, 3))),
    )


# ---------------------------------------------------------------- geometry helpers


def _ellipse(cx: float, cy: float, rx: float, ry: float, angle_deg: float = 0.0, n: int = 96) -> np.ndarray:
    t = np.linspace(0, 2 * math.pi, n, endpoint=False)
    return _rotate(np.stack([rx * np.cos(t), ry * np.sin(t)], axis=1), angle_deg) + (cx, cy)


def _rotate(points: np.ndarray, angle_deg: float) -> np.ndarray:
    a = math.radians(angle_deg)
    c, s = math.cos(a), math.sin(a)
    return points @ np.array([[c, s], [-s, c]])


def _stadium(half_length: float, half_width: float, n: int = 24) -> np.ndarray:
    """A bar: a rectangle with round ends, along x, whose tips are at +-half_length."""
    t = np.linspace(-math.pi / 2, math.pi / 2, n)
    cap = np.stack([half_width * np.cos(t), half_width * np.sin(t)], axis=1)
    reach = half_length - half_width
    return np.concatenate([cap + (reach, 0), -cap - (reach, 0)])


def _blob(
    cx: float,
    cy: float,
    r: float,
    q: float,
    angle_deg: float,
    harmonics: tuple[tuple[float, float], ...],
    scale: float,
    n: int = 128,
) -> np.ndarray:
    """A smooth lopsided outline: an ellipse whose radius wobbles with a few low harmonics."""
    t = np.linspace(0, 2 * math.pi, n, endpoint=False)
    wobble = sum(a * scale * np.cos(k * t + ph) for k, (a, ph) in enumerate(harmonics, start=1))
    rr = r * (1 + wobble)
    return _rotate(np.stack([rr * np.cos(t), q * rr * np.sin(t)], axis=1), angle_deg) + (cx, cy)


def _ribbon(centre: np.ndarray, w0: float, w1: float) -> np.ndarray:
    """A tapering band around a centre line (width w0 at its start, w1 at its end) as a polygon."""
    d = np.gradient(centre, axis=0)
    normal = np.stack([-d[:, 1], d[:, 0]], axis=1) / np.linalg.norm(d, axis=1, keepdims=True)
    half = np.linspace(w0, w1, len(centre))[:, None] / 2
    return np.concatenate([centre + normal * half, (centre - normal * half)[::-1]])


def _log_spiral(r0: float, r1: float, pitch_deg: float, phase: float, sense: float = 1.0, n: int = 160) -> np.ndarray:
    """Points of r = r0 * exp(b * theta), b = tan(pitch), from radius r0 out to r1."""
    b = math.tan(math.radians(max(pitch_deg, 2.0)))  # a zero pitch would never leave r0
    theta = np.linspace(0, math.log(r1 / r0) / b, n)
    r = r0 * np.exp(b * theta)
    ang = phase + sense * theta
    return np.stack([r * np.cos(ang), r * np.sin(ang)], axis=1)


def _glow(
    points: np.ndarray,
    centre: tuple[float, float],
    radii: tuple[float, float],
    angle_deg: float,
    inner: float,
    outer: float,
    stroke: float | None,
    width: float,
) -> Primitive:
    """A body: filled with a soft radial gradient, optionally outlined."""
    fill = Gradient(centre, radii, angle_deg, inner, outer)
    return Primitive(points, fill=fill, stroke=stroke, width=width)


def _bulge(cx: float, cy: float, r: float) -> Primitive:
    """A bright round bulge (or knot), brightest in the middle, without outline."""
    return _glow(_ellipse(cx, cy, r, r), (cx, cy), (r, r), 0, 1.0, 0.72, None, 0.0)


# ---------------------------------------------------------------- one builder per shape


def _smooth(spec: SymbolSpec, st: _Style) -> list[Primitive]:
    """An elliptical galaxy: a glowing ellipse of the class's axis ratio with a clear outline."""
    rx, ry = RADIUS, RADIUS * st.axis_ratio
    return [_glow(_ellipse(0, 0, rx, ry), (0, 0), (rx, ry), 0, 0.95, 0.3, INK, LINE * st.width)]


def _face_on_disk(st: _Style) -> Primitive:
    """The faint disk behind a face-on galaxy's bulge, bar and arms (outlined only without arms)."""
    q = st.axis_ratio
    outline = None if st.arms else 0.85
    return _glow(
        _ellipse(0, 0, RADIUS, RADIUS * q), (0, 0), (RADIUS, RADIUS * q), 0, 0.32, 0.08, outline, LINE * st.width
    )


def _disk(spec: SymbolSpec, st: _Style) -> list[Primitive]:
    """A face-on disk: a faint outlined disk, a bulge and, where the class has them, bar and arms."""
    q = st.axis_ratio
    out = [_face_on_disk(st)]
    bulge_r = max(st.bulge_radius, 0.06) * RADIUS
    bar_len = max(0.5 * RADIUS, bulge_r + 0.14) if spec.bar else 0.0
    arm_w = 0.085 * st.width
    if spec.bar:
        out.append(Primitive(_stadium(bar_len, arm_w * 0.6) * (1, q), fill=INK))
    for i in range(st.arms):
        phase = 2 * math.pi * i / st.arms
        from_bar = spec.bar and math.isclose(math.sin(phase), 0.0, abs_tol=1e-9)
        r0 = bar_len - arm_w / 2 if from_bar else bulge_r * 1.05  # arms grow out of the bar's tips
        centre = _log_spiral(r0, RADIUS * 1.08, st.pitch_deg, phase) * (1, q)
        out.append(Primitive(_ribbon(centre, arm_w, 0.2 * arm_w), fill=INK))
    if st.bulge_radius > 0:
        out.append(_bulge(0, 0, bulge_r))
    return out


def _edge_on(spec: SymbolSpec, st: _Style) -> list[Primitive]:
    """A disk seen side on: a thin pointed lens, with a round bulge swelling out of it if any."""
    half = RADIUS * 1.05
    h = max(half * st.axis_ratio * (1 - st.bulge_radius), 0.01)  # the class's ratio counts the bulge in
    rho = (half**2 + h**2) / (2 * h)  # radius of the two circular arcs that meet at the tips
    x = half * np.sin(np.linspace(-math.pi / 2, math.pi / 2, 81))  # denser near the tips
    y = np.sqrt(rho**2 - x**2) - (rho - h)
    lens = np.concatenate([np.stack([x, -y], 1), np.stack([x[::-1], y[::-1]], 1)[1:-1]])
    out = [_glow(lens, (0, 0), (half, h), 0, 0.95, 0.35, INK, LINE * st.width)]
    if st.bulge_radius > 0:
        r = st.bulge_radius * RADIUS
        swells = r * 0.9 > h  # only a bulge that rises out of the disk gets an outline of its own
        out.append(
            _glow(
                _ellipse(0, 0, r, r * 0.9), (0, 0), (r, r * 0.9), 0, 1.0, 0.6, INK if swells else None, LINE * st.width
            )
        )
        if swells:  # a dark dust lane along the midplane, in front of the bulge (a Sombrero)
            lane = np.stack([np.linspace(-0.75 * half, 0.75 * half, 32), np.zeros(32)], axis=1)
            out.append(Primitive(lane, closed=False, stroke=0.12, width=0.6 * LINE * st.width))
    return out


def _merger(spec: SymbolSpec, st: _Style) -> list[Primitive]:
    """Two overlapping, slightly lopsided bodies with tidal tails curling out of opposite sides."""
    j = st.jitter
    bodies = (  # centre x, centre y, major radius, orientation
        (-0.2 + 0.05 * j[0], 0.07 + 0.05 * j[1], 0.42 * (1 + 0.1 * j[2]), 25 + 20 * j[3]),
        (0.24 - 0.05 * j[0], -0.09 - 0.05 * j[1], 0.32 * (1 - 0.1 * j[2]), -40 - 20 * j[4]),
    )
    out = []
    for k in range(2):  # point-symmetric tails: the classic integral-sign shape of an interaction
        tail = _log_spiral(0.3, 0.95, 24 + 8 * j[5], math.pi * k + 2.9, sense=-1.0)
        out.append(Primitive(_ribbon(tail, 0.1 * st.width, 0.012 * st.width), fill=0.7))
    for cx, cy, r, ang in bodies:
        q = st.axis_ratio
        outline = _blob(cx, cy, r, q, ang, st.harmonics, 0.3 * spec.asymmetry)
        out.append(_glow(outline, (cx, cy), (r, r * q), ang, 0.9, 0.3, INK, LINE * st.width))
        out.append(_bulge(cx, cy, max(st.bulge_radius, 0.1) * r * 1.3))
    return out


def _irregular(spec: SymbolSpec, st: _Style) -> list[Primitive]:
    """A disturbed galaxy: a lopsided blob with an off-centre core and scattered bright knots."""
    # Harmonic amplitudes are tuned for "strong" disturbance (asymmetry 0.7); milder ones wobble less.
    outline = _blob(0, 0, RADIUS * 0.85, st.axis_ratio, 0, st.harmonics, spec.asymmetry / 0.7)
    cx, cy = outline.mean(axis=0)
    core = (float(cx) + 0.12, float(cy) - 0.05)
    out = [_glow(outline, core, (RADIUS, RADIUS * st.axis_ratio), 0, 0.85, 0.2, INK, LINE * st.width)]
    if st.bulge_radius > 0:
        out.append(_bulge(core[0], core[1], st.bulge_radius * RADIUS))
    for i, a in enumerate(st.knots):
        r = (0.45 + 0.12 * i) * RADIUS
        x, y = core[0] + r * math.cos(a), core[1] + r * st.axis_ratio * math.sin(a)
        out.append(_bulge(x, y, 0.045 + 0.01 * i))
    return out


_BUILDERS = {
    "smooth": _smooth,
    "disk": _disk,
    "spiral": _disk,
    "edge_on": _edge_on,
    "merger": _merger,
    "irregular": _irregular,
}


def _turn(p: Primitive, angle_deg: float) -> Primitive:
    """Rotate a primitive about the image centre, fill gradient included."""
    fill = p.fill
    if isinstance(fill, Gradient):
        ((cx, cy),) = _rotate(np.array([fill.centre]), angle_deg)
        fill = replace(fill, centre=(float(cx), float(cy)), angle_deg=fill.angle_deg + angle_deg)
    return replace(p, points=_rotate(p.points, angle_deg), fill=fill)


def symbol_geometry(spec: SymbolSpec, seed: int | None = None) -> list[Primitive]:
    """The symbol as vector primitives, back to front; both emitters draw exactly this."""
    try:
        builder = _BUILDERS[spec.shape]
    except KeyError:
        known = ", ".join(_BUILDERS)
        raise GalaxAlignError(f"symbol: unknown shape {spec.shape!r} (known: {known})") from None
    st = _style(spec, seed)
    return [_turn(p, st.rotation_deg) for p in builder(spec, st)]


# ---------------------------------------------------------------- emitters


def _check_size(size: int) -> None:
    if isinstance(size, bool) or not isinstance(size, int) or not MIN_SIZE <= size <= MAX_SIZE:
        raise GalaxAlignError(f"size: must be an integer from {MIN_SIZE} to {MAX_SIZE}, got {size!r}")


def _check_count(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise GalaxAlignError(f"{name}: must be an integer 0 or more, got {value!r}")


def _grey(level: float) -> int:
    return int(round(255 * min(max(level, 0.0), 1.0)))


def _gradient_image(
    g: Gradient, canvas: int, grid: int = GRADIENT_GRID, resample: Image.Resampling = Image.Resampling.BILINEAR
) -> Image.Image:
    """The gradient over the whole canvas, computed coarse (it is smooth) and resized up."""
    n = min(canvas, grid)
    axis = (np.arange(n) + 0.5) / n * 2 - 1
    xy = np.stack(np.meshgrid(axis, axis), axis=-1) - g.centre
    local = _rotate(xy.reshape(-1, 2), -g.angle_deg) / g.radii
    t = np.clip(np.hypot(local[:, 0], local[:, 1]), 0, 1).reshape(n, n)
    levels = (g.inner + (g.outer - g.inner) * t) * 255
    img = Image.fromarray(np.round(levels).astype(np.uint8), "L")
    return img if n == canvas else img.resize((canvas, canvas), resample)


def _draw(img: Image.Image, p: Primitive) -> None:
    canvas = img.size[0]
    pts = [tuple(v) for v in (p.points + 1) * (canvas / 2)]
    draw = ImageDraw.Draw(img)
    if isinstance(p.fill, Gradient):
        mask = Image.new("L", img.size, 0)
        ImageDraw.Draw(mask).polygon(pts, fill=255)
        img.paste(_gradient_image(p.fill, canvas), (0, 0), mask)
    elif p.fill is not None:
        draw.polygon(pts, fill=_grey(p.fill))
    if p.stroke is None or p.width <= 0:
        return
    w = max(1, round(p.width * canvas / 2))
    draw.line((pts + pts[:2]) if p.closed else pts, fill=_grey(p.stroke), width=w, joint="curve")
    if not p.closed:  # round caps, as SVG's stroke-linecap="round"
        for x, y in (pts[0], pts[-1]):
            draw.ellipse((x - w / 2, y - w / 2, x + w / 2, y + w / 2), fill=_grey(p.stroke))


def _rasterise(prims: list[Primitive], size: int) -> Image.Image:
    factor = max(1, min(SUPERSAMPLE, MAX_CANVAS // size))
    img = Image.new("L", (size * factor, size * factor), _grey(BACKGROUND))
    for p in prims:
        _draw(img, p)
    return img.resize((size, size), Image.Resampling.LANCZOS).convert("RGB")


def _hex(level: float) -> str:
    return "#{0:02x}{0:02x}{0:02x}".format(_grey(level))


def _svg_element(p: Primitive, gradient_id: str) -> str:
    pts = " ".join(f"{x:.4f},{y:.4f}" for x, y in p.points)
    if isinstance(p.fill, Gradient):
        fill = f"url(#{gradient_id})"
    else:
        fill = "none" if p.fill is None else _hex(p.fill)
    stroke = ""
    if p.stroke is not None and p.width > 0:
        stroke = (
            f' stroke="{_hex(p.stroke)}" stroke-width="{p.width:.4f}" stroke-linejoin="round" stroke-linecap="round"'
        )
    tag = "polygon" if p.closed else "polyline"
    return f'<{tag} points="{pts}" fill="{fill}"{stroke}/>'


def _svg_gradient(g: Gradient, gradient_id: str) -> str:
    (cx, cy), (rx, ry) = g.centre, g.radii
    return (
        f'<radialGradient id="{gradient_id}" gradientUnits="userSpaceOnUse" cx="0" cy="0" r="1" '
        f'gradientTransform="translate({cx:.4f} {cy:.4f}) rotate({g.angle_deg:.3f}) '
        f'scale({rx:.4f} {ry:.4f})">'
        f'<stop offset="0" stop-color="{_hex(g.inner)}"/><stop offset="1" stop-color="{_hex(g.outer)}"/>'
        "</radialGradient>"
    )


def _to_svg(prims: list[Primitive], size: int) -> str:
    ids = [f"g{i}" for i in range(len(prims))]
    defs = [_svg_gradient(p.fill, i) for p, i in zip(prims, ids) if isinstance(p.fill, Gradient)]
    body = [_svg_element(p, i) for p, i in zip(prims, ids)]
    return "\n".join(
        [
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{size}" height="{size}" viewBox="-1 -1 2 2">',
            f'<rect x="-1" y="-1" width="2" height="2" fill="{_hex(BACKGROUND)}"/>',
            f"<defs>{''.join(defs)}</defs>",
            *body,
            "</svg>",
            "",
        ]
    )


def render_symbol(spec: SymbolSpec, size: int = 224, seed: int | None = None) -> Image.Image:
    """The symbol as an anti-aliased RGB image, `size` pixels square."""
    _check_size(size)
    return _rasterise(symbol_geometry(spec, seed), size)


def symbol_svg(spec: SymbolSpec, size: int = 224, seed: int | None = None) -> str:
    """The symbol as an SVG document drawn from the same geometry as `render_symbol`."""
    _check_size(size)
    return _to_svg(symbol_geometry(spec, seed), size)
