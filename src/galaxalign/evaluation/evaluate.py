"""Evaluate a trained run on its own split: classification and similarity search.

A run is only comparable with others on the split it was trained with, so the split comes from
RUN_DIR/split.json and a dataset that does not match it is refused. See docs/evaluation.md.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from galaxalign.config import option, required
from galaxalign.data import GalaxyDataset, open_dataset
from galaxalign.data.splits import PARTS
from galaxalign.devices import DEVICE_HELP, check_device_name
from galaxalign.errors import GalaxAlignError
from galaxalign.evaluation.metrics import classification_metrics, retrieval_metrics
from galaxalign.io import atomic_path, write_json_atomic, write_text_atomic
from galaxalign.models.prototypes import SCORING_MODES
from galaxalign.runs import (
    CONFUSION_FILE,
    EVAL_METRICS_FILE,
    FEATURES_FILE,
    PREDICTIONS_FILE,
    SPLIT_FILE,
    Run,
    eval_dir,
    load_split,
)

RETRIEVAL_K = 10
HELDOUT = "heldout"  # the name of a separate test file's evaluation (RUN_DIR/eval-heldout)


@dataclass
class EvaluateConfig:
    """`galaxalign evaluate`: a run's metrics on one part of its own split."""

    run: str = required("run folder")
    data: str = required("the dataset the run was trained on")
    split: str = option("test", "part to evaluate", choices=PARTS)
    out: str | None = option(None, "output folder (default: RUN/eval-SPLIT)")
    queries: str | None = option(
        None, "a separate test file (same scheme) scored instead of the split part; written to RUN/eval-heldout"
    )
    mode: str | None = option(
        None, "scoring: head, text, symbol or fusion (default: the run's own)", choices=SCORING_MODES
    )
    batch_size: int = option(64, "images embedded at once")
    workers: int = option(0, "processes that read and decode images ahead (0: this process)")
    device: str = option("auto", DEVICE_HELP)

    def __post_init__(self):
        check_device_name(self.device)


PREDICTION_COLUMNS = ("index", "label", "true_class", "predicted", "predicted_class")


@dataclass(frozen=True)
class EvalSets:
    """Who is scored and who is searched: `query` indexes `asked` (a part of the run's split, or a
    separate file), `database` indexes `dataset` (the run's training split)."""

    split: str  # the part's name, or HELDOUT
    asked: GalaxyDataset
    query: np.ndarray
    dataset: GalaxyDataset
    database: np.ndarray

    @property
    def query_labels(self) -> np.ndarray:
        return self.asked.labels[self.query]


@dataclass(frozen=True)
class Scanned:
    """What the run made of the galaxies: unit vectors of the query and database galaxies in the
    retrieval `space`, the classes predicted under each mode, and the queries' pooled features."""

    scoring: str
    modes: tuple[str, ...]
    space: str  # "embeddings", or "features" for a run that aligns nothing
    query: np.ndarray
    database: np.ndarray
    predicted: dict[str, np.ndarray]
    features: np.ndarray


def evaluate_run(
    run: Run,
    dataset: GalaxyDataset | str | Path,
    split: str = "test",
    out_dir: str | Path | None = None,
    mode: str | None = None,
    batch_size: int = 64,
    queries: GalaxyDataset | str | Path | None = None,
    workers: int = 0,
) -> dict:
    """Score `run` on one part of its split; write metrics.json and confusion.png to `out_dir`.

    Classification uses the run's default scoring (or `mode`). Retrieval takes the split's
    images as queries against the run's training split as the database, with graded nDCG when
    the dataset has attributes. Galaxies of unknown class (-1) are left out of both. `dataset`
    is a dataset or a path opened with the run's scheme; `out_dir` defaults to
    RUN_DIR/eval-<split>. Returns the metrics, plus `files` naming what was written.

    `queries`, a separate file (a test set rendered or drawn on its own), replaces the split
    part: every labelled galaxy in it is scored and queries the run's training split; the
    output goes to RUN_DIR/eval-heldout.
    """
    sets = eval_sets(run, dataset, split, queries)
    scanned = scan(run, sets, mode or run.scoring, batch_size, workers)
    metrics = score(run, sets, scanned)
    files = write_evaluation(run, sets, scanned, metrics, out_dir)
    return {**metrics, "files": {name: str(path) for name, path in files.items()}}


def eval_sets(
    run: Run, dataset: GalaxyDataset | str | Path, split: str, queries: GalaxyDataset | str | Path | None
) -> EvalSets:
    """The labelled query and database galaxies, checked against the run's split and scheme."""
    if split not in PARTS:
        raise GalaxAlignError(f"split must be one of {', '.join(PARTS)}, got {split!r}")
    if not isinstance(dataset, GalaxyDataset):
        dataset = open_dataset(dataset, scheme=run.scheme)
    parts = load_split(run.run_dir)
    parts.check_labels(dataset.labels, where=f"{dataset.source} against {run.run_dir / SPLIT_FILE}")
    database = labelled_only(parts.train, dataset.labels)
    if queries is None:
        asked, query = dataset, labelled_only(getattr(parts, split), dataset.labels)
    else:
        asked = queries if isinstance(queries, GalaxyDataset) else open_dataset(queries, scheme=run.scheme)
        if asked.scheme.name != run.scheme.name:
            raise GalaxAlignError(
                f"{asked.source}: labelled in scheme {asked.scheme.name}, the run uses {run.scheme.name}"
            )
        split, query = HELDOUT, labelled_only(np.arange(len(asked)), asked.labels)
    for part, members, where in ((split, query, asked), ("train", database, dataset)):
        if not len(members):
            raise GalaxAlignError(f"{where.source}: no labelled galaxies in the {part} split")
    return EvalSets(split, asked, query, dataset, database)


def scan(run: Run, sets: EvalSets, scoring: str, batch_size: int, workers: int) -> Scanned:
    """Embed the queries (predicting under every mode the run has, `scoring` first) and the database."""
    modes = (scoring, *(m for m in run.modes() if m != scoring)) if run.config.uses_text else (scoring,)
    # A run that aligns nothing never trains its projection: it retrieves by its pooled features.
    space = "embeddings" if run.config.uses_text else "features"
    asked = run.embed_dataset(
        sets.asked,
        sets.query,
        modes=modes,
        features=True,
        batch_size=batch_size,
        workers=workers,
        desc=sets.split,
    )
    query = _unit(getattr(asked, space))
    if sets.split == "train":
        database = query
    else:
        searched = run.embed_dataset(
            sets.dataset,
            sets.database,
            features=space == "features",
            batch_size=batch_size,
            workers=workers,
            desc="train (database)",
        )
        database = _unit(getattr(searched, space))
    assert asked.features is not None  # features=True above
    return Scanned(scoring, modes, space, query, database, asked.predicted, asked.features)


def score(run: Run, sets: EvalSets, scanned: Scanned) -> dict:
    """metrics.json's content: classification under the run's scoring, and retrieval."""
    query_attrs, db_attrs = _attribute_matrix(sets.asked), _attribute_matrix(sets.dataset)
    if query_attrs is None or db_attrs is None or query_attrs.shape[1] != db_attrs.shape[1]:
        query_attrs = db_attrs = None
    same_ids = sets.asked is sets.dataset  # a galaxy is not its own neighbour; a separate file shares no galaxies
    retrieval = retrieval_metrics(
        scanned.query,
        sets.query_labels,
        scanned.database,
        sets.dataset.labels[sets.database],
        k=RETRIEVAL_K,
        query_attrs=None if query_attrs is None else query_attrs[sets.query],
        db_attrs=None if db_attrs is None else db_attrs[sets.database],
        query_ids=sets.query if same_ids else None,
        db_ids=sets.database if same_ids else None,
    )
    scoring, predicted = scanned.scoring, scanned.predicted
    metrics = {
        "retrieval_space": scanned.space,
        "run": str(run.run_dir),
        "fingerprint": run.fingerprint,
        "method": run.config.method,
        "dataset": sets.asked.source,
        "split": sets.split,
        "n": int(len(sets.query)),
        "scoring": scoring,
        "fusion_weight": run.fusion_weight if scoring == "fusion" else None,
        **classification_metrics(sets.query_labels, predicted[scoring], run.scheme.names),
        "database": {"dataset": sets.dataset.source, "split": "train", "n": int(len(sets.database))},
        **retrieval,
    }
    if run.config.uses_text:
        metrics["accuracy_by_mode"] = {m: float(np.mean(predicted[m] == sets.query_labels)) for m in scanned.modes}
    return metrics


def write_evaluation(
    run: Run, sets: EvalSets, scanned: Scanned, metrics: dict, out_dir: str | Path | None
) -> dict[str, Path]:
    """metrics.json, the confusion figure, the predictions and the features, each written whole."""
    out = Path(out_dir) if out_dir is not None else eval_dir(run.run_dir, sets.split)
    files = {
        "metrics": out / EVAL_METRICS_FILE,
        "confusion": out / CONFUSION_FILE,
        "predictions": out / PREDICTIONS_FILE,
        "features": out / FEATURES_FILE,
    }
    with atomic_path(files["features"]) as tmp:  # the image-tower features, in predictions order: for probes
        with open(tmp, "wb") as handle:
            np.save(handle, np.asarray(scanned.features, dtype=np.float32))
    write_json_atomic(files["metrics"], metrics)
    predicted = scanned.predicted[scanned.scoring]
    write_predictions(files["predictions"], sets.query, sets.query_labels, predicted, run.scheme.names)
    title = f"{run.run_dir.name}: {sets.split}, {scanned.scoring} scoring (accuracy {metrics['accuracy']:.3f})"
    plot_confusion(metrics["confusion"], run.scheme.names, files["confusion"], title=title)
    return files


def _attribute_matrix(dataset: GalaxyDataset) -> np.ndarray | None:
    """Each galaxy's attributes (generating parameters or vote fractions) as columns, for graded nDCG."""
    attrs = dataset.attributes()
    return np.column_stack([np.asarray(attrs[name], dtype=np.float64) for name in sorted(attrs)]) if attrs else None


def _unit(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def write_predictions(path, indices, labels, predicted, class_names: list[str]) -> None:
    """One row per galaxy (dataset index, true and predicted class): what paired comparisons need."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(PREDICTION_COLUMNS)
    writer.writerows(
        (int(i), int(t), class_names[int(t)], int(p), class_names[int(p)])
        for i, t, p in zip(indices, labels, predicted)
    )
    write_text_atomic(path, text.getvalue())


def read_predictions(path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(indices, true labels, predicted labels) from a file `write_predictions` wrote."""
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows or list(rows[0]) != list(PREDICTION_COLUMNS):
        raise GalaxAlignError(f"{path}: not a predictions file (expected columns {', '.join(PREDICTION_COLUMNS)})")
    index, label, predicted = (
        np.array([int(row[key]) for row in rows], dtype=np.int64) for key in ("index", "label", "predicted")
    )
    return index, label, predicted


def predict_split(
    run: Run, dataset: GalaxyDataset, split: str = "test", modes=None, batch_size: int = 64
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The labelled galaxies of one part of the run's split, and the class predicted for each
    under every scoring mode in `modes` (default: the run's own). No retrieval."""
    indices = labelled_only(getattr(load_split(run.run_dir), split), dataset.labels)
    scanned = run.embed_dataset(dataset, indices, modes=tuple(modes or (run.scoring,)), batch_size=batch_size)
    return indices, scanned.predicted


def labelled_only(indices: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The members of `indices` whose class is known: unknown (-1) ones are left out of every metric."""
    return indices[labels[indices] >= 0]


def plot_confusion(confusion, class_names: list[str], path: str | Path, title: str = "") -> None:
    """Counts in the cells, colour by the share of each true class (so rare classes show too)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    counts = np.asarray(confusion, dtype=np.int64)
    totals = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, totals, out=np.zeros(counts.shape), where=totals > 0)
    n = len(class_names)
    side = 3.0 + 0.7 * n
    fig = Figure(figsize=(side + 1.5, side), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    image = ax.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(n), class_names, rotation=40, ha="right", rotation_mode="anchor", fontsize=8)
    ax.set_yticks(range(n), class_names, fontsize=8)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    if title:
        ax.set_title(title, fontsize=9)
    for i in range(n):
        for j in range(n):
            colour = "white" if shares[i, j] > 0.5 else ("black" if counts[i, j] else "0.7")
            ax.text(j, i, str(counts[i, j]), ha="center", va="center", color=colour, fontsize=8)
    fig.colorbar(image, ax=ax, shrink=0.8, label="share of the true class")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
