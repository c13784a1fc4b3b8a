"""Galaxy Zoo vote fractions under one set of names, and the GZ2 seven-class summary label.

The one reader of catalogue vote columns (`vote_fractions`, given a table of columns to read)
and the one rule for a broken row (`answered`), which every plurality decision uses: the GZ2
summary label here, a galaxy's answers in `answers`, the studies' coarse groups.

Four column conventions are read, all as found in real catalogues:

- GZ DECaLS and galaxy-datasets: `{question}[-campaign]_{answer}_fraction`, e.g.
  `smooth-or-featured_smooth_fraction`, `bar_strong_fraction`, `how-rounded_completely_fraction`,
  `disk-edge-on-gz2_yes_fraction` (the campaign suffix: `-gz2`, `-dr5`, `-dr8`, ...);
- GZ2 Hart et al. (2016): `t01_smooth_or_features_a01_smooth_fraction` (or `_debiased`);
- the GZ2 Kaggle challenge: `Class1.1` ... (cumulative down the tree, renormalised per question).

Each canonical answer is the fraction of volunteers who gave it among those asked that question;
NaN where the question was not asked.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import numpy as np

# canonical name -> (GZ DECaLS question, its answers summed, Hart16 column stem, Kaggle column);
# None where a catalogue convention does not ask for that answer.
VoteColumns = Mapping[str, tuple[str | None, tuple[str, ...], str | None, str | None]]

# What the GZ2 summary label needs.
VOTE_COLUMNS: VoteColumns = {
    "smooth": ("smooth-or-featured", ("smooth",), "t01_smooth_or_features_a01_smooth", "Class1.1"),
    "featured": (
        "smooth-or-featured",
        ("featured-or-disk",),
        "t01_smooth_or_features_a02_features_or_disk",
        "Class1.2",
    ),
    "artifact": ("smooth-or-featured", ("artifact",), "t01_smooth_or_features_a03_star_or_artifact", "Class1.3"),
    "edge_on_yes": ("disk-edge-on", ("yes",), "t02_edgeon_a04_yes", "Class2.1"),
    "edge_on_no": ("disk-edge-on", ("no",), "t02_edgeon_a05_no", "Class2.2"),
    "bar_yes": ("bar", ("yes", "strong", "weak"), "t03_bar_a06_bar", "Class3.1"),
    "bar_no": ("bar", ("no",), "t03_bar_a07_no_bar", "Class3.2"),
    "spiral_yes": ("has-spiral-arms", ("yes",), "t04_spiral_a08_spiral", "Class4.1"),
    "spiral_no": ("has-spiral-arms", ("no",), "t04_spiral_a09_no_spiral", "Class4.2"),
    "round": ("how-rounded", ("round", "completely"), "t07_rounded_a16_completely_round", "Class7.1"),
    "in_between": ("how-rounded", ("in-between",), "t07_rounded_a17_in_between", "Class7.2"),
    "cigar": ("how-rounded", ("cigar-shaped", "cigar"), "t07_rounded_a18_cigar_shaped", "Class7.3"),
    "winding_tight": ("spiral-winding", ("tight",), "t10_arms_winding_a28_tight", "Class10.1"),
    "winding_medium": ("spiral-winding", ("medium",), "t10_arms_winding_a29_medium", "Class10.2"),
    "winding_loose": ("spiral-winding", ("loose",), "t10_arms_winding_a30_loose", "Class10.3"),
    "merger": ("merging", ("merger",), "t08_odd_feature_a24_merger", "Class8.6"),
}
VOTE_NAMES = tuple(VOTE_COLUMNS)
# The other answers a galaxy's own answers (`answers.answers_from_votes`) read. GZ DECaLS DR1/2
# and GZ2 asked coarser questions; their answers map to the nearest DR5 word.
ANSWER_COLUMNS: VoteColumns = {
    "bar_strong": ("bar", ("strong",), None, None),
    "bar_weak": ("bar", ("weak",), None, None),
    "bulge_none": ("bulge-size", ("none", "no"), "t05_bulge_prominence_a10_no_bulge", "Class5.1"),
    "bulge_small": ("bulge-size", ("small", "just-noticeable"), "t05_bulge_prominence_a11_just_noticeable", "Class5.2"),
    "bulge_moderate": ("bulge-size", ("moderate", "obvious"), "t05_bulge_prominence_a12_obvious", "Class5.3"),
    "bulge_large": ("bulge-size", ("large",), None, None),
    "bulge_dominant": ("bulge-size", ("dominant",), "t05_bulge_prominence_a13_dominant", "Class5.4"),
    "edge_bulge_none": ("edge-on-bulge", ("none",), "t09_bulge_shape_a27_no_bulge", "Class9.3"),
    "edge_bulge_rounded": ("edge-on-bulge", ("rounded",), "t09_bulge_shape_a25_rounded", "Class9.1"),
    "edge_bulge_boxy": ("edge-on-bulge", ("boxy",), "t09_bulge_shape_a26_boxy", "Class9.2"),
    "arms_1": ("spiral-arm-count", ("1",), "t11_arms_number_a31_1", "Class11.1"),
    "arms_2": ("spiral-arm-count", ("2",), "t11_arms_number_a32_2", "Class11.2"),
    "arms_3": ("spiral-arm-count", ("3",), "t11_arms_number_a33_3", "Class11.3"),
    "arms_4": ("spiral-arm-count", ("4",), "t11_arms_number_a34_4", "Class11.4"),
    "arms_more": ("spiral-arm-count", ("more-than-4",), "t11_arms_number_a36_more_than_4", "Class11.5"),
    "merging_none": ("merging", ("none", "neither"), None, None),
    "merging_minor": ("merging", ("minor-disturbance",), None, None),
    "merging_major": ("merging", ("major-disturbance", "tidal-debris"), None, None),
    "merging_merger": ("merging", ("merger", "both"), None, None),
}
# GZ2's "anything odd?" and, asked of those who said odd, its odd features (Hart16 and Kaggle
# only: GZ DECaLS asks about mergers directly). "merger" is the same column as VOTE_COLUMNS'.
ODD_FEATURES = ("ring", "lens", "disturbed", "irregular", "other", "merger", "dust_lane")
ODD_COLUMNS: VoteColumns = {
    "odd_yes": (None, (), "t06_odd_a14_yes", "Class6.1"),
    "odd_no": (None, (), "t06_odd_a15_no", "Class6.2"),
    "ring": (None, (), "t08_odd_feature_a19_ring", "Class8.1"),
    "lens": (None, (), "t08_odd_feature_a20_lens_or_arc", "Class8.2"),
    "disturbed": (None, (), "t08_odd_feature_a21_disturbed", "Class8.3"),
    "irregular": (None, (), "t08_odd_feature_a22_irregular", "Class8.4"),
    "other": (None, (), "t08_odd_feature_a23_other", "Class8.5"),
    "merger": (None, (), "t08_odd_feature_a24_merger", "Class8.6"),
    "dust_lane": (None, (), "t08_odd_feature_a38_dust_lane", "Class8.7"),
}
# A question's answer shares sum to ~1 where it was asked; far less (0.03, say) is a broken row,
# which must not decide an answer from a few per cent of the votes.
MIN_ANSWERED = 0.5
# The builtin gz2 scheme's class keys, in its id order.
GZ2_KEYS = (
    "smooth_round",
    "smooth_inbetween",
    "smooth_cigar",
    "edge_on_disk",
    "barred_spiral",
    "unbarred_spiral",
    "featured_without_bar_or_spiral",
)


def _column(table: Mapping[str, Any], name: str) -> np.ndarray:
    return np.atleast_1d(np.asarray(table[name], dtype=np.float64))


def _first_known(a: np.ndarray | None, b: np.ndarray) -> np.ndarray:
    """Merge two sources of the same answer: keep a where known, else b."""
    return b if a is None else np.where(np.isnan(a), b, a)


def _nan_sum(arrays: list[np.ndarray]) -> np.ndarray:
    stacked = np.stack(arrays)
    return np.where(np.isnan(stacked).all(axis=0), np.nan, np.nansum(stacked, axis=0))


def answered(shares: np.ndarray) -> np.ndarray:
    """Per galaxy (axis 1 of `shares`, one row per answer of one question): whether the question's
    shares add up to at least MIN_ANSWERED, i.e. whether it was asked and the row is not broken."""
    return np.nansum(np.asarray(shares, dtype=np.float64), axis=0) >= MIN_ANSWERED


def vote_fractions(
    table: Mapping[str, Any], kind: str = "auto", columns: VoteColumns = VOTE_COLUMNS
) -> dict[str, np.ndarray] | None:
    """Canonical vote fractions of `columns` (default: the GZ2 summary's) from a table's columns
    (a DataFrame or a dict of columns).

    `kind` picks raw (`fraction`) or debiased (`debiased`) GZ DECaLS / Hart16 columns; `auto`
    takes what each catalogue's authors recommend: raw GZ DECaLS fractions (Walmsley et al.
    2022) and debiased Hart16 ones (which the published `gz2_class` is built from). Where a
    galaxy has an answer under several conventions or campaigns, the first known wins (GZ
    DECaLS, then Hart16, then Kaggle). Returns None when the table has none of the columns.
    """
    if kind not in ("auto", "fraction", "debiased"):
        raise ValueError(f"kind must be auto, fraction or debiased, got {kind!r}")
    decals_kind = "fraction" if kind == "auto" else kind
    hart_kind = "debiased" if kind == "auto" else kind
    names = [str(c) for c in table.keys()]
    found: dict[str, np.ndarray] = {}

    def add(canonical: str, values: np.ndarray) -> None:
        found[canonical] = _first_known(found.get(canonical), values)

    kaggle = [n for n in names if re.fullmatch(r"Class\d+\.\d+", n)]
    for canonical, (question, answers, hart, kaggle_column) in columns.items():
        # GZ DECaLS style; one group of columns per campaign suffix, merged where a galaxy lacks one.
        if question is not None:
            words = "|".join(map(re.escape, answers))
            pattern = re.compile(rf"{re.escape(question)}(-[a-z0-9]+)?_({words})_{decals_kind}")
            by_campaign: dict[str, list[np.ndarray]] = {}
            for name in names:
                m = pattern.fullmatch(name)
                if m:
                    by_campaign.setdefault(m.group(1) or "", []).append(_column(table, name))
            for arrays in by_campaign.values():
                add(canonical, _nan_sum(arrays))
        if hart is not None and f"{hart}_{hart_kind}" in names:
            add(canonical, _column(table, f"{hart}_{hart_kind}"))
        # Kaggle: each answer is the fraction of all volunteers, so divide by its question's total.
        if kaggle_column in kaggle:
            prefix = kaggle_column.split(".")[0] + "."
            total = sum(_column(table, n) for n in kaggle if n.startswith(prefix))
            with np.errstate(divide="ignore", invalid="ignore"):
                add(canonical, np.where(total > 0, _column(table, kaggle_column) / total, np.nan))
    return found or None


def gz2_summary_keys(fractions: Mapping[str, np.ndarray]) -> np.ndarray:
    """GZ2 summary class key per galaxy ('' when undecided), by plurality at each tree node.

    Smooth/featured/artifact first (artifact: undecided); smooth galaxies split by roundness;
    featured ones are edge-on disks if most say edge-on, else barred spirals if most see a bar
    (strong plus weak, in GZ DECaLS), else unbarred spirals if most see arms, else featured
    without bar or spiral. A question needed on the galaxy's path but without votes (or whose
    shares fail `answered`: a broken row) leaves it undecided, as does a missing column.
    """
    n = len(next(iter(fractions.values())))
    nan = np.full(n, np.nan)

    def get(name: str) -> np.ndarray:
        return np.asarray(fractions.get(name, nan), dtype=np.float64)

    def plurality(names: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
        stack = np.stack([get(a) for a in names])
        known = ~np.isnan(stack).any(axis=0) & answered(stack)
        return np.argmax(np.nan_to_num(stack, nan=-1.0), axis=0), known

    top, top_known = plurality(("smooth", "featured", "artifact"))
    shape, shape_known = plurality(("round", "in_between", "cigar"))
    edge, edge_known = plurality(("edge_on_yes", "edge_on_no"))
    bar, bar_known = plurality(("bar_yes", "bar_no"))
    arms, arms_known = plurality(("spiral_yes", "spiral_no"))

    keys = np.full(n, "", dtype=object)
    smooth = top_known & (top == 0) & shape_known
    keys[smooth] = np.array(GZ2_KEYS[:3], dtype=object)[shape[smooth]]
    featured = top_known & (top == 1) & edge_known
    keys[featured & (edge == 0)] = "edge_on_disk"
    face_on = featured & (edge == 1) & bar_known
    keys[face_on & (bar == 0)] = "barred_spiral"
    unbarred = face_on & (bar == 1) & arms_known
    keys[unbarred & (arms == 0)] = "unbarred_spiral"
    keys[unbarred & (arms == 1)] = "featured_without_bar_or_spiral"
    return keys


def gz2_summary_label(row_fractions: Mapping[str, Any]) -> int:
    """The builtin gz2 scheme's class id for one galaxy's vote fractions, or -1 if undecided.

    `row_fractions` maps column names in any supported convention, or the canonical names
    (`VOTE_NAMES`), to values.
    """
    fractions = vote_fractions(row_fractions) or {
        k: np.atleast_1d(np.asarray(v, dtype=np.float64)) for k, v in row_fractions.items() if k in VOTE_NAMES
    }
    if not fractions:
        return -1
    key = gz2_summary_keys(fractions)[0]
    return GZ2_KEYS.index(key) if key else -1
