"""Where the symbols come from and how they enter training: the symbol-source flag is refused
where it does nothing, and applies per method in a benchmark."""

from __future__ import annotations

import json
from dataclasses import fields, replace

import numpy as np
import pytest
import torch

from galaxalign.cli import main
from galaxalign.errors import GalaxAlignError
from galaxalign.jobs.config import BenchmarkConfig
from galaxalign.training import METHODS, TrainConfig

NO_SYMBOLS = [m.name for m in METHODS.values() if not m.uses_symbols]


@pytest.mark.parametrize("method", NO_SYMBOLS)
def test_a_symbol_source_for_a_method_without_symbols_is_one_line_exit_2(easy_h5, tmp_path, capsys, method):
    out = tmp_path / "r"
    argv = ["train", "--data", str(easy_h5), "--out", str(out), "--backbone", "tiny", "--method", method]
    assert main([*argv, "--symbol-source", "galaxy", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--symbol-source galaxy" in err and f"method {method}" in err
    assert not out.exists()  # nothing half-written


def test_per_galaxy_symbols_for_a_method_without_galaxies_are_refused():
    with pytest.raises(GalaxAlignError, match="method zero-label, which trains on no galaxies"):
        TrainConfig(data="d", out="o", method="zero-label", symbol_source="galaxy")


def test_benchmark_applies_the_symbol_source_to_the_methods_that_use_symbols(tmp_path):
    base = TrainConfig(data="", out="", symbol_source="galaxy")
    config = BenchmarkConfig(data="d", out=str(tmp_path), methods="supervised,clip,galaxalign", train=base)
    assert config.train.for_method("galaxalign").symbol_source == "galaxy"
    assert (
        config.train.for_method("clip").symbol_source == "drawn"
        and config.train.for_method("zero-label").symbol_source == "drawn"
    )
    with pytest.raises(
        GalaxAlignError,
        match="benchmark: --symbol-source galaxy does nothing for the methods supervised, clip, zero-label: none",
    ):
        BenchmarkConfig(data="d", out=str(tmp_path), methods="supervised,clip,zero-label", train=base)


# ---------------------------------------------------------------- per-galaxy symbols (issue 24, section 2)


@pytest.fixture(scope="module")
def sim_h5(tmp_path_factory):
    """A small Galaxy10-Sim file (render version 1, the claim study's look) with its parameters."""
    from galaxalign.synth import SynthConfig, write_synth

    path = tmp_path_factory.mktemp("sim") / "g10sim.h5"
    write_synth(path, SynthConfig(per_class=4, size=64, seed=5, workers=1, render_version=1))
    return path


@pytest.fixture(scope="module")
def galaxy_trainer(sim_h5, tmp_path_factory):
    from conftest import tiny
    from galaxalign.training.trainer import Trainer

    config = tiny(
        sim_h5,
        tmp_path_factory.mktemp("run") / "g",
        method="galaxalign",
        symbol_source="galaxy",
        batch_size=8,
        image_size=64,
        val_fraction=0.25,
        test_fraction=0.25,
    )
    return Trainer(config, resume=False)


def _batch(trainer, n=8):
    from galaxalign.training.batches import epoch_order

    order = epoch_order(trainer.train_labels, n, 0, 0, True)
    plan = trainer.builder.plan(0, order, range(n))
    return plan, trainer.builder.assemble(plan, trainer.builder.read(plan))


def test_image_text_loss_keeps_class_phrases_under_galaxy_symbols(galaxy_trainer):
    plan, batch = _batch(galaxy_trainer)
    owners = galaxy_trainer.text_owners.cpu()
    assert batch.text_rows.max() < len(owners)  # a class phrase, not a caption
    assert torch.equal(owners[batch.text_rows], batch.labels)  # of the sample's own class
    assert batch.caption_rows is not None and (batch.caption_rows >= len(owners)).all()  # captions go to symbols


def test_identical_captions_are_positives_of_each_other(galaxy_trainer):
    """Two galaxies with one caption share its one column in the symbol-text loss (no ln 2 floor
    from a duplicate column counted as a negative), and are positives in image-symbol."""
    from galaxalign.models.losses import contrastive_loss
    from galaxalign.training.objectives import contrastive

    _, batch = _batch(galaxy_trainer)
    batch.caption_rows = batch.caption_rows.clone()
    batch.caption_rows[1] = batch.caption_rows[0]  # two galaxies with one caption
    objective = galaxy_trainer.objective
    model = objective.model
    with torch.no_grad():
        symbols = objective.encode_symbols(batch)
        captions = objective.encode_texts(batch.caption_rows)
        scale = model.logit_scale
        one_hot = contrastive_loss(symbols, captions, scale).item()
        rows = batch.caption_rows.tolist()
        distinct = sorted(set(rows))
        columns = captions[[rows.index(r) for r in distinct]]  # one column per distinct caption
        logits = scale.exp() * symbols @ columns.t()
        target = torch.tensor([distinct.index(r) for r in rows])
        members = torch.nn.functional.one_hot(target).t().float()
        by_text = -(members / members.sum(1, keepdim=True) * logits.t().log_softmax(1)).sum(1).mean()
        expected = ((torch.nn.functional.cross_entropy(logits, target) + by_text) / 2).item()
        _, parts = contrastive(objective, batch)
        assert parts["symbol_text"] == pytest.approx(expected, rel=1e-5) and expected != pytest.approx(one_hot)
        model.split_symbol_encoder()  # stage 2: image-symbol, with the same-caption pair as positives
        _, parts = contrastive(objective, batch)
        images, symbols = model.encode_image(batch.pixels), objective.encode_symbols(batch)
        paired = contrastive_loss(images, symbols, scale, batch.caption_rows).item()
        assert parts["image_symbol"] == pytest.approx(paired, rel=1e-5)
        assert paired != pytest.approx(contrastive_loss(images, symbols, scale).item())


def test_symbol_pose_does_not_follow_the_images_position_angle(galaxy_trainer):
    from galaxalign.morphology.answers import GalaxyAnswers
    from galaxalign.symbols import fitted_galaxy_symbols

    bar = GalaxyAnswers("featured", 0.9, None, 0.0, False, 0.9, None, 0.0, "strong", 0.9, axis_ratio=0.5)
    turned = [replace(bar, position_angle=angle) for angle in (10.0, 75.0)]
    first, second = (fitted_galaxy_symbols([a], [0.3], 64, variants=2) for a in turned)
    assert np.array_equal(first, second)  # drawn upright whatever the galaxy's angle
    plan, _ = _batch(galaxy_trainer)
    image_angles = torch.cat([p["angle"] for p in plan.params])
    symbol_angles = torch.cat([p["angle"] for p in plan.symbol_params])
    assert not torch.allclose(image_angles, symbol_angles)  # an augmentation of its own


def test_drawing_extent_matches_the_galaxys_apparent_size(sim_h5):
    """The fitted drawing's half-light radius is the galaxy's, measured on a noise-free render of
    the same parameters; drawn at the class symbols' size it was about twice as large."""
    from galaxalign.data import open_dataset
    from galaxalign.morphology.answers import dataset_answers
    from galaxalign.symbols import apparent_radius, fitted_galaxy_symbols, render_galaxy_symbol
    from galaxalign.synth.params import GalaxyParams
    from galaxalign.synth.render import render_galaxy

    dataset = open_dataset(sim_h5)
    answers = dataset_answers(dataset)
    fitted, unfitted = [], []
    for i in range(0, len(dataset), 4):  # one galaxy of each class
        attributes = dataset.attributes()
        row = {f.name: attributes[f.name][i] for f in fields(GalaxyParams) if f.name != "class_id"}
        typed = {k: int(v) if k.startswith("n_") else float(v) for k, v in row.items()}
        clean = GalaxyParams(
            class_id=int(dataset.labels[i]), **(typed | {"sky_noise": 0.0, "n_stars": 0, "n_background": 0})
        )
        truth = apparent_radius(render_galaxy(clean, 64, np.random.default_rng(0), 1), clip_sigma=0.0)
        drawn = fitted_galaxy_symbols([answers[i]], [apparent_radius(dataset[i].image)], 64)[0, 0]
        fitted.append(apparent_radius(drawn, clip_sigma=0.0) / truth)
        unfitted.append(apparent_radius(np.asarray(render_galaxy_symbol(answers[i], 64)), clip_sigma=0.0) / truth)
    assert 0.75 <= np.median(fitted) <= 1.33 and all(0.6 <= r <= 1.6 for r in fitted), fitted
    assert np.median(unfitted) > 1.4  # what the fitting fixes


# ---------------------------------------------------------------- the controls (issue 24, section 3)


def test_textures_keep_the_class_structure_and_destroy_the_content():
    from galaxalign.models.prototypes import class_symbol_bank
    from galaxalign.symbols.textures import class_textures
    from galaxalign.taxonomy import load_scheme

    scheme = load_scheme("galaxy10")
    drawn = class_symbol_bank(scheme, 4, 48, seed=1)
    textures = class_symbol_bank(scheme, 4, 48, seed=1, source="texture")
    assert textures.shape == drawn.shape and textures.dtype == drawn.dtype  # same count, same pipeline
    assert torch.equal(textures, class_symbol_bank(scheme, 4, 48, seed=1, source="texture"))  # seeded
    for c in range(len(scheme)):
        grey, ink = textures[c].mean(1), drawn[c].mean(1)
        assert abs(float(grey.mean() - ink.mean())) < 0.05  # each class's grey level kept
    # Nothing of the drawing's content is left: turned drawings (same grey levels) give the same textures.
    turned = torch.rot90(drawn, 1, (3, 4))
    assert np.array_equal(class_textures(turned.numpy(), seed=1), textures.numpy())
    flat = textures.mean(2).flatten(2)  # (C, V, pixels)
    spectra = torch.fft.rfft2(textures.mean(2)).abs().mean(1)  # each class's mean power: its own process
    between = min(float((spectra[a] - spectra[b]).norm()) for a in range(10) for b in range(10) if a != b)
    assert between > 0 and not torch.equal(flat[0, 0], flat[0, 1])  # variants differ within a class


def test_domain_symbols_look_like_survey_images_at_the_galaxys_size():
    from galaxalign.models.prototypes import class_symbol_bank
    from galaxalign.symbols import apparent_radius
    from galaxalign.taxonomy import load_scheme
    from galaxalign.training.domain import DomainSymbols

    scheme = load_scheme("galaxy10")
    grey = class_symbol_bank(scheme, 2, 64, seed=0).flatten(0, 1).mean(1).numpy()
    domain = DomainSymbols(grey, scheme, difficulty=0.35, render_version=1)
    rows, labels = [2 * 6, 2 * 6, 2 * 8], [6, 6, 8]
    first = domain.render(rows, labels, [0.25, 0.25, 0.25], [1, 2, 3])
    assert first.shape == (3, 64, 64, 3) and first.dtype == np.uint8
    assert not np.array_equal(first[0], first[1])  # anew for every sample: seeing, sky, flux
    assert np.array_equal(domain.render(rows[:1], labels[:1], [0.25], [1])[0], first[0])  # seeded
    assert np.abs(first[0].astype(int)[..., 0] - first[0][..., 2]).max() > 0  # colour, not grey
    radius = apparent_radius(first[0])
    assert 0.15 < radius < 0.4, radius  # about the galaxy's half-light radius, not the drawing's 0.45


def test_domain_and_texture_runs_train_on_their_own_symbols(easy_h5, tmp_path):
    from conftest import tiny
    from galaxalign.runs import load_run
    from galaxalign.training import train
    from galaxalign.training.trainer import Trainer

    trainer = Trainer(tiny(easy_h5, tmp_path / "d", symbol_source="domain"), resume=False)
    plan, batch = _batch(trainer)
    assert batch.symbol_pixels is not None and batch.symbol_pixels.shape == batch.pixels.shape
    again = trainer.builder.assemble(plan, trainer.builder.read(plan))
    assert torch.equal(again.symbol_pixels, batch.symbol_pixels)  # planned: the same for any worker count
    later = trainer.builder.plan(1, np.arange(len(trainer.train_labels)), range(len(plan.locals)))
    assert later.render_seeds != plan.render_seeds  # rendered anew at every step
    run_dir = train(tiny(easy_h5, tmp_path / "t", symbol_source="texture", epochs=1))
    assert torch.equal(load_run(run_dir).symbols01, trainer.symbols01) is False  # textures, not drawings


def test_clip_restart_is_clip_with_the_two_stage_schedule(easy_h5, tmp_path):
    from conftest import tiny
    from galaxalign.training import train

    run_dir = train(tiny(easy_h5, tmp_path / "c", method="clip-restart", epochs=4))
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if "loss" in r]
    assert {r["stage"] for r in steps} == {1, 2} and all(
        set(r) & {"symbol_text", "image_symbol"} == set() for r in steps
    )
    last1 = max((r for r in steps if r["stage"] == 1), key=lambda r: r["step"])
    first2 = min((r for r in steps if r["stage"] == 2), key=lambda r: r["step"])
    assert first2["lr"] > last1["lr"]  # the schedule starts again at the switch
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["best_stage"] == 2 and summary["scoring"] == "text"


def test_validations_spread_over_the_kept_stage_with_a_fixed_scoring(easy_h5, tmp_path):
    from conftest import tiny
    from galaxalign.training import train

    config = tiny(easy_h5, tmp_path / "v", method="galaxalign", epochs=6, validations=2, scoring="fixed")
    assert config.validated_epochs() == [4, 5]  # stage 2 is epochs 3-5
    run_dir = train(config)
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    validated = [r for r in records if "val_accuracy" in r]
    assert [r["epoch"] for r in validated] == [4, 5] and all(set(r["val_by_scoring"]) == {"text"} for r in validated)
    with pytest.raises(GalaxAlignError, match="--validations or --val-every"):
        tiny(easy_h5, tmp_path / "w", validations=2, val_every=2)


def test_a_run_saved_with_the_old_symbols_field_still_loads(tmp_path):
    from galaxalign.config import config_from_dict, config_to_dict

    old = config_to_dict(TrainConfig(data="d", out="o"))
    del old["symbol_source"]
    old["symbols"] = "class"
    assert config_from_dict(TrainConfig, old).symbol_source == "drawn"
