"""The benchmark table: every method, same backbone, same split, same step budget.

For each seed and label fraction it trains `supervised`, `clip`, `galaxalign-stage1` and
`galaxalign` with identical settings, adds the no-training rows (zero-shot with the backbone as
built, and a logistic-regression probe on frozen image features), evaluates each on the test
split, and writes `results.json` (every run) and `results.md` (mean and spread over seeds).
Runs already finished in OUT are reused, so an interrupted benchmark continues where it stopped.
Nothing is tuned on the test split: runs select checkpoints on validation, the probe uses fixed
hyper-parameters.
"""

from __future__ import annotations

import math
import shutil
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from galaxalign.data import Split, label_fraction, make_split, open_dataset
from galaxalign.errors import GalaxAlignError
from galaxalign.evaluation.evaluate import (
    evaluate_run,
    labelled_only,
    predict_split,
    read_predictions,
    write_predictions,
)
from galaxalign.evaluation.metrics import classification_metrics, paired_gap, retrieval_metrics
from galaxalign.io import write_json_atomic, write_text_atomic
from galaxalign.jobs.config import ALL_METHODS, NO_TRAINING, BenchmarkConfig
from galaxalign.runs import (
    MODEL_FILE,
    PREDICTIONS_FILE,
    SPLIT_FILE,
    eval_dir,
    init_run,
    is_evaluated,
    is_finished,
    load_run,
    read_config,
    read_eval_metrics,
    read_summary,
)
from galaxalign.taxonomy import load_scheme
from galaxalign.training import train

# Few-label runs make many short epochs; validating each would cost more than training.
MAX_VALIDATIONS = 4


def run_benchmark(config: BenchmarkConfig, progress: bool = True) -> dict:
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "benchmark_config.json", asdict(config))
    scheme = load_scheme(config.train.scheme)
    dataset = open_dataset(config.data, scheme=scheme)
    split_path = out / SPLIT_FILE
    if not split_path.exists():
        make_split(dataset.labels, val_fraction=config.train.val_fraction, test_fraction=config.train.test_fraction,
                   seed=config.split_seed).save(split_path)
    split = Split.load(split_path)
    split.check_labels(dataset.labels, where=str(split_path))

    rows = []
    for seed in config.seed_list:
        frozen = None  # (untrained run, probe features) shared by the no-training rows of this seed
        for fraction in config.fraction_list:
            for method in config.method_list:
                if method == "zero-shot" and fraction != config.fraction_list[0]:
                    continue  # uses no labels: one row per seed
                name = f"{method}_f{fraction:g}_s{seed}"
                _say(progress, f"[benchmark] {name}")
                started = time.perf_counter()
                if method in NO_TRAINING:
                    if frozen is None:
                        frozen = _frozen_baseline(config, dataset, split, seed, out)
                    row = _no_training_row(method, frozen, dataset, split, fraction, seed, scheme)
                else:
                    row = _trained_row(config, method, fraction, seed, dataset, split, out / "runs" / name, progress)
                row.setdefault("seconds", round(time.perf_counter() - started, 1))
                rows.append(row)
                write_json_atomic(out / "results.json", {"config": asdict(config), "rows": rows})
    table = summarise(rows)
    write_text_atomic(out / "results.md", results_markdown(config, table, rows, dataset, split))
    return {"rows": rows, "table": table}


def epochs_for(config: BenchmarkConfig, n_labelled: int) -> int:
    """The shared budget: `epochs` passes, raised so that every run makes `min_steps` steps."""
    steps_per_epoch = max(1, n_labelled // config.train.batch_size)
    return max(config.train.epochs, math.ceil(config.min_steps / steps_per_epoch))


def _trained_row(config, method, fraction, seed, dataset, split, run_dir: Path, progress: bool) -> dict:
    n_labelled = len(label_fraction(split.train, dataset.labels, fraction, seed))
    if not (is_evaluated(run_dir) and is_finished(run_dir)):
        if run_dir.exists():
            shutil.rmtree(run_dir)  # an unfinished run from an interrupted benchmark: start it again
        epochs = epochs_for(config, n_labelled)
        train_config = replace(
            config.train, data=config.data, out=str(run_dir), method=method, label_fraction=fraction, epochs=epochs,
            val_every=math.ceil(epochs / MAX_VALIDATIONS), seed=seed, split_file=str(Path(config.out) / SPLIT_FILE),
        )
        train(train_config, progress=progress)
        evaluate_run(load_run(run_dir, device=config.train.device), dataset, "test", progress=progress)
    metrics = read_eval_metrics(run_dir)
    summary = read_summary(run_dir)
    return {
        "method": method, "label_fraction": fraction, "seed": seed, "train_labelled": summary["train_labelled"],
        "accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"], "map@10": metrics["map@10"],
        "ndcg@10": metrics["ndcg@10"], "seconds": summary["train_seconds"], "epochs": read_config(run_dir).epochs,
        "correct": _test_correctness(run_dir, dataset, split, config.train.device),
    }


def _test_correctness(run_dir: Path, dataset, split: Split, device: str) -> list[int]:
    """1/0 per labelled test galaxy, in split order, from the run's predictions.csv.

    Runs evaluated before predictions were saved get them now (test images only).
    """
    path = eval_dir(run_dir) / PREDICTIONS_FILE
    test = labelled_only(split.test, dataset.labels)
    if not path.exists():
        run = load_run(run_dir, device=device)
        indices, predicted = predict_split(run, dataset, "test")
        write_predictions(path, indices, dataset.labels[indices], predicted[run.scoring], run.scheme.names)
    indices, truth, predicted = read_predictions(path)
    if not np.array_equal(indices, test):
        raise GalaxAlignError(f"{path}: predictions are not for the benchmark's test split")
    return (truth == predicted).astype(int).tolist()


@dataclass
class _Frozen:
    run: object
    train_features: np.ndarray
    test_features: np.ndarray

    def embeddings(self, features: np.ndarray) -> np.ndarray:
        """Project frozen features into the (untrained) shared space, as `encode_image` does."""
        import torch

        with torch.no_grad():
            vectors = torch.from_numpy(features).to(self.run.device)
            return self.run.model.project_image(vectors).cpu().numpy()


def _frozen_baseline(config, dataset, split, seed, out: Path) -> _Frozen:
    """The backbone as built (pre-trained towers, fresh projections) and its frozen features."""
    run_dir = out / "runs" / f"untrained_s{seed}"
    if not (run_dir / MODEL_FILE).exists():
        if run_dir.exists():
            shutil.rmtree(run_dir)
        init_run(replace(config.train, data=config.data, out=str(run_dir), method="clip", seed=seed,
                         split_file=str(out / SPLIT_FILE)))
    run = load_run(run_dir, device=config.train.device)

    def features(indices):
        return run.embed_dataset(dataset, indices, features=True).features

    return _Frozen(run=run, train_features=features(split.train),
                   test_features=features(labelled_only(split.test, dataset.labels)))


def _no_training_row(method, frozen: _Frozen, dataset, split, fraction, seed, scheme) -> dict:
    """Zero-shot: text prototypes in the untrained space. Probe: logistic regression, fixed C."""
    labels = dataset.labels
    test = labelled_only(split.test, labels)
    test_labels = labels[test]
    if method == "zero-shot":
        query, database = frozen.embeddings(frozen.test_features), frozen.embeddings(frozen.train_features)
        predicted = frozen.run.proba_from_embeddings(query, "text").argmax(1)
        labelled = 0
    else:
        from sklearn.linear_model import LogisticRegression
        from sklearn.preprocessing import StandardScaler

        chosen = label_fraction(split.train, labels, fraction, seed)
        position = {int(i): p for p, i in enumerate(split.train)}
        rows = [position[int(i)] for i in chosen]
        scaler = StandardScaler().fit(frozen.train_features[rows])
        probe = LogisticRegression(max_iter=2000, C=1.0)
        probe.fit(scaler.transform(frozen.train_features[rows]), labels[chosen])
        predicted = probe.predict(scaler.transform(frozen.test_features))
        query, database = frozen.test_features, frozen.train_features
        labelled = len(chosen)
    scores = classification_metrics(test_labels, predicted, scheme.names)
    retrieval = retrieval_metrics(query, test_labels, database, labels[split.train], k=10)
    return {"method": method, "label_fraction": fraction if method != "zero-shot" else 0.0, "seed": seed,
            "train_labelled": labelled, "accuracy": scores["accuracy"], "macro_f1": scores["macro_f1"],
            "map@10": retrieval["map@10"], "ndcg@10": retrieval["ndcg@10"], "epochs": 0,
            "correct": (predicted == test_labels).astype(int).tolist()}


def summarise(rows: list[dict]) -> list[dict]:
    """Mean and standard deviation over seeds, per method and label fraction."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["method"], row["label_fraction"]), []).append(row)
    order = {m: i for i, m in enumerate(ALL_METHODS)}
    table = []
    for (method, fraction), members in sorted(groups.items(), key=lambda kv: (-kv[0][1], order[kv[0][0]])):
        entry = {"method": method, "label_fraction": fraction, "seeds": len(members),
                 "train_labelled": int(np.mean([m["train_labelled"] for m in members]))}
        for key in ("accuracy", "macro_f1", "map@10", "seconds"):
            values = np.array([m[key] for m in members], dtype=float)
            entry[key] = float(values.mean())
            entry[f"{key}_std"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
        table.append(entry)
    return table


def claim_check(rows: list[dict]) -> list[str]:
    """Plain sentences: does galaxalign beat supervised and clip at each label fraction?

    The comparison is paired: both methods answered the same test galaxies with the same seeds.
    The gap is the mean over seeds of the accuracy difference; its standard error adds the
    spread of the per-galaxy differences (averaged over seeds) over the galaxies and, with more
    than one seed, the spread of the per-seed gaps over the seeds. A gap counts only when it is
    more than 1.96 standard errors from zero (a 95 % interval that excludes it).
    """
    runs = {(r["method"], r["label_fraction"], r["seed"]): np.asarray(r["correct"], dtype=float) for r in rows}
    lines = []
    for fraction in sorted({r["label_fraction"] for r in rows if r["method"] == "galaxalign"}, reverse=True):
        for rival in ("supervised", "clip"):
            seeds = sorted(s for m, f, s in runs if (m, f) == ("galaxalign", fraction) and (rival, f, s) in runs)
            if not seeds:
                continue
            ours = np.stack([runs[("galaxalign", fraction, s)] for s in seeds])
            other = np.stack([runs[(rival, fraction, s)] for s in seeds])
            gap, half_width = paired_gap(ours, other)
            won, lost = int((ours > other).sum()), int((ours < other).sum())
            verdict = "beats" if gap > half_width else ("trails" if gap < -half_width else "ties with (within the uncertainty)")
            lines.append(f"- {fraction:.0%} of labels: galaxalign {verdict} {rival}: accuracy "
                         f"{ours.mean():.3f} vs {other.mean():.3f} ({gap:+.3f} ± {half_width:.3f}, 95 %); "
                         f"right where {rival} was wrong {won} times, the reverse {lost} times "
                         f"({len(seeds)} seed{'s' if len(seeds) > 1 else ''} × {ours.shape[1]} galaxies)")
    return lines


def results_markdown(config: BenchmarkConfig, table: list[dict], rows: list[dict], dataset, split) -> str:
    t = config.train

    def pm(entry, key):
        return f"{entry[key]:.3f} ± {entry[key + '_std']:.3f}" if entry["seeds"] > 1 else f"{entry[key]:.3f}"

    lines = [
        "# GalaxAlign benchmark",
        "",
        f"Data: `{Path(config.data).name}` ({len(dataset)} galaxies; split {len(split.train)}/{len(split.val)}/"
        f"{len(split.test)} train/val/test, seed {config.split_seed}). Backbone: `{t.backbone}`. "
        f"Seeds: {config.seeds}. Budget per run: {t.epochs} epochs over the labelled images, at least "
        f"{config.min_steps} steps, batch {t.batch_size}, top {t.trainable_blocks} blocks trained, lr {t.lr:g}, "
        f"{t.targets} contrastive targets, {t.symbol_variants} symbols per class.",
        "Accuracy and macro-F1 on the test split; mAP@10 retrieves the test galaxies from the training split. "
        "Mean ± standard deviation over seeds; time is training time per run in seconds.",
        "",
        "| method | label fraction | labelled images | accuracy | macro-F1 | mAP@10 | time (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    for e in table:
        fraction = "none" if e["method"] == "zero-shot" else f"{e['label_fraction']:g}"
        lines.append(f"| {e['method']} | {fraction} | {e['train_labelled']} | {pm(e, 'accuracy')} | "
                     f"{pm(e, 'macro_f1')} | {pm(e, 'map@10')} | {e['seconds']:.0f} |")
    check = claim_check(rows)
    if check:
        lines += ["", "## The claim, checked", "", *check]
    return "\n".join(lines) + "\n"


def _say(progress: bool, message: str) -> None:
    if progress:
        print(message, flush=True)
