"""A galaxy's own symbol: its Galaxy Zoo answers drawn with the class symbols' primitives."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageDraw

from galaxalign.errors import GalaxAlignError
from galaxalign.symbols.classes import _font, _wrap
from galaxalign.symbols.draw import (
    BACKGROUND,
    INK,
    MAX_CANVAS,
    RADIUS,
    SUPERSAMPLE,
    Gradient,
    Primitive,
    _bulge,
    _check_size,
    _edge_on,
    _face_on_disk,
    _gradient_image,
    _grey,
    _irregular,
    _log_spiral,
    _merger,
    _ribbon,
    _smooth,
    _stadium,
    _Style,
    _style,
    _turn,
)
from galaxalign.taxonomy import PITCH_DEG, SymbolSpec

if TYPE_CHECKING:
    import torch

    from galaxalign.morphology.answers import GalaxyAnswers

# ---------------------------------------------------------------- a galaxy's own symbol
#
# A class symbol draws what a class looks like; a galaxy symbol draws one galaxy's own Galaxy Zoo
# answers (`morphology.answers.GalaxyAnswers`) with the same primitives: its shape, bar, arm count and
# winding, bulge and disturbance, turned to its position angle, and each part as opaque as the
# answer that put it there is sure (a bar 55% of volunteers saw is drawn at 55% opacity).

# Axis ratio drawn when a galaxy's own is unknown: the middle of the galaxy10 class ranges.
ROUNDED_AXIS_RATIO = {"round": 0.875, "in-between": 0.625, "cigar": 0.35}
EDGE_ON_AXIS_RATIO = 0.2
DISTURBED_AXIS_RATIO = 0.7
MERGER_MIN_AXIS_RATIO = 0.4  # thinner merging bodies no longer read as a pair
# Bulge radius per answer, as in `taxonomy.symbol_spec`; a disk's dominant bulge is drawn largest.
BULGE_RADIUS = {"none": 0.0, "small": 0.12, "moderate": 0.2, "large": 0.3, "dominant": 0.42}
EDGE_ON_BULGE_RADIUS = {"none": 0.0, "rounded": 0.3, "boxy": 0.3}
DRAWN_ARMS = {1: 1, 2: 2, 3: 3, 4: 4, "more": 5}
ASYMMETRY = {"none": 0.0, "minor disturbance": 0.35, "major disturbance": 0.7, "merger": 0.7}
# Direction from the larger body to the smaller in `_merger`'s canonical layout: a merger's symbol
# is turned so that this points along the galaxy-to-companion angle its answers carry.
MERGER_PAIR_DEG = math.degrees(math.atan2(-0.09 - 0.07, 0.24 + 0.2))


def galaxy_symbol_spec(answers: GalaxyAnswers) -> SymbolSpec:
    """The answers as a `SymbolSpec`: the shape from the path down the tree, the galaxy's own axis
    ratio where known, bulge, bar, arm count and pitch from their answers (a weak bar is still
    `bar=True`; `render_galaxy_symbol` draws it shorter and thinner)."""
    a = answers
    own_q = a.axis_ratio
    asymmetry = ASYMMETRY[a.merging]
    face_on = a.face_on
    bulge = BULGE_RADIUS[a.bulge_size] if face_on and a.bulge_size else 0.0
    bar = face_on and a.bar in ("strong", "weak")
    arms = DRAWN_ARMS[a.arms if a.arms is not None else 2] if face_on and a.spiral else 0
    pitch = sum(PITCH_DEG[a.winding or "medium"]) / 2 if arms else 0.0
    if a.merging == "merger":
        q = max(own_q or DISTURBED_AXIS_RATIO, MERGER_MIN_AXIS_RATIO)
        return SymbolSpec("merger", round(q, 3), BULGE_RADIUS["moderate"], False, 0, 0.0, True, asymmetry)
    if a.merging == "major disturbance":
        shape, q = "irregular", own_q or DISTURBED_AXIS_RATIO
    elif a.smooth_or_featured == "smooth":
        shape, q = "smooth", own_q or ROUNDED_AXIS_RATIO[a.how_rounded or "in-between"]
    elif a.edge_on:
        shape, q = "edge_on", own_q or EDGE_ON_AXIS_RATIO
        bulge = EDGE_ON_BULGE_RADIUS[a.edge_on_bulge or "none"]
    else:
        shape, q = ("spiral" if arms else "disk"), own_q or 1.0
    q = min(max(q, 0.04), 1.0)
    return SymbolSpec(shape, round(q, 3), bulge, bar, arms, pitch, False, asymmetry)


def _galaxy_style(spec: SymbolSpec, a: GalaxyAnswers, seed: int | None) -> _Style:
    """The spec's style, but turned to the galaxy's position angle and keeping its own axis ratio
    and arm count: a seed varies only how the symbol is drawn, not what was answered."""
    st = _style(spec, seed)
    turn = MERGER_PAIR_DEG if spec.shape == "merger" else 0.0
    return replace(
        st,
        rotation_deg=st.rotation_deg if a.position_angle is None else float(a.position_angle) - turn,
        axis_ratio=st.axis_ratio if a.axis_ratio is None else spec.axis_ratio,
        arms=spec.arms,
    )


def _boxy(rx: float, ry: float, n: int = 96) -> np.ndarray:
    """A superellipse (|x/rx|^4 + |y/ry|^4 = 1): a bulge with square shoulders."""
    t = np.linspace(0, 2 * math.pi, n, endpoint=False)
    c, s = np.cos(t), np.sin(t)
    return np.stack([rx * np.sign(c) * np.sqrt(np.abs(c)), ry * np.sign(s) * np.sqrt(np.abs(s))], axis=1)


def _plume(st: _Style) -> Primitive:
    """One tidal plume curling out of the body: a minor disturbance. Drawn first, behind the body."""
    tail = _log_spiral(0.5 * RADIUS, 1.12 * RADIUS, 26 + 6 * st.jitter[5], 2.9 + 0.3 * st.jitter[4], sense=-1.0)
    return Primitive(_ribbon(tail, 0.09 * st.width, 0.012 * st.width), fill=0.7)


def _face_on_parts(
    a: GalaxyAnswers, spec: SymbolSpec, st: _Style, centre: tuple[float, float]
) -> list[tuple[float, list[Primitive]]]:
    """Bar, arms and bulge of a face-on disk, each with the opacity of its own answer."""
    q, arm_w = st.axis_ratio, 0.085 * st.width
    bulge_r = max(st.bulge_radius, 0.06) * RADIUS
    layers: list[tuple[float, list[Primitive]]] = []
    bar_len = 0.0
    if spec.bar:
        strong = a.bar == "strong"
        bar_len = max(0.5 * RADIUS, bulge_r + 0.14) if strong else max(0.32 * RADIUS, bulge_r + 0.08)
        bar = _stadium(bar_len, arm_w * (0.6 if strong else 0.4)) * (1, q)
        layers.append((a.bar_conf, [Primitive(bar, fill=INK)]))
    arms = []
    for i in range(st.arms):
        phase = 2 * math.pi * i / st.arms
        from_bar = spec.bar and math.isclose(math.sin(phase), 0.0, abs_tol=1e-9)
        r0 = bar_len - arm_w / 2 if from_bar else bulge_r * 1.05  # arms grow out of the bar's tips
        line = _log_spiral(r0, RADIUS * 1.08, st.pitch_deg, phase) * (1, q)
        arms.append(Primitive(_ribbon(line, arm_w, 0.2 * arm_w), fill=INK))
    if arms:
        layers.append((a.spiral_conf, arms))
    if st.bulge_radius > 0:
        layers.append((a.bulge_size_conf, [_bulge(centre[0], centre[1], bulge_r)]))
    return layers


def _zoom(p: Primitive, zoom: float) -> Primitive:
    """Scale a primitive about the image centre, line width and fill gradient included."""
    fill = p.fill
    if isinstance(fill, Gradient):
        (cx, cy), (rx, ry) = fill.centre, fill.radii
        fill = replace(fill, centre=(cx * zoom, cy * zoom), radii=(rx * zoom, ry * zoom))
    return replace(p, points=p.points * zoom, fill=fill, width=p.width * zoom)


def _galaxy_layers(a: GalaxyAnswers, seed: int | None, zoom: float = 1.0) -> list[tuple[float, list[Primitive]]]:
    """(opacity, primitives) groups, back to front, already turned to the galaxy's angle and
    scaled by `zoom` about the centre."""
    spec = galaxy_symbol_spec(a)
    st = _galaxy_style(spec, a, seed)
    layers: list[tuple[float, list[Primitive]]] = []
    if a.merging == "minor disturbance":
        layers.append((a.merging_conf, [_plume(st)]))
    if spec.shape == "merger":
        layers.append((a.merging_conf, _merger(spec, st)))
    elif spec.shape == "smooth":
        layers.append((a.smooth_or_featured_conf, _smooth(spec, st)))
    elif spec.shape == "edge_on":
        lens, *bulge = _edge_on(spec, st)
        if bulge and a.edge_on_bulge == "boxy":
            r = spec.bulge_radius * RADIUS
            bulge[0] = replace(bulge[0], points=_boxy(r, r * 0.9))
        layers += [(a.edge_on_conf, [lens]), (a.edge_on_bulge_conf, bulge)]
    elif spec.shape == "irregular":  # a lopsided body; its bulge sits on the off-centre core
        body = _irregular(spec, replace(st, bulge_radius=0.0))
        core = body[0].fill.centre if isinstance(body[0].fill, Gradient) else (0.0, 0.0)
        layers.append((a.merging_conf, body))
        layers += _face_on_parts(a, spec, st, core)
    else:
        disk = _face_on_disk(st)
        layers.append((a.smooth_or_featured_conf, [disk]))
        layers += _face_on_parts(a, spec, st, (0.0, 0.0))
    return [(alpha, [_zoom(_turn(p, st.rotation_deg), zoom) for p in prims]) for alpha, prims in layers if prims]


SHARP_TURN_DEG = 20.0  # a stroke gets a round joint only where it turns more than this


def _draw_quick(img: Image.Image, p: Primitive, factor: int) -> None:
    """`_draw` made fast enough to draw symbols per galaxy while training: a gradient is computed
    at 1/factor of the canvas and repeated factor x factor (which the box downsample of
    `_rasterise_layers` averages back exactly), and round joints only where a stroke turns
    sharply (on finely sampled curves they are invisible, and cost most of the stroke's time)."""
    canvas = img.size[0]
    pts = (p.points + 1) * (canvas / 2)
    flat = [tuple(v) for v in pts]
    draw = ImageDraw.Draw(img)
    if isinstance(p.fill, Gradient):
        mask = Image.new("L", img.size, 0)
        ImageDraw.Draw(mask).polygon(flat, fill=255)
        img.paste(_gradient_image(p.fill, canvas, canvas // factor, Image.Resampling.NEAREST), (0, 0), mask)
    elif p.fill is not None:
        draw.polygon(flat, fill=_grey(p.fill))
    if p.stroke is None or p.width <= 0:
        return
    w = max(1, round(p.width * canvas / 2))
    ink = _grey(p.stroke)
    line = np.concatenate([pts, pts[:2]]) if p.closed else pts
    draw.line([tuple(v) for v in line], fill=ink, width=w)
    d = np.diff(line, axis=0)
    heading = np.degrees(np.arctan2(d[:, 1], d[:, 0]))
    turn = np.abs((np.diff(heading) + 180.0) % 360.0 - 180.0)
    joints = line[1:-1][turn > SHARP_TURN_DEG]
    ends = [] if p.closed else [line[0], line[-1]]  # round caps, as SVG's stroke-linecap="round"
    for x, y in [*joints, *ends]:
        draw.ellipse((x - w / 2, y - w / 2, x + w / 2, y + w / 2), fill=ink)


def _rasterise_layers(layers: list[tuple[float, list[Primitive]]], size: int) -> Image.Image:
    """Like `_rasterise`, but each group blended at its opacity (as a whole, so a group's own
    overlaps do not darken), drawn by `_draw_quick` and box-downsampled. Returns greyscale."""
    factor = max(1, min(SUPERSAMPLE, MAX_CANVAS // size))
    img = Image.new("L", (size * factor, size * factor), _grey(BACKGROUND))
    for alpha, prims in layers:
        alpha = min(max(float(alpha), 0.0), 1.0)
        if alpha == 0.0:
            continue
        layer = img if alpha == 1.0 else img.copy()
        for p in prims:
            _draw_quick(layer, p, factor)
        if layer is not img:
            img = Image.blend(img, layer, alpha)
    return img.reduce(factor) if factor > 1 else img


def render_galaxy_symbol(
    answers: GalaxyAnswers, size: int = 224, seed: int | None = None, zoom: float = 1.0
) -> Image.Image:
    """One galaxy's own symbol as an RGB image, `size` pixels square, drawn like the class symbols
    (light on a black sky); a part whose answer has confidence 0 is not drawn. `seed=None` is
    canonical; a seed varies line width, outline wobble, bulge size and pitch within ~15%, and,
    only where the position angle is unknown, the rotation. `zoom` scales the drawing about the
    centre (1: the class symbols' size, the body's major radius RADIUS of the half side)."""
    _check_size(size)
    return _rasterise_layers(_galaxy_layers(answers, seed, zoom), size).convert("RGB")


def apparent_radius(image: np.ndarray, fraction: float = 0.5, clip_sigma: float = 1.0) -> float:
    """The radius about the frame's centre that holds `fraction` of an image's light, in units of
    half the frame's side: a galaxy's apparent size as a cutout shows it (cutouts are centred).

    The sky level (median) is subtracted, and pixels less than `clip_sigma` sky deviations (from
    the median absolute deviation) above it count as sky, so noise does not widen the radius.
    NaN where nothing is above the sky."""
    grey = np.asarray(image, dtype=np.float64)
    if grey.ndim == 3:
        grey = grey.mean(axis=2)
    level = float(np.median(grey))
    spread = 1.4826 * float(np.median(np.abs(grey - level)))
    light = np.clip(grey - level - clip_sigma * spread, 0.0, None)
    h, w = light.shape
    y, x = np.mgrid[0:h, 0:w]
    r = np.hypot(x - (w - 1) / 2, y - (h - 1) / 2).ravel()
    order = np.argsort(r, kind="stable")
    cumulative = np.cumsum(light.ravel()[order])
    if cumulative[-1] <= 0:
        return float("nan")
    return float(r[order][np.searchsorted(cumulative, fraction * cumulative[-1])] / (min(h, w) / 2))


MEASURE_SIZE = 64  # a galaxy symbol's own radius is measured on a drawing this many pixels square
MIN_ZOOM, MAX_ZOOM = 0.2, 1.5  # a fitted symbol stays visible and inside its frame


def fitted_galaxy_symbols(
    answers_list: Sequence[GalaxyAnswers],
    radii: Sequence[float],
    size: int,
    variants: int = 1,
    seed: int = 0,
) -> np.ndarray:
    """Each galaxy's own symbol at the galaxy's apparent size and in a canonical pose, as uint8
    (N, variants, size, size) grey: `variants` seeded drawings each (style jitter only).

    The pose is canonical (position angle 0) so that a training symbol's orientation comes from
    its own augmentation, never from its galaxy's; the size is matched on the half-light radius
    (`apparent_radius` of the galaxy's image, `radii`; NaN keeps the class symbols' size).
    """
    _check_size(size)
    if len(radii) != len(answers_list):
        raise GalaxAlignError(f"radii: {len(radii)} radii for {len(answers_list)} galaxies")
    out = np.empty((len(answers_list), variants, size, size), np.uint8)
    for i, (a, radius) in enumerate(zip(answers_list, radii)):
        upright = replace(a, position_angle=0.0)
        own = apparent_radius(
            np.asarray(_rasterise_layers(_galaxy_layers(upright, None), MEASURE_SIZE)), clip_sigma=0.0
        )
        zoom = 1.0 if not (np.isfinite(radius) and np.isfinite(own) and own > 0) else radius / own
        zoom = min(max(zoom, MIN_ZOOM), MAX_ZOOM)
        for v in range(variants):
            style = int(np.random.SeedSequence([seed % 2**64, i, v]).generate_state(1)[0])
            out[i, v] = np.asarray(_rasterise_layers(_galaxy_layers(upright, style, zoom), size))
    return out


def galaxy_symbol_batch(
    answers_list: Sequence[GalaxyAnswers], size: int = 224, seed: int | Sequence[int] | None = None
) -> torch.Tensor:
    """Many galaxies' symbols as a float tensor (N, 3, size, size) in [0, 1], for the trainer.

    `seed`: None for canonical symbols, one int (symbol i then gets a seed derived from it and i),
    or one seed per symbol.
    """
    import torch

    _check_size(size)
    n = len(answers_list)
    if seed is None or isinstance(seed, (int, np.integer)):
        base = None if seed is None else int(seed) % 2**64
        seeds = [
            None if base is None else int(np.random.SeedSequence([base, i]).generate_state(1)[0]) for i in range(n)
        ]
    else:
        seeds = [int(s) for s in seed]
        if len(seeds) != n:
            raise GalaxAlignError(f"seed: {len(seeds)} seeds for {n} symbols")
    out = np.empty((n, size, size), np.uint8)
    for i, (a, s) in enumerate(zip(answers_list, seeds)):
        out[i] = np.asarray(_rasterise_layers(_galaxy_layers(a, s), size))
    return torch.from_numpy(out).float().div_(255.0).unsqueeze(1).repeat(1, 3, 1, 1)


def galaxy_symbol_sheet(
    rows: Sequence[tuple[str, Sequence[tuple[np.ndarray, GalaxyAnswers]]]], tile: int = 128
) -> Image.Image:
    """A picture to judge galaxy symbols by eye: one row per (label, galaxies); each galaxy's
    image beside its own symbol, its caption underneath."""
    from galaxalign.morphology.answers import caption

    _check_size(tile)
    gap, label_w = max(4, tile // 16), max(150, tile + tile // 4)
    font = _font(max(11, tile // 10))
    line_h = max(13, tile // 8)
    cell_w = 2 * tile + gap
    texts = [[_wrap(caption(a), font, cell_w) for _, a in galaxies] for _, galaxies in rows]
    text_h = line_h * max((len(lines) for row in texts for lines in row), default=1)
    row_h = tile + text_h + 2 * gap
    cols = max((len(galaxies) for _, galaxies in rows), default=0)
    sheet = Image.new("RGB", (label_w + cols * (cell_w + 2 * gap) + gap, len(rows) * row_h + gap), (40, 40, 46))
    draw = ImageDraw.Draw(sheet)
    for r, ((label, galaxies), row_texts) in enumerate(zip(rows, texts)):
        y = gap + r * row_h
        for k, text in enumerate(_wrap(label, font, label_w - 3 * gap)):
            draw.text((gap * 2, y + tile // 2 - line_h + k * line_h), text, fill=(235, 235, 235), font=font)
        for c, ((image, answers), lines) in enumerate(zip(galaxies, row_texts)):
            x = label_w + gap + c * (cell_w + 2 * gap)
            photo = Image.fromarray(np.asarray(image, dtype=np.uint8)).convert("RGB")
            sheet.paste(photo.resize((tile, tile), Image.Resampling.LANCZOS), (x, y))
            sheet.paste(render_galaxy_symbol(answers, tile), (x + tile + gap, y))
            for k, text in enumerate(lines):
                draw.text((x, y + tile + gap // 2 + k * line_h), text, fill=(235, 235, 235), font=font)
    return sheet
