"""The benchmark command end to end on a tiny backbone and the easy data set."""

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import EASY_CLASSES, benchmark_script, easy_image
from galaxalign.cli import main
from galaxalign.errors import GalaxAlignError
from galaxalign.evaluation.metrics import paired_gap, t_quantile
from galaxalign.jobs.benchmark import claim_check, epochs_for
from galaxalign.jobs.config import DEFAULT_METHODS, VARIANTS, BenchmarkConfig
from galaxalign.training import METHODS, TrainConfig


@pytest.mark.slow
def test_benchmark_table_covers_every_method_and_resumes(easy_h5, tmp_path, capsys):
    out = tmp_path / "bench"
    args = [
        "benchmark",
        "--data",
        str(easy_h5),
        "--out",
        str(out),
        "--backbone",
        "tiny",
        "--image-size",
        "32",
        "--label-fractions",
        "1.0,0.25",
        "--seeds",
        "0",
        "--epochs",
        "1",
        "--min-steps",
        "2",
        "--batch-size",
        "12",
        "--trainable-blocks",
        "-1",
        "--lr",
        "1e-3",
        "--quiet",
    ]
    assert main(args) == 0
    results = json.loads((out / "results.json").read_text())
    rows = results["rows"]
    trained = [r for r in rows if r["method"] not in ("zero-shot", "linear-probe")]
    assert len(trained) == len(METHODS) * 2  # every trained method, zero-label included, at both fractions
    assert sum(r["method"] == "zero-shot" for r in rows) == 1  # no labels: once per seed
    assert sum(r["method"] == "linear-probe" for r in rows) == 2
    for row in rows:
        assert 0 <= row["accuracy"] <= 1 and 0 <= row["macro_f1"] <= 1
    # Every run of one seed and fraction shares the split and the labelled subset.
    splits = {(out / "runs" / f"{m}_f0.25_s0" / "split.json").read_text() for m in ("supervised", "galaxalign")}
    assert len(splits) == 1
    labelled = {r["train_labelled"] for r in trained if r["label_fraction"] == 0.25 and r["seed"] == 0}
    assert len(labelled) == 1
    markdown = (out / "results.md").read_text()
    for method in DEFAULT_METHODS:
        assert f"| {method} |" in markdown
    assert "The claim, checked" in markdown
    printed = capsys.readouterr().out
    assert "| galaxalign | 0.25 |" in printed
    assert "onehot contrastive targets, 16 symbols per class" in markdown
    # Every row knows which test galaxies it got right, so the claim check can pair methods.
    n_test = len(json.loads((out / "split.json").read_text())["test"])
    for row in rows:
        assert len(row["correct"]) == n_test and sum(row["correct"]) == round(row["accuracy"] * n_test)

    # A second call finds every run finished and only rebuilds the table; a run evaluated
    # before predictions.csv existed gets its predictions from a test-only pass.
    before = {p: p.stat().st_mtime for p in (out / "runs").glob("*/model.safetensors")}
    predictions = out / "runs" / "galaxalign_f1_s0" / "eval-test" / "predictions.csv"
    predictions.unlink()
    assert main(args) == 0
    assert before == {p: p.stat().st_mtime for p in (out / "runs").glob("*/model.safetensors")}

    def untimed(table):
        return [{k: v for k, v in row.items() if k != "seconds"} for row in table]

    assert predictions.exists() and untimed(json.loads((out / "results.json").read_text())["rows"]) == untimed(rows)


def test_alignment_settings_reach_every_run(easy_h5, tmp_path):
    out = tmp_path / "bench"
    assert (
        main(
            [
                "benchmark",
                "--data",
                str(easy_h5),
                "--out",
                str(out),
                "--backbone",
                "tiny",
                "--image-size",
                "32",
                "--methods",
                "galaxalign",
                "--label-fractions",
                "1.0",
                "--seeds",
                "0",
                "--epochs",
                "1",
                "--min-steps",
                "1",
                "--batch-size",
                "12",
                "--targets",
                "multi",
                "--symbol-variants",
                "2",
                "--quiet",
            ]
        )
        == 0
    )
    run_config = json.loads((out / "runs" / "galaxalign_f1_s0" / "config.json").read_text())
    assert (run_config["targets"], run_config["symbol_variants"]) == ("multi", 2)
    assert "multi contrastive targets, 2 symbols per class" in (out / "results.md").read_text()


@pytest.mark.slow
def test_separate_test_file_validation_only_and_step_budgets(easy_h5, tmp_path):
    """A test file of its own is scored whole, each first reading is logged, probes choose C on
    validation; a validation-only benchmark never reads the test set; step budgets make rows."""
    import h5py

    heldout = tmp_path / "heldout.h5"
    rng = np.random.default_rng(7)
    labels = np.repeat(EASY_CLASSES, 5)
    with h5py.File(heldout, "w") as f:
        f["images"] = np.stack([easy_image(int(c), rng) for c in labels])
        f["ans"] = labels
    common = [
        "--data",
        str(easy_h5),
        "--backbone",
        "tiny",
        "--image-size",
        "32",
        "--methods",
        "supervised,galaxalign,linear-probe",
        "--label-fractions",
        "0.5",
        "--seeds",
        "0",
        "--batch-size",
        "12",
        "--trainable-blocks",
        "-1",
        "--lr",
        "1e-3",
        "--quiet",
    ]
    out = tmp_path / "val"
    assert main(["benchmark", "--out", str(out), "--steps", "3,6", "--validation-only", *common]) == 0
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert sorted((r["method"], r["steps_budget"]) for r in rows) == [
        ("galaxalign", 3),
        ("galaxalign", 6),
        ("supervised", 3),
        ("supervised", 6),
    ]
    assert all("accuracy" not in r and 0 <= r["val_accuracy"] <= 1 and r["steps"] >= r["steps_budget"] for r in rows)
    assert not (out / "test_readings.jsonl").exists() and not list(out.glob("runs/*/eval-[!v]*"))
    # 1/0 per validation galaxy, from the kept weights and scoring: what paired comparisons on validation read
    assert all(np.mean(r["val_correct"]) == pytest.approx(r["val_accuracy"]) for r in rows)
    assert "Validation only: the test set was not read" in (out / "results.md").read_text()

    out = tmp_path / "held"
    assert (
        main(
            ["benchmark", "--out", str(out), "--epochs", "1", "--min-steps", "2", "--test-data", str(heldout), *common]
        )
        == 0
    )
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert {r["method"] for r in rows} == {"supervised", "galaxalign", "linear-probe"}
    for row in rows:
        assert len(row["correct"]) == 15 and sum(row["correct"]) == round(row["accuracy"] * 15)
    trained = [r for r in rows if r["method"] != "linear-probe"]
    for row in trained:
        assert len(row["probe_correct"]) == 15 and row["probe_C"] in (0.01, 0.1, 1.0, 10.0)
        assert (out / "runs" / f"{row['method']}_f0.5_s0" / "eval-heldout" / "metrics.json").exists()
    readings = [json.loads(line) for line in (out / "test_readings.jsonl").read_text().splitlines()]
    assert sorted(r["run"] for r in readings) == ["galaxalign_f0.5_s0", "supervised_f0.5_s0"]
    assert all(r["galaxies"] == 15 and r["test"].endswith("heldout.h5") for r in readings)
    assert "separate test file `heldout.h5` (15)" in (out / "results.md").read_text()
    assert (
        main(
            ["benchmark", "--out", str(out), "--epochs", "1", "--min-steps", "2", "--test-data", str(heldout), *common]
        )
        == 0
    )  # resumed: nothing read again
    assert len((out / "test_readings.jsonl").read_text().splitlines()) == 2


def test_budget_gives_few_label_runs_enough_steps():
    config = BenchmarkConfig(
        data="x", out="y", min_steps=30, train=TrainConfig(data="", out="", epochs=3, batch_size=32)
    )
    assert epochs_for(config, 1600) == 3  # 50 steps per epoch already
    assert epochs_for(config, 16) == 30  # one step per epoch: raised to 30 steps
    assert epochs_for(config, 1600, steps=75) == 2 and epochs_for(config, 16, steps=75) == 75  # whole epochs


def _rows(method, per_seed):
    return [
        {"method": method, "label_fraction": 0.1, "seed": seed, "correct": list(correct)}
        for seed, correct in enumerate(per_seed)
    ]


def test_paired_gap_by_hand():
    ours = np.array([[1, 1, 1, 0], [1, 1, 0, 1]])
    other = np.array([[0, 1, 0, 0], [0, 1, 0, 1]])
    # Differences [1,0,1,0] and [1,0,0,0]: gap 3/8. Mean squares (tests/test_intervals.py works
    # them out): seed 0.125 on 1 df, galaxy 0.6875*2/3 on 3, residual 0.125 on 3; the variance is
    # their sum less the residual over 8 cells, with t on the Welch-Satterthwaite df (about 2.31).
    variance = (0.125 + 0.6875 * 2 / 3 - 0.125) / 8
    df = variance**2 / ((0.125 / 8) ** 2 + (0.6875 * 2 / 3 / 8) ** 2 / 3 + (0.125 / 8) ** 2 / 3)
    gap, half_width = paired_gap(ours, other)
    assert gap == pytest.approx(0.375)
    assert df == pytest.approx(2.312, abs=1e-3)
    assert half_width == pytest.approx(t_quantile(0.975, df) * math.sqrt(variance))


def test_claim_check_is_paired_over_galaxies_and_seeds():
    ours, supervised = [[1, 1, 1, 0], [1, 1, 0, 1]], [[0, 1, 0, 0], [0, 1, 0, 1]]
    lines = claim_check(_rows("galaxalign", ours) + _rows("supervised", supervised))
    assert len(lines) == 1  # no clip rows: nothing to compare
    assert "ties with (within the uncertainty) supervised" in lines[0]
    assert "right where supervised was wrong 3 times, the reverse 0 times (2 seeds × 4 galaxies)" in lines[0]
    # The same pattern over 100 galaxies: the seed gaps still differ (0.5, 0.25) and the seed part,
    # on 1 df, keeps it a tie; with seeds that agree the galaxy part narrows and the gap counts.
    lines = claim_check(
        _rows("galaxalign", [row * 25 for row in ours]) + _rows("supervised", [row * 25 for row in supervised])
    )
    assert "ties with (within the uncertainty) supervised" in lines[0]
    agreeing = [[0, 1, 0, 0] * 25, [0, 1, 0, 0] * 25]  # per-seed gaps 0.5 and 0.5
    lines = claim_check(_rows("galaxalign", [row * 25 for row in ours]) + _rows("supervised", agreeing))
    assert "beats supervised" in lines[0]
    # Pairing: the two methods agree on 92 of 100 galaxies and galaxalign alone gets 8 more.
    # Independent errors of 0.78 and 0.70 on 100 galaxies (about ±0.12 at 95 %) would call
    # +0.08 a tie; the paired interval (t on 99 df, about ±0.05) does not.
    both = [1] * 70 + [0] * 30
    ours_right = [1] * 78 + [0] * 22
    line = claim_check(_rows("galaxalign", [ours_right]) + _rows("clip", [both]))[0]
    assert "beats clip" in line and "(+0.080 ± 0.054, 95 %)" in line and "wrong 8 times, the reverse 0 times" in line


def test_bad_benchmark_options():
    with pytest.raises(GalaxAlignError, match="unknown method"):
        BenchmarkConfig(data="x", out="y", methods="supervised,magic")
    with pytest.raises(GalaxAlignError, match="label fractions"):
        BenchmarkConfig(data="x", out="y", label_fractions="0,2")


def test_test_file_of_another_sim_look_is_refused(tmp_path, capsys):
    """A Galaxy10-Sim test file rendered with another look than the training file is a different
    domain: the benchmark stops before training anything."""
    import shutil

    import h5py

    from conftest import write_galaxy10_h5

    rng = np.random.default_rng(0)
    labels = np.repeat(EASY_CLASSES, 4)
    write_galaxy10_h5(tmp_path / "train.h5", np.stack([easy_image(int(c), rng) for c in labels]), labels)
    shutil.copy(tmp_path / "train.h5", tmp_path / "test.h5")
    for name, version in (("train.h5", None), ("test.h5", 2)):
        with h5py.File(tmp_path / name, "a") as h5:
            h5.attrs["generator"] = "galaxalign-synth"
            if version is not None:
                h5.attrs["render_version"] = version
    args = ["benchmark", "--data", str(tmp_path / "train.h5"), "--test-data", str(tmp_path / "test.h5")]
    assert main([*args, "--out", str(tmp_path / "b"), "--backbone", "tiny", "--quiet"]) != 0
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "test.h5" in error[0] and "render version 2" in error[0] and "version 1" in error[0]
    assert not (tmp_path / "b" / "runs").exists()


def tiny_benchmark_args(data, methods: str, **flags) -> list[str]:
    """A benchmark's flags for one seed at all labels on the tiny backbone: seconds per run."""
    args = ["--data", str(data), "--backbone", "tiny", "--image-size", "32", "--methods", methods]
    args += ["--label-fractions", "1.0", "--seeds", "0", "--batch-size", "12", "--trainable-blocks", "-1"]
    args += ["--lr", "1e-3", "--quiet"]
    for flag, value in flags.items():
        args += [f"--{flag.replace('_', '-')}", str(value)]
    return args


@pytest.mark.slow
def test_an_interrupted_run_resumes_from_its_checkpoint(easy_h5, tmp_path):
    """A run stopped mid-way (a session's end, a killed job) continues where it stopped and ends
    with the weights of an uninterrupted run; a run begun with other settings starts again."""
    import shutil
    from dataclasses import replace

    import torch

    from galaxalign.config import config_from_dict
    from galaxalign.jobs.benchmark import trained_run_config
    from galaxalign.training import train

    common = tiny_benchmark_args(easy_h5, "galaxalign", steps=12)
    straight, stopped, other = tmp_path / "straight", tmp_path / "stopped", tmp_path / "other"
    assert main(["benchmark", "--out", str(straight), *common]) == 0
    name = "galaxalign_f1_s0_n12"
    config = config_from_dict(BenchmarkConfig, json.loads((straight / "benchmark_config.json").read_text()))
    straight_config = json.loads((straight / "runs" / name / "config.json").read_text())
    for out in (stopped, other):
        out.mkdir()
        shutil.copy(straight / "split.json", out / "split.json")

    def benchmark_run_config(out):
        return trained_run_config(
            replace(config, out=str(out)), "galaxalign", 1.0, 0, straight_config["epochs"], out / "runs" / name
        )

    # The benchmark's own config for the run, stopped after 7 of its 12 steps.
    train(benchmark_run_config(stopped), pause_after_steps=7)
    assert not (stopped / "runs" / name / "summary.json").exists()
    # The same run begun with another learning rate (and only that): not this benchmark's run.
    train(replace(benchmark_run_config(other), lr=0.5), pause_after_steps=3)
    for out in (stopped, other):
        assert main(["benchmark", "--out", str(out), *common]) == 0
    weights = {
        out: torch.load(out / "runs" / name / "checkpoint.pt", weights_only=True) for out in (straight, stopped, other)
    }
    for out in (stopped, other):
        assert weights[out]["seen"] == weights[straight]["seen"] > 0  # every image counted once
        assert all(torch.equal(weights[straight]["model"][k], v) for k, v in weights[out]["model"].items())

    def logged_steps(out):
        lines = (out / "runs" / name / "metrics.jsonl").read_text().splitlines()
        return [r["step"] for r in map(json.loads, lines) if "loss" in r]

    assert logged_steps(stopped) == logged_steps(straight)  # each step logged once
    rows = {out: json.loads((out / "results.json").read_text())["rows"][0] for out in (straight, stopped)}
    assert rows[straight]["accuracy"] == rows[stopped]["accuracy"]


@pytest.mark.slow
def test_variants_are_rows_with_their_own_settings(easy_h5, tmp_path):
    """LiT-style and class-target galaxalign are benchmark rows: each run is galaxalign with the
    variant's settings, and the row says which."""
    from safetensors.torch import load_file

    from galaxalign.runs import build_model, read_config

    out = tmp_path / "variants"
    # The easy set has no per-galaxy answers; semi-supervised variants have no unlabelled galaxy at 100 %.
    variants = [v for v in VARIANTS if v != "galaxalign-galaxy" and not VARIANTS[v][1].get("unlabelled_weight")]
    listed = ",".join([*variants, "clip-semi"])
    assert main(["benchmark", "--out", str(out), *tiny_benchmark_args(easy_h5, listed, steps=4)]) == 0
    rows = {r["method"]: r for r in json.loads((out / "results.json").read_text())["rows"]}
    assert set(rows) == set(variants)  # at 100 % labels a semi-supervised variant makes no row
    assert rows["galaxalign-texture"]["symbol_source"] == "texture"
    assert rows["galaxalign-classes"]["targets"] == "classes" and rows["galaxalign-lit"]["targets"] == "onehot"
    assert rows["galaxalign-lit"]["trainable_blocks"] == [0, -1]
    for name in variants:
        method, settings = VARIANTS[name]
        run_config = read_config(out / "runs" / f"{name}_f1_s0_n4")
        assert run_config.method == method and all(getattr(run_config, k) == v for k, v in settings.items())
    # LiT: the image tower is the pre-trained one, untouched; the text tower trained.
    lit = out / "runs" / "galaxalign-lit_f1_s0_n4"
    trained = load_file(str(lit / "model.safetensors"))
    start = build_model(read_config(lit), n_classes=len(EASY_CLASSES)).state_dict()
    image = [k for k in trained if k.startswith("image_encoder.")]
    text = [k for k in trained if k.startswith("text_encoder.")]
    assert image and text
    assert all(torch_equal(trained[k], start[k]) for k in image)
    assert not all(torch_equal(trained[k], start[k]) for k in text)
    markdown = (out / "results.md").read_text()
    assert "| galaxalign-lit |" in markdown and "galaxalign-lit is galaxalign with image_trainable_blocks=0" in markdown


def torch_equal(a, b):
    import torch

    return torch.equal(a.float(), b.float())


def test_claim_figure_groups_readings_by_budget_and_draws_them(tmp_path):
    """The picture of the claim study: rows of each reading land at its budget, only trained methods
    at 100, 10 and 1 % are drawn, a fraction without rows gets no panel, a missing reading is
    skipped, and the curve starts at 30 steps."""
    figure = benchmark_script("claim_figure")

    def row(method, fraction, seed, accuracy, val, steps=None):
        return {
            "method": method,
            "label_fraction": fraction,
            "seed": seed,
            "accuracy": accuracy,
            "val_accuracy": val,
            "steps_budget": steps,
        }

    first = [
        row("galaxalign", 0.1, 0, 0.4, 0.45),
        row("galaxalign", 0.1, 1, 0.5, 0.47),
        row("zero-shot", 0.0, 0, 0.1, 0.1),
        row("clip", 0.01, 0, 0.3, 0.2),
    ]
    later = [row("galaxalign", 0.1, 0, 0.8, 0.79, 150), row("linear-probe", 0.1, 0, 0.6, 0.6, 150)]
    later += [row("supervised", 1.0, 2, 0.9, 0.88, 150)]
    curve = [row("galaxalign", 0.1, 0, None, 0.7, 75), row("galaxalign", 0.1, 1, None, 0.9, 75)]
    for name, rows in (("test-class.json", first), ("test-class-n150.json", later), ("curve-class.json", curve)):
        (tmp_path / name).write_text(json.dumps({"config": {}, "rows": rows}))
    tests = figure.test_accuracies(tmp_path)
    assert tests == {
        (0.1, 30, "galaxalign"): {0: 0.4, 1: 0.5},
        (0.01, 30, "clip"): {0: 0.3},
        (0.1, 150, "galaxalign"): {0: 0.8},
        (1.0, 150, "supervised"): {2: 0.9},
    }
    assert figure.validation_curve(tmp_path) == {"galaxalign": {30: 0.45, 75: 0.7}}
    out = tmp_path / "claim.png"
    assert figure.draw(tests, figure.validation_curve(tmp_path), out) == [1.0, 0.1, 0.01]
    no_full = {point: seeds for point, seeds in tests.items() if point[0] != 1.0}
    assert figure.draw(no_full, {}, tmp_path / "partial.png") == [0.1, 0.01]
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_claim_by_class_splits_each_runs_answers_by_true_class():
    """The per-class breakdown groups the kept 1/0 answers by class, pairs the same galaxies and
    seeds, and leaves out a method that lacks one of ours' seeds."""
    by_class = benchmark_script("claim_by_class")
    labels = np.array([0, 0, 1, 1])
    rows = [
        {"method": "galaxalign", "label_fraction": 0.1, "seed": 0, "correct": [1, 1, 0, 1]},
        {"method": "galaxalign", "label_fraction": 0.1, "seed": 1, "correct": [1, 0, 0, 1]},
        {"method": "clip", "label_fraction": 0.1, "seed": 0, "correct": [0, 1, 0, 0]},
        {"method": "clip", "label_fraction": 0.1, "seed": 1, "correct": [1, 0, 1, 0]},
        {"method": "supervised", "label_fraction": 0.1, "seed": 0, "correct": [1, 1, 1, 1]},  # seed 1 missing
        {"method": "zero-shot", "label_fraction": 0.0, "seed": 0, "accuracy": 0.1},  # not tested per galaxy
    ]
    answers = by_class.answers_by_run(rows)
    assert set(answers) == {(m, 0.1, s) for m in ("galaxalign", "clip") for s in (0, 1)} | {("supervised", 0.1, 0)}
    lines = by_class.class_table(answers, labels, ["a", "b"], "galaxalign", ["supervised", "clip"])
    assert lines[0] == "| class (10% of labels, 2 seeds) | galaxies | clip | galaxalign | galaxalign − clip |"
    gap_a, half_a = paired_gap(np.array([[1.0, 1], [1, 0]]), np.array([[0.0, 1], [1, 0]]))
    assert lines[2] == f"| a | 2 | 0.500 | 0.750 | {gap_a:+.3f} ± {half_a:.3f} |"
    gap_b, half_b = paired_gap(np.array([[0.0, 1], [0, 1]]), np.array([[0.0, 0], [1, 0]]))
    assert lines[3].startswith("| b | 2 | 0.250 | 0.500 | ") and f"{gap_b:+.3f} ± {half_b:.3f}" in lines[3]


def test_every_method_chooses_among_as_many_candidates():
    """Equal selection (issue 24, section 3): at the claim study's budget, every trained method and
    variant validates as many checkpoints of its kept stage and picks among as many scorings."""
    from galaxalign.jobs.benchmark import selection_size, trained_run_config
    from galaxalign.jobs.config import ALL_METHODS, NO_TRAINING

    config = BenchmarkConfig(data="d.h5", out="out", steps="300")
    counts = {}
    for n_labelled, fraction in ((100, 0.1), (10, 0.01)):
        epochs = epochs_for(config, n_labelled, 300)
        for method in (m for m in ALL_METHODS if m not in NO_TRAINING):
            run = trained_run_config(config, method, fraction, 0, epochs, Path("runs") / method)
            validated = run.validated_epochs()
            start = run.stage2_epoch or 0
            assert all(start <= e < epochs for e in validated) and validated[-1] == epochs - 1
            counts[(method, fraction)] = (len(validated), selection_size(run))
    assert set(counts.values()) == {(4, 1)}, counts
    assert {m for m, _ in counts} >= {"galaxalign", "clip", "supervised", "clip-restart", "lp-ft"}


def test_controls_are_read_by_the_rule_written_before_the_runs(tmp_path):
    """studies/claim/controls.py pairs the arms on validation answers, applies the rule and says
    which runs are missing; with all 3 seeds of both arms a consistent lead is found, with one it
    is not read."""
    controls = benchmark_script("controls")
    rng = np.random.default_rng(0)
    truth_other = rng.random((3, 400)) < 0.6
    rows = []
    for seed in (0, 1, 2):
        better = truth_other[seed] | (rng.random(400) < 0.3)  # right wherever texture is, and more
        for method, answers in (("galaxalign", better), ("galaxalign-texture", truth_other[seed])):
            rows.append(_control_row(method, 0.1, seed, answers))
    rows.append(_control_row("clip-restart", 0.1, 0, truth_other[0]))
    folder = tmp_path / "controls" / "f0.1_s0"
    folder.mkdir(parents=True)
    (folder / "results.json").write_text(json.dumps({"rows": rows}))
    started = folder / "runs" / "clip_f0.1_s1_n300"  # a run under way: named with its last step
    started.mkdir(parents=True)
    (started / "metrics.jsonl").write_text('{"step": 41, "loss": 1.0}\n{"step": 42, "loss": 0.9}\n')
    out = tmp_path / "controls_out"
    assert controls.main(["--results", str(tmp_path / "controls"), "--out", str(out)]) == 0
    saved = json.loads(out.with_suffix(".json").read_text())
    first = next(r for r in saved["readings"] if r["number"] == 1 and r["fraction"] == 0.1)
    assert first["seeds"] == 3 and first["gap"] > 0 and first["verdict"] == "found positive"
    third = next(r for r in saved["readings"] if r["number"] == 3 and r["fraction"] == 0.1)
    assert third["seeds"] == 1 and third["verdict"].startswith("not readable")
    assert saved["partial"] and {"arm": "clip", "label_fraction": 0.01, "seed": 2} in saved["missing"]
    assert len(saved["readings"]) == 12
    assert saved["in_progress"] == {"clip_f0.1_s1_n300": 42}
    page = out.with_suffix(".md").read_text()
    assert "Partial: 7 of 42 runs finished" in page and "clip_f0.1_s1_n300 at step 42 of 300" in page


def _control_row(method: str, fraction: float, seed: int, answers: np.ndarray) -> dict:
    return {
        "method": method,
        "label_fraction": fraction,
        "seed": seed,
        "steps_budget": 300,
        "val_accuracy": float(answers.mean()),
        "val_correct": answers.astype(int).tolist(),
    }


def test_controls_keep_the_committed_rows_and_name_the_pending_arms(tmp_path, capsys):
    """A later sitting whose run folders are gone resumes from the committed table: its rows stay,
    a run found again replaces its row, and --pending names only the arms still without one."""
    controls = benchmark_script("controls")
    rng = np.random.default_rng(1)
    out = tmp_path / "controls"
    committed = [_control_row(arm, 0.1, 1, rng.random(50) < 0.5) for arm in ("galaxalign", "clip")]
    out.with_suffix(".json").write_text(json.dumps({"rows": committed}))
    folder = tmp_path / "runs" / "f0.1_s1"
    folder.mkdir(parents=True)
    again = _control_row("clip", 0.1, 1, np.ones(50, dtype=bool))
    (folder / "results.json").write_text(json.dumps({"rows": [again]}))
    args = ["--results", str(tmp_path / "runs"), "--out", str(out)]
    assert controls.main([*args, "--pending", "1", "0.1", "--arms", "galaxalign,clip,supervised"]) == 0
    assert capsys.readouterr().out.strip() == "supervised"
    assert controls.main([*args, "--pending", "0", "0.1", "--arms", "galaxalign,clip"]) == 0
    assert capsys.readouterr().out.strip() == "galaxalign,clip"
    assert controls.main(args) == 0
    rows = json.loads(out.with_suffix(".json").read_text())["rows"]
    assert [(r["method"], r["val_accuracy"]) for r in rows] == [
        ("galaxalign", committed[0]["val_accuracy"]),
        ("clip", 1.0),
    ]
    with pytest.raises(SystemExit, match="not arms the controls passes train: nope"):
        controls.main([*args, "--pending", "1", "0.1", "--arms", "nope"])


def test_semi_reads_its_arms_against_the_controls_runs_beside_it(tmp_path):
    """The unlabelled-image family pairs its own arms with the controls' galaxalign and clip rows
    (from the controls table beside it): comparisons 7-9, numbered after the controls' 6."""
    controls = benchmark_script("controls")
    rng = np.random.default_rng(2)
    base = {seed: rng.random(300) < 0.6 for seed in (0, 1, 2)}
    shared = [_control_row(arm, 0.1, s, base[s]) for s in base for arm in ("galaxalign", "clip")]
    (tmp_path / "controls.json").write_text(json.dumps({"rows": shared}))
    folder = tmp_path / "semi" / "f0.1_s0"
    folder.mkdir(parents=True)
    semi = [_control_row("galaxalign-semi", 0.1, s, base[s] | (rng.random(300) < 0.3)) for s in base]
    (folder / "results.json").write_text(json.dumps({"rows": semi}))
    out = tmp_path / "semi"
    assert controls.main(["--family", "semi", "--results", str(tmp_path / "semi"), "--out", str(out)]) == 0
    saved = json.loads(out.with_suffix(".json").read_text())
    assert [r["number"] for r in saved["readings"]] == [7, 8, 9, 7, 8, 9]
    assert saved["readings"][0]["seeds"] == 3 and saved["readings"][0]["verdict"] == "found positive"
    assert {r["method"] for r in saved["rows"]} == {"galaxalign", "clip", "galaxalign-semi"}
    assert {"arm": "clip-semi", "label_fraction": 0.1, "seed": 0} in saved["missing"]
    assert "claim_study.sh semi" in saved["resume"]


def test_the_choice_follows_the_rule_written_before_the_runs(tmp_path):
    """choose.py refuses while a candidate misses a run; the default is kept within 0.005 of the
    best, a clearly better candidate is chosen, and a semi-supervised choice brings clip-semi."""
    choose = benchmark_script("choose")
    cells = [(f, s) for f in (0.1, 0.01) for s in (0, 1, 2)]

    def tables(accuracy: dict[str, float], restart: str = "not resolved") -> None:
        rows = [
            {"method": arm, "label_fraction": f, "seed": s, "steps_budget": 300, "val_accuracy": value}
            for arm, value in accuracy.items()
            for f, s in cells
        ]
        controls = {
            "rows": [r for r in rows if not r["method"].endswith("-semi")],
            "readings": [{"number": 6, "verdict": restart}],
        }
        (tmp_path / "controls.json").write_text(json.dumps(controls))
        semi = {"rows": [r for r in rows if r["method"].endswith("-semi")], "readings": []}
        (tmp_path / "semi.json").write_text(json.dumps(semi))

    tables({"galaxalign": 0.80, "galaxalign-domain": 0.81})
    with pytest.raises(SystemExit, match="12 candidate runs missing: galaxalign-galaxy at 10% seed 0"):
        choose.main(["--results", str(tmp_path)])
    near = {"galaxalign": 0.800, "galaxalign-domain": 0.804, "galaxalign-galaxy": 0.79, "galaxalign-semi": 0.78}
    tables(near)
    assert choose.main(["--results", str(tmp_path)]) == 0
    saved = json.loads((tmp_path / "choice.json").read_text())
    assert saved["chosen"] == "galaxalign" and saved["best_score"] == "galaxalign-domain"
    assert saved["rivals"] == ["supervised", "clip", "lp-ft"]
    tables(near | {"galaxalign-semi": 0.83}, restart="found positive")
    assert choose.main(["--results", str(tmp_path)]) == 0
    saved = json.loads((tmp_path / "choice.json").read_text())
    assert saved["chosen"] == "galaxalign-semi"
    assert saved["rivals"] == ["supervised", "clip", "lp-ft", "clip-restart", "clip-semi"]


def test_the_final_reading_trains_only_what_has_no_committed_row(tmp_path):
    """final.py: nothing before the choice; then a seed's pass is pending until its rows are
    collected into the committed file, which keeps them after the run folders are gone."""
    final = benchmark_script("final")
    results, runs = tmp_path / "results", tmp_path / "runs"
    results.mkdir()
    with pytest.raises(SystemExit, match="choice.json: missing"):
        final.main(["--results", str(results), "methods"])
    (results / "choice.json").write_text(json.dumps({"chosen": "galaxalign", "rivals": ["supervised", "clip"]}))
    done = [
        {"method": m, "label_fraction": f, "seed": 0, "steps_budget": 300, "correct": [1, 0]}
        for m in ("galaxalign", "supervised")
        for f in (1.0, 0.1, 0.01)
    ]
    (runs / "s0").mkdir(parents=True)
    (runs / "s0" / "results.json").write_text(json.dumps({"rows": done[:-1]}))  # supervised at 1 % not yet
    (runs / "s0" / "test_readings.jsonl").write_text('{"run": "galaxalign_f0.1_s0_n300"}\n')

    def pending() -> list[str]:
        return final.pending(final.committed(results) + final.found_rows(runs), final.methods(results), 0)

    assert pending() == ["supervised", "clip"]
    (runs / "s0" / "results.json").write_text(json.dumps({"rows": done}))
    assert final.collect(results, runs) == 6
    shutil.rmtree(runs)  # a later sitting: the run folders are gone, the committed rows are not
    assert pending() == ["clip"]
    assert (results / "final_readings.jsonl").read_text() == '{"run": "galaxalign_f0.1_s0_n300"}\n'
