"""The benchmark command end to end on a tiny backbone and the easy data set."""

import json

import pytest

from galaxalign.cli import main
from galaxalign.errors import GalaxAlignError
from galaxalign.evaluation.benchmark import claim_check, epochs_for, summarise
from galaxalign.evaluation.config import ALL_METHODS, BenchmarkConfig


def test_benchmark_table_covers_every_method_and_resumes(easy_h5, tmp_path, capsys):
    out = tmp_path / "bench"
    args = ["benchmark", "--data", str(easy_h5), "--out", str(out), "--backbone", "tiny", "--image-size", "32",
            "--label-fractions", "1.0,0.25", "--seeds", "0", "--epochs", "1", "--min-steps", "2",
            "--batch-size", "12", "--trainable-blocks", "-1", "--lr", "1e-3", "--quiet"]
    assert main(args) == 0
    results = json.loads((out / "results.json").read_text())
    rows = results["rows"]
    trained = [r for r in rows if r["method"] not in ("zero-shot", "linear-probe")]
    assert len(trained) == 4 * 2
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
    for method in ALL_METHODS:
        assert f"| {method} |" in markdown
    assert "The claim, checked" in markdown
    printed = capsys.readouterr().out
    assert "| galaxalign | 0.25 |" in printed
    assert "multi contrastive targets, 16 symbols per class" in markdown

    # A second call finds every run finished and only rebuilds the table.
    before = {p: p.stat().st_mtime for p in (out / "runs").glob("*/model.safetensors")}
    assert main(args) == 0
    assert before == {p: p.stat().st_mtime for p in (out / "runs").glob("*/model.safetensors")}


def test_alignment_settings_reach_every_run(easy_h5, tmp_path):
    out = tmp_path / "bench"
    assert main(["benchmark", "--data", str(easy_h5), "--out", str(out), "--backbone", "tiny", "--image-size", "32",
                 "--methods", "galaxalign", "--label-fractions", "1.0", "--seeds", "0", "--epochs", "1",
                 "--min-steps", "1", "--batch-size", "12", "--targets", "onehot", "--symbol-variants", "2", "--quiet"]) == 0
    run_config = json.loads((out / "runs" / "galaxalign_f1_s0" / "config.json").read_text())
    assert (run_config["targets"], run_config["symbol_variants"]) == ("onehot", 2)
    assert "onehot contrastive targets, 2 symbols per class" in (out / "results.md").read_text()


def test_budget_gives_few_label_runs_enough_steps():
    config = BenchmarkConfig(data="x", out="y", epochs=3, min_steps=30, batch_size=32)
    assert epochs_for(config, 1600) == 3  # 50 steps per epoch already
    assert epochs_for(config, 16) == 30  # one step per epoch: raised to 30 steps


def test_claim_check_reads_the_spread():
    rows = [
        {"method": m, "label_fraction": 0.1, "seed": s, "train_labelled": 10, "accuracy": a, "macro_f1": a,
         "map@10": a, "seconds": 1.0}
        for m, accs in (("galaxalign", (0.80, 0.82)), ("supervised", (0.60, 0.62)), ("clip", (0.79, 0.83)))
        for s, a in enumerate(accs)
    ]
    lines = claim_check(summarise(rows))
    assert any("beats supervised" in line for line in lines)
    assert any("ties with (within the uncertainty) clip" in line for line in lines)
    # One seed has no spread; the test-set sampling error decides: 0.20 clears it on 100 galaxies
    # (about 0.06) but not on 5 (about 0.28).
    one_seed = summarise([r for r in rows if r["seed"] == 0])
    assert "beats supervised" in claim_check(one_seed, n_test=100)[0]
    assert "ties with (within the uncertainty) supervised" in claim_check(one_seed, n_test=5)[0]


def test_bad_benchmark_options():
    with pytest.raises(GalaxAlignError, match="unknown method"):
        BenchmarkConfig(data="x", out="y", methods="supervised,magic")
    with pytest.raises(GalaxAlignError, match="label fractions"):
        BenchmarkConfig(data="x", out="y", label_fractions="0,2")
