"""End-to-end training on tiny models and small generated data (no downloads)."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import torch

from conftest import EASY_CLASSES, easy_image, tiny
from galaxalign.cli import main
from galaxalign.models.backbones import build_backbone
from galaxalign.models.model import GalaxAlignModel
from galaxalign.runs import load_run
from galaxalign.training import train
from galaxalign.training.optim import parameter_groups


def checkpoint_weights(run_dir):
    return torch.load(run_dir / "checkpoint.pt", weights_only=True)["model"]


def losses(run_dir):
    return [r["loss"] for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines()) if "loss" in r]


def test_supervised_tiny_run_learns(easy_h5, tmp_path):
    run_dir = train(tiny(easy_h5, tmp_path / "sup", method="supervised", epochs=15), progress=False)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["test_size"] == 24
    assert summary["test_accuracy"] >= 0.55  # chance is 1/3: P(>= 14 of 24 right by chance) < 0.01
    history = losses(run_dir)
    assert np.mean(history[-3:]) < 0.6 * np.mean(history[:3])
    for name in ("config.json", "split.json", "model.safetensors", "checkpoint.pt", "metrics.jsonl"):
        assert (run_dir / name).exists()


def test_galaxalign_runs_both_stages_and_loss_falls(easy_h5, tmp_path):
    run_dir = train(tiny(easy_h5, tmp_path / "ga", method="galaxalign", epochs=8, stage1_fraction=0.5), progress=False)
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if "loss" in r]
    assert [r["stage"] for r in steps] == sorted(r["stage"] for r in steps) and {r["stage"] for r in steps} == {1, 2}
    assert all("image_symbol" in r for r in steps if r["stage"] == 2)
    assert not any("image_symbol" in r for r in steps if r["stage"] == 1)
    stage1 = [r["image_text"] + r["symbol_text"] for r in steps if r["stage"] == 1]
    assert np.mean(stage1[-4:]) < np.mean(stage1[:4])
    assert any(k.startswith("symbol_encoder.") for k in checkpoint_weights(run_dir))
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["scoring"] == "fusion" and summary["test_size"] == 24


def test_stage2_symbol_encoder_is_an_exact_independent_copy():
    model = GalaxAlignModel(build_backbone("tiny"), embed_dim=16)
    model.split_symbol_encoder()
    image, symbol = model.image_encoder.state_dict(), model.symbol_encoder.state_dict()
    assert image.keys() == symbol.keys()
    assert all(torch.equal(image[k], symbol[k]) for k in image)
    assert torch.equal(model.image_projection.weight, model.symbol_projection.weight)
    with torch.no_grad():
        next(model.symbol_encoder.parameters()).add_(1.0)
    assert not torch.equal(next(model.symbol_encoder.parameters()), next(model.image_encoder.parameters()))


def test_last_n_blocks_and_heads_only(easy_h5, tmp_path):
    model = GalaxAlignModel(build_backbone("tiny"), embed_dim=16)
    blocks = model.backbone.image_blocks()
    parameter_groups(model, tiny(easy_h5, tmp_path, trainable_blocks=1))
    assert all(p.requires_grad for p in blocks[-1].parameters())
    assert not any(p.requires_grad for b in blocks[:-1] for p in b.parameters())
    groups = parameter_groups(model, tiny(easy_h5, tmp_path, trainable_blocks=0))
    assert [g["name"] for g in groups] == ["heads"]
    assert not any(p.requires_grad for p in model.image_encoder.parameters())


def test_layer_decay_lowers_deeper_learning_rates(easy_h5, tmp_path):
    model = GalaxAlignModel(build_backbone("tiny"), embed_dim=16)
    groups = parameter_groups(model, tiny(easy_h5, tmp_path, trainable_blocks=3, lr=1.0, layer_decay=0.5, method="supervised"))
    image_lrs = [g["base_lr"] for g in groups if g["name"].startswith("image")]
    assert image_lrs == [1.0, 0.5, 0.25]


def test_resume_gives_the_same_final_weights(easy_h5, tmp_path):
    config = dict(method="galaxalign", epochs=4, stage1_fraction=0.5)
    straight = train(tiny(easy_h5, tmp_path / "straight", **config), progress=False)
    paused = tiny(easy_h5, tmp_path / "paused", **config)
    train(paused, progress=False, pause_after_steps=5)  # mid-epoch, still in stage 1
    assert torch.load(tmp_path / "paused" / "checkpoint.pt", weights_only=True)["step"] == 5
    assert not (tmp_path / "paused" / "summary.json").exists()
    assert main(["train", "--out", str(tmp_path / "paused"), "--resume", "--quiet"]) == 0
    a, b = checkpoint_weights(straight), checkpoint_weights(tmp_path / "paused")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_worker_processes_train_to_identical_weights(easy_h5, tmp_path):
    """Images read by 0 or 2 DataLoader workers give the same batches, so the same weights."""
    config = dict(method="galaxalign", epochs=2, stage1_fraction=0.5)
    alone = train(tiny(easy_h5, tmp_path / "w0", workers=0, **config), progress=False)
    helped = train(tiny(easy_h5, tmp_path / "w2", workers=2, **config), progress=False)
    a, b = checkpoint_weights(alone), checkpoint_weights(helped)
    assert a.keys() == b.keys() and any(k.startswith("symbol_encoder.") for k in a)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert losses(alone) == losses(helped)


def test_label_fraction_is_stratified_subset(easy_h5, tmp_path):
    run_dir = train(tiny(easy_h5, tmp_path / "few", method="clip", epochs=1, label_fraction=0.25), progress=False)
    summary = json.loads((run_dir / "summary.json").read_text())
    split = json.loads((run_dir / "split.json").read_text())
    n_train = len(split["train"])
    assert len(EASY_CLASSES) <= summary["train_labelled"] <= round(0.25 * n_train) + len(EASY_CLASSES)


def test_run_loads_from_its_folder_alone(easy_h5, tmp_path):
    run_dir = train(tiny(easy_h5, tmp_path / "clip", method="clip", epochs=1), progress=False)
    moved = tmp_path / "elsewhere"
    shutil.copytree(run_dir, moved)
    run = load_run(moved)
    images = [easy_image(c, np.random.default_rng(c)) for c in EASY_CLASSES]
    results = run.classify(images)
    assert len(results) == 3
    for result in results:
        assert len(result["top"]) == 3 and result["top"][0]["probability"] == result["probability"]
        assert abs(sum(t["probability"] for t in result["top"])) <= 1.0 + 1e-6
    probs = run.predict_proba(images)
    assert probs.shape == (3, 10) and np.allclose(probs.sum(1), 1, atol=1e-5)
    assert run.embed_images(images).shape == (3, run.model.embed_dim)
    assert np.allclose(np.linalg.norm(run.embed_texts(["a barred spiral"]), axis=1), 1, atol=1e-5)


def test_cli_train_errors_are_one_line(easy_h5, tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path / "none"), "--resume"]) == 2
    assert "nothing to resume" in capsys.readouterr().err
    assert main(["train", "--out", str(tmp_path / "x"), "--data", str(tmp_path / "missing.h5")]) == 2
    err = capsys.readouterr().err
    assert "missing.h5" in err and err.count("\n") == 1
    args = ["train", "--data", str(easy_h5), "--out", str(tmp_path / "dup"), "--backbone", "tiny", "--image-size", "32",
            "--epochs", "1", "--batch-size", "12", "--method", "supervised", "--quiet"]
    assert main(args) == 0
    assert main(args) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["train", "--data", str(easy_h5), "--out", str(tmp_path / "b"), "--backbone", "nope"]) == 2


def test_ddp_two_processes_match_one(easy_h5, tmp_path):
    common = ["--data", str(easy_h5), "--backbone", "tiny", "--image-size", "32", "--epochs", "2", "--batch-size", "12",
              "--method", "galaxalign", "--lr", "2e-3", "--head-lr", "5e-3", "--trainable-blocks", "-1",
              "--symbol-variants", "3", "--embed-dim", "32", "--warmup-fraction", "0", "--val-fraction", "0.2",
              "--test-fraction", "0.2", "--threads", "1", "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    single = subprocess.run([sys.executable, "-m", "galaxalign", "train", "--out", str(tmp_path / "one"), *common],
                            env=env, capture_output=True, text=True, timeout=300)
    assert single.returncode == 0, single.stderr[-2000:]
    ddp = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
                          "-m", "galaxalign", "train", "--out", str(tmp_path / "two"), *common],
                         env=env, capture_output=True, text=True, timeout=300)
    assert ddp.returncode == 0, ddp.stderr[-2000:]
    # Every step's global loss agrees, so each step saw the same batch and the same model.
    np.testing.assert_allclose(losses(tmp_path / "two"), losses(tmp_path / "one"), rtol=1e-5)
    a, b = checkpoint_weights(tmp_path / "one"), checkpoint_weights(tmp_path / "two")
    assert a.keys() == b.keys()
    gaps = np.array([(a[k].float() - b[k].float()).abs().max().item() for k in a])
    # Reduction order differs between one process and two. AdamW divides by sqrt(v), so on
    # parameters whose true gradient is ~0 (attention key biases) float noise becomes a step of
    # up to ~lr; everywhere else the weights agree to float precision.
    assert np.median(gaps) < 1e-6
    assert np.mean(gaps < 1e-4) > 0.95
    assert gaps.max() < 2e-3


def test_validation_every_n_epochs_and_always_last(easy_h5, tmp_path):
    run_dir = train(tiny(easy_h5, tmp_path / "v", method="supervised", epochs=3, val_every=2), progress=False)
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records if "val_accuracy" in r] == [1, 2]
