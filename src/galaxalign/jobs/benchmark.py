"""The benchmark table: every method, same backbone, same split, same step budget.

For each seed, label fraction and step budget it trains every method with identical settings,
adds the no-training rows (zero-shot with the backbone as built, and a logistic-regression probe
on frozen image features), evaluates each on the test set, and writes `results.json` (every run)
and `results.md` (mean and spread over seeds, and the paired claim check). The test set is the
split's test part, or a separate file (`test_data`, rendered with its own seed). Runs already
finished in OUT are reused, so an interrupted benchmark continues where it stopped; each first
reading of the test set by a run is logged in `test_readings.jsonl`.
Nothing is tuned on the test set: runs select checkpoints and scoring on validation, probes their
regularisation, and `validation_only` trains and reports without reading the test set at all.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from galaxalign.data import GalaxyDataset, Split, label_fraction, make_split, open_dataset
from galaxalign.errors import GalaxAlignError
from galaxalign.evaluation.evaluate import HELDOUT, evaluate_run, labelled_only, read_predictions, write_predictions
from galaxalign.evaluation.metrics import classification_metrics, paired_gap, retrieval_metrics
from galaxalign.io import append_line, write_json_atomic, write_text_atomic
from galaxalign.jobs.config import ALL_METHODS, NO_TRAINING, VARIANTS, BenchmarkConfig, refuse_several_processes
from galaxalign.runs import (
    CONFIG_FILE,
    FEATURES_FILE,
    MODEL_FILE,
    PREDICTIONS_FILE,
    SPLIT_FILE,
    Run,
    Scoring,
    eval_dir,
    init_run,
    is_evaluated,
    is_finished,
    load_run,
    read_config,
    read_eval_metrics,
    read_summary,
    scoring_candidates,
)
from galaxalign.taxonomy import Scheme, load_scheme
from galaxalign.training import TrainConfig, train

# Few-label runs make many short epochs; validating each would cost more than training. Every run
# validates this many checkpoints in the stage whose weights it keeps (equal selection).
MAX_VALIDATIONS = 4
PROBE_C = (0.01, 0.1, 1.0, 10.0)  # logistic-regression regularisation tried on validation
READINGS_FILE = "test_readings.jsonl"

log = logging.getLogger(__name__)


@dataclass
class TestSet:
    """Where the test galaxies are: the split's test part, or every labelled galaxy of a separate file."""

    dataset: GalaxyDataset
    indices: np.ndarray
    heldout: bool

    @property
    def labels(self) -> np.ndarray:
        return self.dataset.labels[self.indices]

    @property
    def eval_name(self) -> str:
        return HELDOUT if self.heldout else "test"


@dataclass
class _Bench:
    """What every row of one benchmark shares, loaded once: its settings, scheme, data, split and test set."""

    config: BenchmarkConfig
    scheme: Scheme
    dataset: GalaxyDataset
    split: Split
    test: TestSet

    @property
    def out(self) -> Path:
        return Path(self.config.out)

    @property
    def device(self) -> str:
        return self.config.train.device


@dataclass(frozen=True)
class _Cell:
    """One row of the table: a method at a label fraction, seed and step budget."""

    method: str
    fraction: float
    seed: int
    steps: int | None

    @property
    def name(self) -> str:
        return f"{self.method}_f{self.fraction:g}_s{self.seed}" + (f"_n{self.steps}" if self.steps else "")


def run_benchmark(config: BenchmarkConfig) -> dict:
    refuse_several_processes("benchmark")
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "benchmark_config.json", asdict(config))
    scheme = load_scheme(config.train.scheme)
    dataset = open_dataset(config.data, scheme=scheme)
    split_path = out / SPLIT_FILE
    if not split_path.exists():
        make_split(
            dataset.labels,
            val_fraction=config.train.val_fraction,
            test_fraction=config.train.test_fraction,
            seed=config.split_seed,
        ).save(split_path)
    split = Split.load(split_path)
    split.check_labels(dataset.labels, where=str(split_path))
    bench = _Bench(config, scheme, dataset, split, _test_set(config, dataset, split, scheme))

    rows = []
    for seed in config.seed_list:
        frozen = None  # (untrained run, probe features) shared by the no-training rows of this seed
        for fraction in config.fraction_list:
            for steps in config.step_list:
                for method in config.method_list:
                    if method in NO_TRAINING and (steps != config.step_list[0] or config.validation_only):
                        continue  # no training, no budget; and their scores are test scores
                    if method == "zero-shot" and fraction != config.fraction_list[0]:
                        continue  # uses no labels: one row per seed
                    if fraction >= 1 and VARIANTS.get(method, ("", {}))[1].get("unlabelled_weight"):
                        continue  # semi-supervised: no galaxy is unlabelled at 100 %
                    cell = _Cell(method, fraction, seed, steps)
                    log.info("[benchmark] %s", cell.name)
                    started = time.perf_counter()
                    if method in NO_TRAINING:
                        if frozen is None:
                            frozen = _frozen_baseline(bench, seed)
                        row = _no_training_row(bench, cell, frozen)
                    else:
                        row = _trained_row(bench, cell)
                    row.setdefault("seconds", round(time.perf_counter() - started, 1))
                    rows.append(row)
                    write_json_atomic(out / "results.json", {"config": asdict(config), "rows": rows})
    table = summarise(rows)
    write_text_atomic(out / "results.md", results_markdown(config, table, rows, dataset, split, bench.test))
    return {"rows": rows, "table": table}


def _test_set(config: BenchmarkConfig, dataset: GalaxyDataset, split: Split, scheme) -> TestSet:
    if not config.test_data:
        return TestSet(dataset, labelled_only(split.test, dataset.labels), heldout=False)
    heldout = open_dataset(config.test_data, scheme=scheme)
    if heldout.source == dataset.source:
        raise GalaxAlignError(f"{config.test_data}: the test file must be another file than --data")
    ours, theirs = dataset.render_version, heldout.render_version
    if ours is not None and theirs is not None and ours != theirs:
        raise GalaxAlignError(
            f"{config.test_data}: Galaxy10-Sim render version {theirs}, but {config.data} has version "
            f"{ours}; render both with one version of galaxalign"
        )
    return TestSet(heldout, labelled_only(np.arange(len(heldout)), heldout.labels), heldout=True)


def epochs_for(config: BenchmarkConfig, n_labelled: int, steps: int | None = None) -> int:
    """The shared budget: `epochs` passes, raised so that every run makes `min_steps` steps; or,
    with a step budget, the fewest whole epochs that make at least that many steps."""
    steps_per_epoch = max(1, n_labelled // config.train.batch_size)
    if steps is not None:
        return max(1, math.ceil(steps / steps_per_epoch))
    return max(config.train.epochs, math.ceil(config.min_steps / steps_per_epoch))


def trained_run_config(
    config: BenchmarkConfig, method: str, fraction: float, seed: int, epochs: int, run_dir: Path
) -> TrainConfig:
    """One benchmark run's config: the shared settings, its method (a variant's own settings
    replacing the shared ones), labels, seed and budget."""
    method, settings = VARIANTS.get(method, (method, {}))
    return config.train.for_method(
        method,
        **settings,
        data=config.data,
        out=str(run_dir),
        label_fraction=fraction,
        epochs=epochs,
        val_every=1,
        validations=MAX_VALIDATIONS,
        seed=seed,
        split_file=str(Path(config.out) / SPLIT_FILE),
    )


def selection_size(run_config: TrainConfig) -> int:
    """Scorings a run chooses among at each validated checkpoint of its kept stage."""
    stage = 2 if run_config.stage2_epoch is not None else 1
    return len(scoring_candidates(run_config.scoring_modes(stage)))


def _resumable(run_dir: Path, run_config: TrainConfig) -> bool:
    """An interrupted run continues from its last checkpoint (bit for bit what an uninterrupted
    run gives) when its saved config is the one this benchmark would start it with."""
    if not (run_dir / CONFIG_FILE).exists():
        return False
    try:
        return read_config(run_dir) == run_config
    except GalaxAlignError:  # a damaged config: the run starts again
        return False


def _trained_row(bench: _Bench, cell: _Cell) -> dict:
    config, dataset, split, test = bench.config, bench.dataset, bench.split, bench.test
    method, fraction, seed, steps = cell.method, cell.fraction, cell.seed, cell.steps
    run_dir = bench.out / "runs" / cell.name
    n_labelled = len(label_fraction(split.train, dataset.labels, fraction, seed))
    if not is_finished(run_dir):
        run_config = trained_run_config(config, method, fraction, seed, epochs_for(config, n_labelled, steps), run_dir)
        resume = _resumable(run_dir, run_config)
        if run_dir.exists() and not resume:
            shutil.rmtree(run_dir)  # interrupted before its config was written, or with other settings
        train(run_config, resume=resume)
    summary, run_config = read_summary(run_dir), read_config(run_dir)
    row = {
        "method": method,
        "label_fraction": fraction,
        "seed": seed,
        "steps_budget": steps,
        "train_labelled": summary["train_labelled"],
        "epochs": run_config.epochs,
        "steps": run_config.epochs * max(1, summary["train_labelled"] // run_config.batch_size),
        "symbol_source": run_config.symbol_source,
        "targets": run_config.targets,
        "trainable_blocks": [run_config.image_blocks, run_config.text_blocks],  # image, text towers
        "scoring_rule": run_config.scoring,
        # How many (checkpoint, scoring) candidates the run chose among on validation.
        "selection": [len(run_config.validated_epochs()), selection_size(run_config)],
        "val_accuracy": summary["best_val_accuracy"],
        "best_stage": summary.get("best_stage"),
        "best_step": summary.get("best_step"),
        "seconds": summary["train_seconds"],
    }
    if config.validation_only:  # 1/0 per validation galaxy, for paired comparisons on validation
        val = TestSet(dataset, labelled_only(split.val, dataset.labels), heldout=False)
        return row | {"val_correct": _correctness(run_dir, val, bench.device, "val")}
    run = None
    if not is_evaluated(run_dir, test.eval_name):
        run = load_run(run_dir, device=bench.device)
        evaluate_run(
            run,
            dataset,
            "test",
            queries=test.dataset if test.heldout else None,
            workers=config.train.workers,
        )
        _log_reading(bench.out, run_dir, test)
    metrics = read_eval_metrics(run_dir, test.eval_name)
    row |= {
        "accuracy": metrics["accuracy"],
        "macro_f1": metrics["macro_f1"],
        "map@10": metrics["map@10"],
        "ndcg@10": metrics["ndcg@10"],
        "scoring": Scoring(metrics["scoring"], metrics.get("fusion_weight") or 0.5).name,
        "correct": _correctness(run_dir, test, bench.device, test.eval_name, run),
    }
    if config.probe:
        row |= _probe_row(bench, run or load_run(run_dir, device=bench.device), run_dir)
    return row


def _log_reading(out: Path, run_dir: Path, test: TestSet) -> None:
    """One line per first reading of the test set by a run: what docs/results.md must list."""
    record = {
        "run": run_dir.name,
        "test": test.dataset.source,
        "galaxies": int(len(test.indices)),
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    append_line(out / READINGS_FILE, json.dumps(record))


def _correctness(run_dir: Path, test: TestSet, device: str, name: str, run: Run | None = None) -> list[int]:
    """1/0 per galaxy of `test` (the test set, or the validation split), in its order, from the
    run's predictions.csv in eval-`name`.

    Runs evaluated before predictions were saved get them now (those images only).
    """
    path = eval_dir(run_dir, name) / PREDICTIONS_FILE
    if not path.exists():
        run = run or load_run(run_dir, device=device)
        predicted = run.embed_dataset(test.dataset, test.indices, modes=(run.scoring,)).predicted[run.scoring]
        write_predictions(path, test.indices, test.labels, predicted, run.scheme.names)
    indices, truth, predicted = read_predictions(path)
    if not np.array_equal(indices, test.indices):
        raise GalaxAlignError(f"{path}: predictions are not for the benchmark's test set")
    return (truth == predicted).astype(int).tolist()


def _probe_row(bench: _Bench, run: Run, run_dir: Path) -> dict:
    """A logistic regression on the run's own image features (its labelled galaxies), C chosen on
    validation: what the representation learned, apart from the run's scoring rule."""
    dataset, split, test = bench.dataset, bench.split, bench.test
    probe_path = eval_dir(run_dir, test.eval_name) / "probe.json"
    if probe_path.exists():
        return json.loads(probe_path.read_text())
    labelled = label_fraction(split.train, dataset.labels, run.config.label_fraction, run.config.seed)
    val = labelled_only(split.val, dataset.labels)

    def features(data, indices):
        return run.embed_dataset(data, indices, features=True, workers=run.config.workers).features

    fitted = _fit_probe(
        features(dataset, labelled), dataset.labels[labelled], features(dataset, val), dataset.labels[val]
    )
    saved = eval_dir(run_dir, test.eval_name) / FEATURES_FILE  # the evaluation's pass, in test-set order
    test_features = np.load(saved) if saved.exists() else features(test.dataset, test.indices)
    predicted = fitted.predict(test_features)
    result = {
        "probe_accuracy": float((predicted == test.labels).mean()),
        "probe_C": fitted.C_chosen,
        "probe_correct": (predicted == test.labels).astype(int).tolist(),
    }
    write_json_atomic(probe_path, result)
    return result


class _Probe:
    def __init__(self, scaler, model, c: float):
        self.scaler, self.model, self.C_chosen = scaler, model, c

    def predict(self, features: np.ndarray) -> np.ndarray:
        return self.model.predict(self.scaler.transform(features))


def _fit_probe(train_x, train_y, val_x, val_y) -> _Probe:
    """Standardised logistic regression; C from PROBE_C by validation accuracy (the first of equals)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(train_x)
    fitted = [LogisticRegression(max_iter=2000, C=c).fit(scaler.transform(train_x), train_y) for c in PROBE_C]
    accuracy = [float((m.predict(scaler.transform(val_x)) == val_y).mean()) if len(val_y) else 0.0 for m in fitted]
    best = int(np.argmax(accuracy))  # the first of equals
    return _Probe(scaler, fitted[best], PROBE_C[best])


@dataclass
class _Frozen:
    run: Run
    train_features: np.ndarray
    val_features: np.ndarray
    test_features: np.ndarray

    def embeddings(self, features: np.ndarray) -> np.ndarray:
        """Project frozen features into the (untrained) shared space, as `encode_image` does."""
        import torch

        with torch.no_grad():
            vectors = torch.from_numpy(features).to(self.run.device)
            return self.run.model.project_image(vectors).cpu().numpy()


def _frozen_baseline(bench: _Bench, seed: int) -> _Frozen:
    """The backbone as built (pre-trained towers, fresh projections) and its frozen features."""
    config, dataset, split, test, out = bench.config, bench.dataset, bench.split, bench.test, bench.out
    run_dir = out / "runs" / f"untrained_s{seed}"
    if not (run_dir / MODEL_FILE).exists():
        if run_dir.exists():
            shutil.rmtree(run_dir)
        init_run(
            config.train.for_method(
                "clip", data=config.data, out=str(run_dir), seed=seed, split_file=str(out / SPLIT_FILE)
            )
        )
    run = load_run(run_dir, device=bench.device)

    def features(data, indices):
        return run.embed_dataset(data, indices, features=True).features

    return _Frozen(
        run=run,
        train_features=features(dataset, split.train),
        val_features=features(dataset, labelled_only(split.val, dataset.labels)),
        test_features=features(test.dataset, test.indices),
    )


def _no_training_row(bench: _Bench, cell: _Cell, frozen: _Frozen) -> dict:
    """Zero-shot: text prototypes in the untrained space. Probe: logistic regression, C chosen on validation."""
    dataset, split, test, scheme = bench.dataset, bench.split, bench.test, bench.scheme
    method, fraction, seed = cell.method, cell.fraction, cell.seed
    labels = dataset.labels
    test_labels = test.labels
    if method == "zero-shot":
        query, database = frozen.embeddings(frozen.test_features), frozen.embeddings(frozen.train_features)
        predicted = frozen.run.proba_from_embeddings(query, "text").argmax(1)
        labelled = 0
    else:
        chosen = label_fraction(split.train, labels, fraction, seed)
        position = {int(i): p for p, i in enumerate(split.train)}
        rows = [position[int(i)] for i in chosen]
        fitted = _fit_probe(
            frozen.train_features[rows], labels[chosen], frozen.val_features, labels[labelled_only(split.val, labels)]
        )
        predicted = fitted.predict(frozen.test_features)
        query, database = frozen.test_features, frozen.train_features
        labelled = len(chosen)
    scores = classification_metrics(test_labels, predicted, scheme.names)
    retrieval = retrieval_metrics(query, test_labels, database, labels[split.train], k=10)
    return {
        "method": method,
        "label_fraction": fraction if method != "zero-shot" else 0.0,
        "seed": seed,
        "steps_budget": None,
        "train_labelled": labelled,
        "accuracy": scores["accuracy"],
        "macro_f1": scores["macro_f1"],
        "map@10": retrieval["map@10"],
        "ndcg@10": retrieval["ndcg@10"],
        "epochs": 0,
        "correct": (predicted == test_labels).astype(int).tolist(),
    }


SUMMARISED = ("accuracy", "macro_f1", "map@10", "probe_accuracy", "val_accuracy", "seconds")


def summarise(rows: list[dict]) -> list[dict]:
    """Mean and standard deviation over seeds, per method, label fraction and step budget."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["method"], row["label_fraction"], row.get("steps_budget")), []).append(row)
    order = {m: i for i, m in enumerate(ALL_METHODS)}
    table = []
    for (method, fraction, steps), members in sorted(
        groups.items(), key=lambda kv: (-kv[0][1], kv[0][2] or 0, order[kv[0][0]])
    ):
        entry = {
            "method": method,
            "label_fraction": fraction,
            "steps_budget": steps,
            "seeds": len(members),
            "train_labelled": int(np.mean([m["train_labelled"] for m in members])),
        }
        for key in SUMMARISED:
            values = np.array([m[key] for m in members if m.get(key) is not None], dtype=float)
            if len(values):
                entry[key] = float(values.mean())
                entry[f"{key}_std"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
        table.append(entry)
    return table


def claim_check(rows: list[dict]) -> list[str]:
    """Plain sentences: does galaxalign beat supervised and clip at each label fraction (and budget)?

    The comparison is paired: both methods answered the same test galaxies with the same seeds.
    The gap is the mean over seeds of the accuracy difference; its 95 % interval
    (`evaluation.metrics.paired_interval`) takes a t quantile on the degrees of freedom of a
    seed-by-galaxy decomposition, t(S - 1) when the seed-to-seed spread dominates. A gap counts
    only when that interval excludes zero.
    """
    runs = {
        (r["method"], r["label_fraction"], r.get("steps_budget"), r["seed"]): np.asarray(r["correct"], dtype=float)
        for r in rows
        if "correct" in r
    }
    settings = sorted({(f, b) for m, f, b, _ in runs if m == "galaxalign"}, key=lambda fb: (-fb[0], fb[1] or 0))
    lines = []
    for fraction, budget in settings:
        for rival in ("supervised", "clip"):
            seeds = sorted(
                s for m, f, b, s in runs if (m, f, b) == ("galaxalign", fraction, budget) and (rival, f, b, s) in runs
            )
            if not seeds:
                continue
            ours = np.stack([runs[("galaxalign", fraction, budget, s)] for s in seeds])
            other = np.stack([runs[(rival, fraction, budget, s)] for s in seeds])
            gap, half_width = paired_gap(ours, other)
            won, lost = int((ours > other).sum()), int((ours < other).sum())
            verdict = (
                "beats"
                if gap > half_width
                else ("trails" if gap < -half_width else "ties with (within the uncertainty)")
            )
            where = f"{fraction:.0%} of labels" + (f", {budget} steps" if budget else "")
            lines.append(
                f"- {where}: galaxalign {verdict} {rival}: accuracy "
                f"{ours.mean():.3f} vs {other.mean():.3f} ({gap:+.3f} ± {half_width:.3f}, 95 %); "
                f"right where {rival} was wrong {won} times, the reverse {lost} times "
                f"({len(seeds)} seed{'s' if len(seeds) > 1 else ''} × {ours.shape[1]} galaxies)"
            )
    return lines


def results_markdown(
    config: BenchmarkConfig, table: list[dict], rows: list[dict], dataset, split, test: TestSet
) -> str:
    t = config.train

    def pm(entry, key):
        if key not in entry:
            return ""
        return f"{entry[key]:.3f} ± {entry[key + '_std']:.3f}" if entry["seeds"] > 1 else f"{entry[key]:.3f}"

    budget = (
        f"step budgets {config.steps}"
        if config.steps
        else f"{t.epochs} epochs over the labelled images, at least {config.min_steps} steps"
    )
    tested = (
        f"every labelled galaxy of the separate test file `{Path(test.dataset.source).name}` ({len(test.indices)})"
        if test.heldout
        else f"the split's test part ({len(test.indices)} labelled galaxies)"
    )
    lines = [
        "# GalaxAlign benchmark",
        "",
        f"Data: `{Path(config.data).name}` ({len(dataset)} galaxies; split {len(split.train)}/{len(split.val)}/"
        f"{len(split.test)} train/val/test, seed {config.split_seed}). Backbone: `{t.backbone}`. "
        f"Seeds: {config.seeds}. Budget per run: {budget}, batch {t.batch_size}, top {t.trainable_blocks} blocks "
        f"trained, lr {t.lr:g}, {t.targets} contrastive targets, {t.symbol_variants} symbols per class, "
        f"symbol source: {t.symbol_source}, scoring: {t.scoring}.",
    ]
    variants = [m for m in config.method_list if m in VARIANTS]
    if variants:
        lines.append(
            "Variants: "
            + "; ".join(
                f"{m} is {VARIANTS[m][0]} with " + ", ".join(f"{k}={v}" for k, v in VARIANTS[m][1].items())
                for m in variants
            )
            + "."
        )
    if config.validation_only:
        lines += [
            "Validation only: the test set was not read. Accuracy is the best validation accuracy of each run "
            "(its checkpoint and scoring chosen on that same validation split, so it is optimistic).",
            "",
            "| method | label fraction | budget (steps) | labelled images | validation accuracy | time (s) |",
            "|---|---|---|---|---|---|",
        ]
        for e in table:
            lines.append(
                f"| {e['method']} | {e['label_fraction']:g} | {e['steps_budget'] or ''} | "
                f"{e['train_labelled']} | {pm(e, 'val_accuracy')} | {e['seconds']:.0f} |"
            )
        return "\n".join(lines) + "\n"
    lines += [
        f"Tested on {tested}. Accuracy and macro-F1 of each run's own scoring (chosen on validation); probe: a "
        "logistic regression on the run's image features (C chosen on validation); mAP@10 retrieves the test "
        "galaxies from the training split. Mean ± standard deviation over seeds; time is training time per run "
        "in seconds.",
        "",
        "| method | label fraction | budget (steps) | labelled images | accuracy | macro-F1 | probe | mAP@10 | time (s) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for e in table:
        fraction = "none" if e["method"] == "zero-shot" else f"{e['label_fraction']:g}"
        lines.append(
            f"| {e['method']} | {fraction} | {e['steps_budget'] or ''} | {e['train_labelled']} | "
            f"{pm(e, 'accuracy')} | {pm(e, 'macro_f1')} | {pm(e, 'probe_accuracy')} | {pm(e, 'map@10')} | "
            f"{e['seconds']:.0f} |"
        )
    check = claim_check(rows)
    if check:
        lines += ["", "## The claim, checked", "", *check]
    return "\n".join(lines) + "\n"
