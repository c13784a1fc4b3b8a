"""Seeded, stratified train/val/test splits and label-fraction subsets.

Galaxy10 DECaLS has no official split, so every run writes the split it used; a result can be
reproduced or compared only against the same split. Stratifying keeps rare classes (334 cigar
galaxies) present in every part, and the fingerprint stops a split from being reused on a
different dataset of the same size.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from galaxalign.errors import GalaxAlignError
from galaxalign.io import read_json, write_json_atomic

SPLIT_FORMAT = "galaxalign-split"
SPLIT_VERSION = 1
PARTS = ("train", "val", "test")


def labels_fingerprint(labels: np.ndarray) -> str:
    """A short hash of the label sequence: same dataset, same order, same fingerprint."""
    data = np.ascontiguousarray(np.asarray(labels, dtype="<i8")).tobytes()
    return hashlib.sha256(data).hexdigest()[:16]


@dataclass
class Split:
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    seed: int
    fractions: dict[str, float]  # requested share of each part
    n: int  # dataset size the indices refer to
    source_fingerprint: str  # labels_fingerprint of that dataset

    def check_labels(self, labels: np.ndarray, where: str) -> None:
        """Refuse a split made for another dataset (different size or labels)."""
        if len(labels) != self.n or labels_fingerprint(labels) != self.source_fingerprint:
            raise GalaxAlignError(
                f"{where}: split was made for a different dataset ({self.n} galaxies, fingerprint "
                f"{self.source_fingerprint}; this one: {len(labels)}, {labels_fingerprint(labels)})"
            )

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": SPLIT_FORMAT,
            "version": SPLIT_VERSION,
            "n": self.n,
            "seed": self.seed,
            "fractions": self.fractions,
            "source_fingerprint": self.source_fingerprint,
            **{part: getattr(self, part).tolist() for part in PARTS},
        }

    def save(self, path: str | os.PathLike) -> None:
        write_json_atomic(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike) -> Split:
        """Read and validate a split file; any problem names the file."""
        path = Path(path)
        data = read_json(path, "split file")
        if not isinstance(data, dict) or data.get("format") != SPLIT_FORMAT:
            raise GalaxAlignError(f'{path}: not a split file (no "format": "{SPLIT_FORMAT}")')
        for key, kind in (("n", int), ("seed", int), ("source_fingerprint", str), ("fractions", dict)):
            if not isinstance(data.get(key), kind) or isinstance(data.get(key), bool):
                raise GalaxAlignError(f"{path}: field '{key}' missing or not a {kind.__name__}")
        n = data["n"]
        parts = {}
        for part in PARTS:
            values = data.get(part)
            if not isinstance(values, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
                raise GalaxAlignError(f"{path}: field '{part}' missing or not a list of integers")
            idx = np.asarray(values, dtype=np.int64)
            if idx.size and (idx.min() < 0 or idx.max() >= n):
                raise GalaxAlignError(f"{path}: field '{part}': index out of range 0..{n - 1}")
            parts[part] = idx
        every = np.concatenate(list(parts.values()))
        if np.unique(every).size != every.size:
            raise GalaxAlignError(f"{path}: an index appears twice (parts must be disjoint, without repeats)")
        fractions = {str(k): float(v) for k, v in data["fractions"].items()}
        return cls(**parts, seed=data["seed"], fractions=fractions, n=n, source_fingerprint=data["source_fingerprint"])


def _check_fraction(name: str, value: float) -> None:
    if not 0.0 <= value < 1.0:
        raise GalaxAlignError(f"split: {name} must be in [0, 1), got {value}")


def _take(n: int, fraction: float) -> int:
    """How many of n to take: rounded half up, never zero for a fraction above zero of 3 or more."""
    k = int(np.floor(n * fraction + 0.5))
    return max(k, 1) if fraction > 0 and n >= 3 else k


def make_split(labels: np.ndarray, val_fraction: float = 0.1, test_fraction: float = 0.1, seed: int = 0) -> Split:
    """Split each class (unknown labels, -1, as one more class) into train/val/test by the fractions."""
    _check_fraction("val_fraction", val_fraction)
    _check_fraction("test_fraction", test_fraction)
    if val_fraction + test_fraction >= 1.0:
        total = val_fraction + test_fraction
        raise GalaxAlignError(f"split: val_fraction + test_fraction must be below 1, got {total}")
    labels = np.asarray(labels, dtype=np.int64)
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {p: [] for p in PARTS}
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        n_test = _take(len(members), test_fraction)
        n_val = min(_take(len(members), val_fraction), len(members) - n_test)
        parts["test"].append(members[:n_test])
        parts["val"].append(members[n_test : n_test + n_val])
        parts["train"].append(members[n_test + n_val :])
    out = {p: np.sort(np.concatenate(v)) if v else np.zeros(0, np.int64) for p, v in parts.items()}
    fractions = {"train": round(1.0 - val_fraction - test_fraction, 10), "val": val_fraction, "test": test_fraction}
    return Split(**out, seed=seed, fractions=fractions, n=len(labels), source_fingerprint=labels_fingerprint(labels))


def label_fraction(indices: np.ndarray, labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """A stratified share of the labelled galaxies among `indices` (e.g. a split's train part).

    `labels` is the whole dataset's label array, indexed by `indices`. Each class keeps
    round(fraction * its count) galaxies, at least one. Each class is shuffled once by `seed`
    and a prefix is taken, so for one seed the 1% subset lies inside the 10% subset. Unknown
    labels (-1) are left out: they cannot supervise.
    """
    if not 0.0 < fraction <= 1.0:
        raise GalaxAlignError(f"label fraction must be in (0, 1], got {fraction}")
    indices = np.asarray(indices, dtype=np.int64)
    labels = np.asarray(labels, dtype=np.int64)
    sub = labels[indices]
    rng = np.random.default_rng(seed)
    chosen = []
    for c in np.unique(sub[sub >= 0]):
        members = rng.permutation(np.sort(indices[sub == c]))
        k = max(1, int(np.floor(len(members) * fraction + 0.5)))
        chosen.append(members[:k])
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, np.int64)
