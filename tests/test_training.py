"""End-to-end training on tiny models and small generated data (no downloads)."""

import json
import shutil

import numpy as np
import pytest
import torch

from conftest import EASY_CLASSES, benchmark_script, easy_image, tiny, train_alone_and_on_two_ranks
from galaxalign.cli import main
from galaxalign.evaluation import evaluate_run
from galaxalign.models.backbones import build_backbone
from galaxalign.models.model import GalaxAlignModel
from galaxalign.models.prototypes import fuse
from galaxalign.runs import build_model, load_run, metrics_records
from galaxalign.training import train
from galaxalign.training.batches import epoch_order
from galaxalign.training.optim import Schedule, parameter_groups
from galaxalign.training.state import TrainState


def checkpoint_weights(run_dir):
    return torch.load(run_dir / "checkpoint.pt", weights_only=True)["model"]


def losses(run_dir):
    return [r["loss"] for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines()) if "loss" in r]


def test_supervised_tiny_run_learns(easy_h5, tmp_path):
    run_dir = train(tiny(easy_h5, tmp_path / "sup", method="supervised", epochs=15))
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["test_size"] == 24
    assert summary["test_accuracy"] >= 0.55  # chance is 1/3: P(>= 14 of 24 right by chance) < 0.01
    history = losses(run_dir)
    assert np.mean(history[-3:]) < 0.6 * np.mean(history[:3])
    for name in ("config.json", "split.json", "model.safetensors", "checkpoint.pt", "metrics.jsonl"):
        assert (run_dir / name).exists()
    # Its projection never trains, so it retrieves by its pooled features.
    metrics = evaluate_run(load_run(run_dir), easy_h5)
    assert metrics["retrieval_space"] == "features" and metrics["scoring"] == "head"


def test_galaxalign_runs_both_stages_and_loss_falls(easy_h5, tmp_path):
    run_dir = train(tiny(easy_h5, tmp_path / "ga", method="galaxalign", epochs=8, stage1_fraction=0.5))
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if "loss" in r]
    assert [r["stage"] for r in steps] == sorted(r["stage"] for r in steps) and {r["stage"] for r in steps} == {1, 2}
    assert all("image_symbol" in r for r in steps if r["stage"] == 2)
    assert not any("image_symbol" in r for r in steps if r["stage"] == 1)
    stage1 = [r["image_text"] + r["symbol_text"] for r in steps if r["stage"] == 1]
    assert np.mean(stage1[-4:]) < np.mean(stage1[:4])
    assert any(k.startswith("symbol_encoder.") for k in checkpoint_weights(run_dir))
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["scoring"] == load_run(run_dir).scoring and summary["test_size"] == 24
    assert summary["best_stage"] == 2  # a two-stage method keeps stage-2 weights


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
    groups = parameter_groups(
        model, tiny(easy_h5, tmp_path, trainable_blocks=3, lr=1.0, layer_decay=0.5, method="supervised")
    )
    image_lrs = {g["name"].removesuffix(".no_decay"): g["base_lr"] for g in groups if g["name"].startswith("image")}
    assert list(image_lrs.values()) == [1.0, 0.5, 0.25]


def test_resume_gives_the_same_final_weights(easy_h5, tmp_path):
    config = dict(method="galaxalign", epochs=4, stage1_fraction=0.5)
    straight = train(tiny(easy_h5, tmp_path / "straight", **config))
    paused = tiny(easy_h5, tmp_path / "paused", **config)
    train(paused, pause_after_steps=5)  # mid-epoch, still in stage 1
    assert torch.load(tmp_path / "paused" / "checkpoint.pt", weights_only=True)["step"] == 5
    assert not (tmp_path / "paused" / "summary.json").exists()
    assert main(["train", "--out", str(tmp_path / "paused"), "--resume", "--quiet"]) == 0
    a, b = checkpoint_weights(straight), checkpoint_weights(tmp_path / "paused")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    seen = [torch.load(run / "checkpoint.pt", weights_only=True)["seen"] for run in (straight, tmp_path / "paused")]
    assert seen[0] == seen[1] > 0  # the summary's rate counts both sittings' images, each once


def test_end_of_epoch_checkpoints_are_rate_limited(easy_h5, tmp_path, monkeypatch):
    """One-step epochs (1 % of labels) must not write a checkpoint per step; the last epoch always does."""
    written = []
    save = TrainState.save

    def counted(state, path):
        written.append(state.position.epoch)
        save(state, path)

    monkeypatch.setattr(TrainState, "save", counted)
    train(tiny(easy_h5, tmp_path / "rare", method="supervised", epochs=3, checkpoint_minutes=60.0))
    assert written == [3]
    written.clear()
    train(tiny(easy_h5, tmp_path / "every", method="supervised", epochs=3, checkpoint_minutes=0.0))
    assert written == [1, 2, 3]


def test_worker_processes_train_to_identical_weights(easy_h5, tmp_path):
    """Images read by 0 or 2 DataLoader workers give the same batches, so the same weights."""
    config = dict(method="galaxalign", epochs=2, stage1_fraction=0.5)
    alone = train(tiny(easy_h5, tmp_path / "w0", workers=0, **config))
    helped = train(tiny(easy_h5, tmp_path / "w2", workers=2, **config))
    a, b = checkpoint_weights(alone), checkpoint_weights(helped)
    assert a.keys() == b.keys() and any(k.startswith("symbol_encoder.") for k in a)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert losses(alone) == losses(helped)


def test_label_fraction_is_stratified_subset(easy_h5, tmp_path):
    run_dir = train(tiny(easy_h5, tmp_path / "few", method="clip", epochs=1, label_fraction=0.25))
    summary = json.loads((run_dir / "summary.json").read_text())
    split = json.loads((run_dir / "split.json").read_text())
    n_train = len(split["train"])
    assert len(EASY_CLASSES) <= summary["train_labelled"] <= round(0.25 * n_train) + len(EASY_CLASSES)


def test_run_loads_from_its_folder_alone(easy_h5, tmp_path):
    run_dir = train(tiny(easy_h5, tmp_path / "clip", method="clip", epochs=1))
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
    features = run.image_features(images)  # pooled, before the projection: the projection of them is the embedding
    assert features.shape == (3, run.model.backbone.image_dim)
    projected = run.model.project_image(torch.from_numpy(features)).detach().numpy()
    assert np.allclose(projected, run.embed_images(images), atol=1e-5)


def test_cli_train_errors_are_one_line(easy_h5, tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path / "none"), "--resume"]) == 2
    assert "nothing to resume" in capsys.readouterr().err
    assert main(["train", "--out", str(tmp_path / "x"), "--data", str(tmp_path / "missing.h5")]) == 2
    err = capsys.readouterr().err
    assert "missing.h5" in err and err.count("\n") == 1
    args = [
        "train",
        "--data",
        str(easy_h5),
        "--out",
        str(tmp_path / "dup"),
        "--backbone",
        "tiny",
        "--image-size",
        "32",
        "--epochs",
        "1",
        "--batch-size",
        "12",
        "--method",
        "supervised",
        "--quiet",
    ]
    assert main(args) == 0
    assert main(args) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["train", "--data", str(easy_h5), "--out", str(tmp_path / "b"), "--backbone", "nope"]) == 2


@pytest.mark.slow
def test_ddp_two_processes_match_one(easy_h5, tmp_path):
    common = [
        "--data",
        str(easy_h5),
        "--backbone",
        "tiny",
        "--image-size",
        "32",
        "--epochs",
        "2",
        "--batch-size",
        "12",
        "--method",
        "galaxalign",
        "--lr",
        "2e-3",
        "--head-lr",
        "5e-3",
        "--trainable-blocks",
        "-1",
        "--symbol-variants",
        "3",
        "--embed-dim",
        "32",
        "--warmup-fraction",
        "0",
        "--val-fraction",
        "0.2",
        "--test-fraction",
        "0.2",
        "--threads",
        "1",
        "--device",  # under torchrun, cpu means DDP on gloo (on a GPU machine too)
        "cpu",
        "--quiet",
    ]
    train_alone_and_on_two_ranks(tmp_path, common)
    # Every step's global loss agrees, so each step saw the same batch and the same model.
    np.testing.assert_allclose(losses(tmp_path / "two"), losses(tmp_path / "one"), rtol=1e-5)
    a, b = checkpoint_weights(tmp_path / "one"), checkpoint_weights(tmp_path / "two")
    assert a.keys() == b.keys()
    gaps = np.array([(a[k].float() - b[k].float()).abs().max().item() for k in a])
    # Reduction order differs between one process and two. AdamW divides by sqrt(v), so on
    # parameters whose true gradient is ~0 (attention key biases) float noise becomes a step of
    # up to ~lr; everywhere else the weights agree to float precision.
    # How close depends on the CPU's kernels: on an AMD EPYC here the median gap was 1.6e-6 and
    # 94 % of tensors were within 1e-4 (a wrong batch on a rank is caught by the losses above;
    # these bounds, far below one step of the learning rate, 2e-3, check where the weights end).
    assert np.median(gaps) < 1e-5
    assert np.mean(gaps < 1e-4) > 0.85
    assert gaps.max() < 2e-3


def test_validation_every_n_epochs_and_always_last(easy_h5, tmp_path):
    run_dir = train(tiny(easy_h5, tmp_path / "v", method="supervised", epochs=3, val_every=2))
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records if "val_accuracy" in r] == [1, 2]


def test_each_stage_has_its_own_warmup_and_decay():
    schedule = Schedule((10, 10), warmup_fraction=0.2)
    assert schedule.factor(0) == pytest.approx(0.5) and schedule.factor(1) == pytest.approx(1.0)
    assert schedule.factor(9) < 0.05  # stage 1 has decayed
    assert schedule.factor(10) == pytest.approx(0.5) and schedule.factor(11) == pytest.approx(
        1.0
    )  # stage 2 warms up again
    assert schedule.factor(19) < 0.05
    assert Schedule((8,), 0.0).factor(0) == pytest.approx(1.0)


def test_stage2_trains_a_separate_symbol_encoder_at_full_rate(easy_h5, tmp_path):
    """Stage 2 starts from the peak rate again; its symbol encoder gets gradients and leaves the
    image encoder it was copied from; the kept weights are stage-2 weights."""
    config = tiny(easy_h5, tmp_path / "ga", method="galaxalign", epochs=4, stage1_fraction=0.5, warmup_fraction=0.2)
    steps_per_stage = 2 * (72 // 12)  # 72 training galaxies, batch 12, 2 epochs per stage
    train(config, pause_after_steps=steps_per_stage)  # the end of stage 1
    at_split = {k: v.clone() for k, v in checkpoint_weights(tmp_path / "ga").items() if k.startswith("image_encoder.")}
    assert main(["train", "--out", str(tmp_path / "ga"), "--resume", "--quiet"]) == 0
    records = [json.loads(line) for line in (tmp_path / "ga" / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if "loss" in r]
    lr = {stage: [r["lr"] for r in steps if r["stage"] == stage] for stage in (1, 2)}
    assert max(lr[2]) == pytest.approx(max(lr[1])) and np.mean(lr[2]) == pytest.approx(np.mean(lr[1]), rel=0.05)
    final = checkpoint_weights(tmp_path / "ga")
    trained = [k for k in at_split if k.startswith("image_encoder.blocks") or "norm" in k]
    moved = [k for k in trained if not torch.equal(final["symbol" + k[len("image") :]], at_split[k])]
    apart = [k for k in trained if not torch.equal(final["symbol" + k[len("image") :]], final[k])]
    assert moved and apart and len(moved) == len(apart) == len(trained)
    summary = json.loads((tmp_path / "ga" / "summary.json").read_text())
    assert summary["best_stage"] == 2 and summary["best_step"] > steps_per_stage


def test_scoring_is_chosen_on_validation_and_saved_with_the_weights(easy_h5, tmp_path):
    run_dir = train(tiny(easy_h5, tmp_path / "s1", method="galaxalign-stage1", epochs=3))
    validations = [
        r for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines()) if "val_accuracy" in r
    ]
    assert all(
        set(r["val_by_scoring"]) == {"fusion@0.5", "fusion@0.25", "fusion@0.75", "text", "symbol"} for r in validations
    )
    for r in validations:  # the epoch's score is its best scoring's
        assert r["val_accuracy"] == max(r["val_by_scoring"].values()) == r["val_by_scoring"][r["scoring"]]
    best = max(validations, key=lambda r: r["val_accuracy"])
    run = load_run(run_dir)
    name = f"fusion@{run.fusion_weight:g}" if run.scoring == "fusion" else run.scoring
    assert name == best["scoring"]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["scoring"] == run.scoring and summary["best_stage"] == 1


def test_fusion_mixes_standardised_scores():
    text = torch.tensor([[10.0, 9.0, 0.0], [0.0, 1.0, 2.0]])
    symbol = torch.tensor([[0.1, 0.3, 0.2], [0.1, 0.5, 0.2]])
    assert torch.equal(fuse(text, symbol, 1.0).argmax(1), text.argmax(1))
    assert torch.equal(fuse(text, symbol, 0.0).argmax(1), symbol.argmax(1))
    # Raw sums let the wide text scores decide; standardised, the symbol scores count as much.
    assert (text + symbol).argmax(1).tolist() == [0, 2]
    assert fuse(text, symbol, 0.5).argmax(1).tolist() == [1, 1]


@pytest.fixture(scope="module")
def sim_h5(tmp_path_factory):
    """A small Galaxy10-Sim file: each galaxy's generating parameters are stored beside it."""
    from galaxalign.synth import SynthConfig, write_synth

    path = tmp_path_factory.mktemp("sim") / "g10sim.h5"
    write_synth(path, SynthConfig(per_class=6, size=32, seed=3, workers=1))
    return path


def test_galaxy_symbols_and_captions_are_true_pairs(sim_h5, tmp_path):
    """With --symbol-source galaxy each labelled galaxy brings its own drawings and caption, for the symbol losses."""
    from galaxalign.data import open_dataset
    from galaxalign.morphology.answers import caption, dataset_answers
    from galaxalign.training.trainer import Trainer

    config = tiny(
        sim_h5,
        tmp_path / "g",
        method="galaxalign",
        symbol_source="galaxy",
        epochs=2,
        batch_size=8,
        val_fraction=0.25,
        test_fraction=0.25,
    )
    trainer = Trainer(config, resume=False)
    n_labelled = len(trainer.data.train_indices)
    drawings = trainer.galaxy_symbols
    assert drawings.shape == (n_labelled, 3, 32, 32) and drawings.dtype == torch.uint8  # symbol_variants each
    answers = dataset_answers(open_dataset(sim_h5))
    captions = [caption(answers[int(i)]) for i in trainer.data.train_indices]
    by_class: dict[int, set[str]] = {}
    for label, text in zip(trainer.train_labels, captions):
        by_class.setdefault(int(label), set()).add(text)
    assert any(len(texts) > 1 for texts in by_class.values())  # structure differs within a class, so captions do
    order = epoch_order(trainer.train_labels, 8, 0, 0, True)
    plan = trainer.builder.plan(0, order, range(8))
    batch = trainer.builder.assemble(plan, trainer.builder.read(plan))
    assert batch.symbol_pixels.shape == batch.pixels.shape
    tokens_of = trainer.text_tokens["input_ids"]
    for local, row in zip(plan.locals, batch.caption_rows.tolist()):
        expected = trainer.model.backbone.tokenize([captions[local]])["input_ids"][0]
        assert torch.equal(tokens_of[row][: len(expected)], expected)  # its own caption, for the symbol losses
    run_dir = trainer.fit()
    assert json.loads((run_dir / "config.json").read_text())["symbol_source"] == "galaxy"
    summary = json.loads((run_dir / "summary.json").read_text())
    # studies/claim/own_prototypes.py re-scores the kept weights as the trainer's validation did.
    own_prototypes = benchmark_script("own_prototypes")
    accuracy = own_prototypes.prototype_accuracies(run_dir)
    kept = [r for r in metrics_records(run_dir) if "val_by_scoring" in r and r["step"] == summary["best_step"]]
    kept = kept[-1]["val_by_scoring"]
    assert accuracy["class phrases"] == pytest.approx(kept["text"]) and accuracy["class symbols"] == pytest.approx(
        kept["symbol"]
    )
    assert set(accuracy) == set(own_prototypes.KINDS) and all(0 <= v <= 1 for v in accuracy.values())


def test_galaxy_symbols_need_attributes(easy_h5, tmp_path, capsys):
    assert (
        main(
            [
                "train",
                "--data",
                str(easy_h5),
                "--out",
                str(tmp_path / "r"),
                "--backbone",
                "tiny",
                "--image-size",
                "32",
                "--symbol-source",
                "galaxy",
                "--quiet",
            ]
        )
        == 2
    )
    assert "needs each galaxy's attributes" in capsys.readouterr().err


def test_zero_label_reads_no_galaxy_images_or_labels(easy_h5, tmp_path, monkeypatch):
    """The zero-label method learns from class symbols and phrases alone: no training image is read."""
    from galaxalign.training import batches as batches_module

    read = []
    real = batches_module.image_batches
    monkeypatch.setattr(batches_module, "image_batches", lambda *a, **k: read.append(1) or real(*a, **k))
    run_dir = train(tiny(easy_h5, tmp_path / "z", method="zero-label", epochs=2))
    assert not read
    steps = [r for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines()) if "loss" in r]
    assert steps and all(set(r) >= {"symbol_text"} and "image_text" not in r for r in steps)
    assert load_run(run_dir).classify([easy_image(2, np.random.default_rng(0))])[0]["key"]


def test_towers_train_separate_block_counts(easy_h5, tmp_path):
    config = tiny(
        easy_h5, tmp_path / "b", method="clip", trainable_blocks=-1, image_trainable_blocks=1, text_trainable_blocks=0
    )
    model = build_model(config, 10)
    names = [g["name"] for g in parameter_groups(model, config)]
    assert names == ["image0.no_decay", "heads"]  # the top block is the final layernorm


def test_class_level_targets_train(easy_h5, tmp_path):
    run_dir = train(tiny(easy_h5, tmp_path / "c", method="galaxalign", targets="classes", epochs=4))
    steps = [r for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines()) if "loss" in r]
    stage1 = [r["image_text"] for r in steps if r["stage"] == 1]
    assert np.mean(stage1[-3:]) < np.mean(stage1[:3])
    assert {"image_text", "symbol_text", "image_symbol"} <= set(steps[-1])


@pytest.mark.slow
# torch.compile's tracer reads .grad of the non-leaf tensors it wraps, hiding the warning it
# raises only from display (torch._logging.hide_warnings): as an error it would stop the trace.
@pytest.mark.filterwarnings("ignore:The .grad attribute of a Tensor that is not a leaf Tensor:UserWarning")
def test_compiled_training_step_matches_eager(easy_h5, tmp_path):
    """--compile changes how the step runs, not what it computes or what the run folder holds."""
    eager = train(tiny(easy_h5, tmp_path / "eager", method="clip", epochs=1))
    compiled = train(tiny(easy_h5, tmp_path / "compiled", method="clip", epochs=1, compile=True))
    np.testing.assert_allclose(losses(compiled), losses(eager), rtol=1e-3)
    assert checkpoint_weights(compiled).keys() == checkpoint_weights(eager).keys()
    assert load_run(compiled).classify([easy_image(2, np.random.default_rng(0))])[0]["key"]


def test_prototype_head_predicts_what_the_prototypes_predict():
    """LP-FT's start: the head's logits are the prototype cosines times a per-image positive factor."""
    from galaxalign.training import TrainConfig

    model = build_model(TrainConfig(data="", out="", backbone="tiny", method="lp-ft", embed_dim=16), 5)
    pixels = torch.randn(8, 3, 32, 32)
    prototypes = torch.nn.functional.normalize(torch.randn(5, model.embed_dim), dim=-1)
    with torch.no_grad():
        features = model.image_features(pixels)
        feature_norm = float(model.image_projection(features).norm(dim=1).mean())
        model.init_classifier(prototypes, feature_norm)
        head = model.classify_features(features)
        cosines = model.project_image(features) @ prototypes.t()
        per_image = model.image_projection(features).norm(dim=1, keepdim=True) / feature_norm
    assert torch.allclose(head, model.logit_scale.exp() * cosines * per_image, atol=1e-4)
    assert torch.equal(head.argmax(1), cosines.argmax(1))


def test_lp_ft_aligns_then_fine_tunes_a_head_from_the_prototypes(easy_h5, tmp_path):
    run_dir = train(tiny(easy_h5, tmp_path / "lpft", method="lp-ft", epochs=6, stage1_fraction=0.5))
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if "loss" in r]
    assert all({"image_text", "symbol_text"} <= set(r) for r in steps if r["stage"] == 1)
    assert all(set(r) >= {"ce"} and "image_text" not in r for r in steps if r["stage"] == 2)
    starts = [r for r in records if "head_from" in r]
    assert len(starts) == 1 and starts[0]["head_from"].split("@")[0] in ("fusion", "text", "symbol")
    vals = [r for r in records if "val_accuracy" in r]
    assert {r["scoring"] for r in vals if r["stage"] == 2} == {"head"}
    assert all(r["scoring"] != "head" for r in vals if r["stage"] == 1)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["best_stage"] == 2 and summary["scoring"] == "head"
    assert not any(k.startswith("symbol_encoder.") for k in checkpoint_weights(run_dir))
    stage2 = [r["ce"] for r in steps if r["stage"] == 2]
    assert np.mean(stage2[-3:]) < np.mean(stage2[:3])
    assert load_run(run_dir).scoring == "head"


def test_lp_ft_resumes_inside_stage_2(easy_h5, tmp_path):
    config = dict(method="lp-ft", epochs=4, stage1_fraction=0.5)  # 6 steps an epoch: stage 2 from step 12
    straight = train(tiny(easy_h5, tmp_path / "straight", **config))
    train(tiny(easy_h5, tmp_path / "paused", **config), pause_after_steps=14)
    assert torch.load(tmp_path / "paused" / "checkpoint.pt", weights_only=True)["stage"] == 2
    assert main(["train", "--out", str(tmp_path / "paused"), "--resume", "--quiet"]) == 0
    a, b = checkpoint_weights(straight), checkpoint_weights(tmp_path / "paused")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_method_with_an_unknown_stage_2_start_is_refused():
    from galaxalign.run_config import Method

    with pytest.raises(ValueError, match="stage2 must be one of"):
        Method("typo", loss="contrastive", head=False, aligns=("image",), scoring=("text",), stage2="symbol_encoder")
