"""Classification and retrieval metrics: plain functions of arrays, no model involved.

Kept free of torch and of the run format so a benchmark, a notebook or a test can score any
predictions or embeddings the same way the `evaluate` command does.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

# Queries are scored in blocks of about this many query-database pairs, so memory stays bounded
# (a few float64 arrays of this size, 8 MB each) however large the database is.
CHUNK_PAIRS = 1 << 20


def classification_metrics(y_true, y_pred, class_names: Sequence[str]) -> dict:
    """Accuracy, macro-F1, per-class precision/recall/F1/support and the confusion matrix.

    Labels are class ids 0..C-1 indexing `class_names`. Macro-F1 averages over the classes that
    occur in `y_true` or `y_pred` (sklearn's default), so a scheme's classes absent from a data
    set do not count as zeros; `per_class` and `confusion` (rows = true, columns = predicted)
    cover every class. Undefined ratios (no predictions, no support) are 0.
    """
    y_true, y_pred = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)
    if len(y_true) == 0:
        raise ValueError("classification_metrics: no samples")
    labels = list(range(len(class_names)))
    precision, recall, f1, support = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
        "per_class": {
            name: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for name, p, r, f, s in zip(class_names, precision, recall, f1, support)
        },
        "confusion": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
    }


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval of a proportion successes/n (95% at the default z): unlike the
    normal approximation it stays inside [0, 1] and is honest at small n and at 0 or n
    successes. (nan, nan) when n is 0."""
    if not 0 <= successes <= n:
        raise ValueError(f"wilson_interval: need 0 <= successes <= n, got {successes} of {n}")
    if n == 0:
        return float("nan"), float("nan")
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def _l2_normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _standardise(query_attrs, db_attrs) -> tuple[np.ndarray, np.ndarray]:
    """Scale each attribute by its spread over the database; drop attributes that never vary."""
    q, d = np.asarray(query_attrs, dtype=np.float64), np.asarray(db_attrs, dtype=np.float64)
    if q.ndim != 2 or d.ndim != 2 or q.shape[1] != d.shape[1]:
        raise ValueError(f"attributes must be (n, a) arrays with the same a, got {q.shape} and {d.shape}")
    q, d = np.where(np.isfinite(q), q, np.nan), np.where(np.isfinite(d), d, np.nan)
    has = np.isfinite(d).any(axis=0)
    mean = np.zeros(d.shape[1])
    std = np.zeros(d.shape[1])
    mean[has], std[has] = np.nanmean(d[:, has], axis=0), np.nanstd(d[:, has], axis=0)
    keep = std > 0
    return (q[:, keep] - mean[keep]) / std[keep], (d[:, keep] - mean[keep]) / std[keep]


def _attribute_similarity(q: np.ndarray, d: np.ndarray, scale: float) -> np.ndarray:
    """exp(-rms distance / scale) over the attributes finite in both items; 0 where none are.

    Written as matrix products of masked values so a block costs O(chunk x database) memory,
    not O(chunk x database x attributes).
    """
    mq, md = np.isfinite(q).astype(np.float64), np.isfinite(d).astype(np.float64)
    q0, d0 = np.nan_to_num(q), np.nan_to_num(d)
    shared = mq @ md.T
    squared = (q0**2) @ md.T + mq @ (d0**2).T - 2.0 * q0 @ d0.T
    with np.errstate(invalid="ignore", divide="ignore"):
        rms = np.sqrt(np.maximum(squared, 0.0) / shared)
    return np.where(shared > 0, np.exp(-rms / scale), 0.0)


def retrieval_metrics(
    query_emb,
    query_labels,
    db_emb,
    db_labels,
    k: int = 10,
    query_attrs=None,
    db_attrs=None,
    query_ids=None,
    db_ids=None,
    attr_scale: float = 1.0,
) -> dict:
    """Mean AP@k, precision@k, recall@k and nDCG@k of ranking the database for each query.

    Similarity is the cosine of L2-normalised embeddings; every query ranks the whole database.
    An item is relevant when it has the query's class (labels < 0 are unknown: never relevant).
    With R the number of relevant database items and rel_i the relevance at rank i:

    - AP@k = (1 / min(k, R)) * sum_{i<=k} P@i * rel_i, so a perfect top k scores 1 even when
      R > k;
    - precision@k = (relevant in the top k) / k;  recall@k = (relevant in the top k) / R;
    - nDCG@k = DCG@k / ideal DCG@k with DCG@k = sum_{i<=k} gain_i / log2(i + 1). Without
      attributes the gain is rel_i. With attributes ((n, a) arrays; NaN where unknown) the gain
      is rel_i * (1 + exp(-d / attr_scale)), d the root-mean-square difference of the attributes
      finite in both items, each standardised over the database: among same-class items, those
      with similar parameters or vote fractions are worth more. The ideal DCG orders the whole
      database by gain.

    Queries with no relevant item (R = 0) are left out of the means (None if no query is left).
    When queries and database overlap (e.g. the training split searched against itself), pass
    `query_ids` and `db_ids`: a database item with the query's own id is skipped, so nobody
    retrieves itself.
    Keys use the actual k: `map@10`, ..., with `n_queries` (queries scored) and `graded`.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    q, d = _l2_normalise(query_emb), _l2_normalise(db_emb)
    q_labels, d_labels = np.asarray(query_labels, dtype=np.int64), np.asarray(db_labels, dtype=np.int64)
    if len(q) != len(q_labels) or len(d) != len(d_labels):
        raise ValueError("retrieval_metrics: embeddings and labels differ in length")
    if len(d) == 0:
        raise ValueError("retrieval_metrics: empty database")
    graded = query_attrs is not None and db_attrs is not None
    if graded:
        q_attrs, d_attrs = _standardise(query_attrs, db_attrs)
    exclude = query_ids is not None and db_ids is not None
    if exclude:
        q_ids, d_ids = np.asarray(query_ids), np.asarray(db_ids)
    top_n = min(k, len(d))
    discount = 1.0 / np.log2(np.arange(2, top_n + 2))
    sums = dict.fromkeys(("ap", "precision", "recall", "ndcg"), 0.0)
    scored = 0
    chunk = max(1, CHUNK_PAIRS // max(len(d), 1))
    for start in range(0, len(q), chunk):
        rows = slice(start, start + chunk)
        sims = q[rows] @ d.T
        relevant = (q_labels[rows, None] == d_labels[None, :]) & (q_labels[rows, None] >= 0)
        if exclude:
            self_match = q_ids[rows, None] == d_ids[None, :]
            sims[self_match] = -np.inf
            relevant &= ~self_match
        n_relevant = relevant.sum(axis=1)
        gains = (
            relevant * (1.0 + _attribute_similarity(q_attrs[rows], d_attrs, attr_scale)) if graded else relevant * 1.0
        )
        # The top k by similarity without sorting whole rows; equal scores rank by database position.
        candidates = np.argpartition(-sims, top_n - 1, axis=1)[:, :top_n]
        order = np.lexsort((candidates, -np.take_along_axis(sims, candidates, axis=1)), axis=1)
        top = np.take_along_axis(candidates, order, axis=1)
        rel = np.take_along_axis(relevant, top, axis=1)
        hits = np.cumsum(rel, axis=1)
        dcg = np.take_along_axis(gains, top, axis=1) @ discount
        ideal = -np.sort(np.partition(-gains, top_n - 1, axis=1)[:, :top_n], axis=1) @ discount
        ok = n_relevant > 0
        precision_at_i = hits / np.arange(1, top_n + 1)
        sums["ap"] += float(((precision_at_i * rel).sum(axis=1)[ok] / np.minimum(k, n_relevant[ok])).sum())
        sums["precision"] += float((hits[ok, -1] / k).sum())
        sums["recall"] += float((hits[ok, -1] / n_relevant[ok]).sum())
        sums["ndcg"] += float((dcg[ok] / ideal[ok]).sum())
        scored += int(ok.sum())
    mean = {name: (total / scored if scored else None) for name, total in sums.items()}
    return {
        f"map@{k}": mean["ap"],
        f"precision@{k}": mean["precision"],
        f"recall@{k}": mean["recall"],
        f"ndcg@{k}": mean["ndcg"],
        "k": k,
        "n_queries": scored,
        "graded": graded,
    }


def paired_gap(ours: np.ndarray, other: np.ndarray) -> tuple[float, float]:
    """Mean accuracy difference of two (seeds, galaxies) 0/1 arrays and its 95 % half-width."""
    difference = ours - other
    n_seeds, n_galaxies = difference.shape
    per_galaxy, per_seed = difference.mean(axis=0), difference.mean(axis=1)
    variance = per_galaxy.var(ddof=1) / n_galaxies if n_galaxies > 1 else 0.0
    if n_seeds > 1:
        variance += per_seed.var(ddof=1) / n_seeds
    return float(difference.mean()), float(1.96 * math.sqrt(variance))
