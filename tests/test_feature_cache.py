"""The feature cache (--feature-cache-views): the frozen lower image blocks run once per fixed view.

Checked against the uncached path on the same views: the split tower gives the full tower's
features, steps on cached views train as steps on those views' pixels, a resumed cached run ends
where an uninterrupted one does, and the combinations where the cache cannot work are refused.
"""

import json

import numpy as np
import pytest
import torch

from conftest import one_line_error, tiny, train_alone_and_on_two_ranks
from galaxalign.cli import main
from galaxalign.models.backbones import build_backbone
from galaxalign.training import feature_cache as fc
from galaxalign.training import train
from galaxalign.training.batches import epoch_order
from galaxalign.training.trainer import Trainer


def cached_config(data, out, **overrides):
    """The tiny run with its top two blocks trained (the second layer and the final norm) and 2 views."""
    return tiny(data, out, **{"trainable_blocks": 2, "feature_cache_views": 2, **overrides})


def records(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_upper_blocks_on_the_lower_activations_give_the_full_tower():
    tower = build_backbone("tiny").image_encoder
    pixels = torch.randn(5, 3, 32, 32)
    full = tower(pixels)
    for start in range(1, len(tower.blocks()) + 1):
        torch.testing.assert_close(tower.forward_above(tower.forward_below(pixels, start), start), full)
    assert not build_backbone("tiny").text_encoder.splittable


def test_a_cached_view_is_the_view_the_full_tower_would_see(easy_h5, tmp_path):
    """The plan of a cached run records each sample's view, and the uncached assembly of that plan
    gives pixels whose full-tower features are the cached activations' upper-block features."""
    trainer = Trainer(cached_config(easy_h5, tmp_path / "run", method="clip"), resume=False)
    builder, model, cache = trainer.builder, trainer.model, trainer.builder.feature_cache
    assert cache is not None and cache.start == 2 and cache.views == 2
    assert len(cache.slots) == len(trainer.data.train_indices) and cache.hidden.dtype == torch.float32
    order = epoch_order(trainer.train_labels, 12, 0, 0, True)
    plan = builder.plan(0, order, range(12))
    cached = builder.assemble(plan, None)
    assert cached.pixels is None and cached.image_hidden is not None
    model.eval()
    with torch.no_grad():
        from_cache = model.image_features_above(cached.image_hidden, cached.image_start)
        from_pixels = model.image_features(builder.assemble(plan, builder.read(plan)).pixels)
    torch.testing.assert_close(from_cache, from_pixels, rtol=1e-5, atol=1e-5)
    # Every other choice of the plan is the uncached run's; the views come from both of each galaxy's.
    uncached = Trainer(tiny(easy_h5, tmp_path / "plain", method="clip", trainable_blocks=2), resume=False)
    other = uncached.builder.plan(0, order, range(12))
    assert (other.indices, other.text_rows, other.symbol_rows) == (plan.indices, plan.text_rows, plan.symbol_rows)
    views = {row % 2 for row in builder.plan(0, order, range(len(order))).cached}
    assert views == {0, 1}


@pytest.mark.parametrize(
    "settings",
    [
        {"method": "clip"},
        {"method": "supervised"},
        {"method": "galaxalign-stage1"},
        {"method": "galaxalign-stage1", "image_trainable_blocks": 0},  # a locked image tower: all of it cached
        # Semi-supervised: each unlabelled galaxy's weak and strong views are two of its cached ones
        # (a threshold every pseudo-label passes, so the strong views' loss trains).
        {"method": "clip", "unlabelled_weight": 1.0, "label_fraction": 0.5, "pseudo_threshold": 0.05},
    ],
    ids=["clip", "supervised", "galaxalign-stage1", "locked-image-tower", "semi-supervised"],
)
def test_steps_on_cached_views_train_as_steps_on_their_pixels(easy_h5, tmp_path, settings):
    """Two runs from the same start, one fed the cache and one the same views' pixels through the
    whole tower, take the same losses and reach the same weights."""
    cached = Trainer(cached_config(easy_h5, tmp_path / "cached", **settings), resume=False)
    plain = Trainer(tiny(easy_h5, tmp_path / "plain", trainable_blocks=2, **settings), resume=False)
    assert cached.builder.feature_cache is not None
    assert cached.builder.feature_cache.start == (4 if "image_trainable_blocks" in settings else 2)
    galaxies = len(cached.data.train_indices) + len(cached._unlabelled() if "unlabelled_weight" in settings else [])
    assert len(cached.builder.feature_cache.slots) == galaxies
    start = {k: v.clone() for k, v in plain.model.state_dict().items()}
    assert all(torch.equal(v, start[k]) for k, v in cached.model.state_dict().items())
    order = epoch_order(cached.train_labels, 12, 0, 0, True)
    history: dict[str, list[float]] = {"cached": [], "plain": []}
    semi: dict[str, list[float]] = {"cached": [], "plain": []}  # the unlabelled galaxies' loss
    for step in range(len(order) // 12):
        plan = cached.builder.plan(0, order, range(12 * step, 12 * step + 12))
        batches = {
            "cached": cached.builder.assemble(plan, None),
            "plain": plain.builder.assemble(plan, plain.builder.read(plan)),
        }
        for name, trainer in (("cached", cached), ("plain", plain)):
            trainer.model.train()
            loss, parts = trainer.objective(batches[name])
            loss.backward()
            trainer._step()
            history[name].append(loss.item())
            semi[name] += [parts["unlabelled"].item()] if "unlabelled" in parts else []
    np.testing.assert_allclose(history["cached"], history["plain"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(semi["cached"], semi["plain"], rtol=1e-4, atol=1e-5)
    assert ("unlabelled_weight" in settings) == (min(semi["cached"], default=0) > 0)
    a, b = cached.model.state_dict(), plain.model.state_dict()
    gaps = [(a[k] - b[k]).abs().max().item() for k in a]
    assert max(gaps) < 1e-4 and any(not torch.equal(a[k], start[k]) for k in a)


def test_a_cached_run_trains_both_stages_and_logs_its_cache(easy_h5, tmp_path):
    run_dir = train(cached_config(easy_h5, tmp_path / "ga", method="galaxalign", epochs=4, feature_cache_views=3))
    lines = records(run_dir)
    (cache,) = [r["feature_cache"] for r in lines if "feature_cache" in r]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert cache["views"] == 3 and cache["galaxies"] == summary["train_labelled"] and cache["frozen_blocks"] == 2
    assert cache["mib"] == pytest.approx(3 * summary["train_labelled"] * 17 * 64 * 4 / 2**20, abs=0.1)
    assert {r["stage"] for r in lines if "loss" in r} == {1, 2}


def test_a_resumed_cached_run_ends_where_an_uninterrupted_one_does(easy_h5, tmp_path):
    config = dict(method="galaxalign", epochs=4, stage1_fraction=0.5)
    straight = train(cached_config(easy_h5, tmp_path / "straight", **config))
    train(cached_config(easy_h5, tmp_path / "paused", **config), pause_after_steps=5)
    assert main(["train", "--out", str(tmp_path / "paused"), "--resume", "--quiet"]) == 0
    a = torch.load(straight / "checkpoint.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "paused" / "checkpoint.pt", weights_only=True)["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    losses = [[r["loss"] for r in records(d) if "loss" in r] for d in (straight, tmp_path / "paused")]
    assert losses[0] == losses[1]


@pytest.mark.slow
def test_a_cached_run_on_two_ranks_matches_one(easy_h5, tmp_path):
    args = ["--data", str(easy_h5), "--backbone", "tiny", "--image-size", "32", "--epochs", "2"]
    args += ["--batch-size", "12", "--method", "clip", "--trainable-blocks", "2", "--feature-cache-views", "2"]
    args += ["--embed-dim", "32", "--val-fraction", "0.2", "--test-fraction", "0.2", "--threads", "1"]
    one, two = train_alone_and_on_two_ranks(tmp_path, [*args, "--device", "cpu", "--quiet"])
    losses = [[r["loss"] for r in records(d) if "loss" in r] for d in (one, two)]
    np.testing.assert_allclose(losses[1], losses[0], rtol=1e-5)


def cli(easy_h5, out, *flags):
    base = ["train", "--data", str(easy_h5), "--out", str(out), "--backbone", "tiny", "--image-size", "32"]
    return [*base, "--epochs", "1", "--batch-size", "12", "--quiet", *flags]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--feature-cache-views", "2", "--trainable-blocks", "-1"], "trains them all"),
        (["--feature-cache-views", "2", "--image-trainable-blocks", "-1"], "trains them all"),
        (["--feature-cache-views", "2", "--method", "zero-label"], "does nothing for method zero-label"),
        (["--feature-cache-views", "-1"], "must be 0 or more"),
        (
            ["--feature-cache-views", "1", "--method", "clip", "--unlabelled-weight", "1", "--label-fraction", "0.5"],
            "needs at least 2 views",
        ),
        (["--feature-cache-views", "2", "--trainable-blocks", "4"], "leave none frozen"),
    ],
)
def test_a_cache_that_cannot_work_is_refused(easy_h5, tmp_path, capsys, flags, message):
    err = one_line_error(capsys, cli(easy_h5, tmp_path / "run", *flags))
    assert message in err
    assert not (tmp_path / "run" / "config.json").exists()  # a retry with other flags is not blocked


def test_a_tower_that_cannot_split_is_refused(easy_h5, tmp_path, capsys):
    flags = ["--backbone", "packaged-effnet", "--image-size", "32", "--feature-cache-views", "2"]
    err = one_line_error(capsys, [*cli(easy_h5, tmp_path / "run"), *flags])
    assert "packaged-effnet backbone's image tower cannot be split" in err
    assert not (tmp_path / "run" / "config.json").exists()


def test_a_cache_over_the_memory_limit_is_refused(easy_h5, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(fc, "FEATURE_CACHE_LIMIT_GIB", 1e-4)
    err = one_line_error(capsys, cli(easy_h5, tmp_path / "run", "--feature-cache-views", "2"))
    assert "GiB limit" in err and not (tmp_path / "run" / "config.json").exists()


def test_the_benchmark_gives_the_cache_to_the_methods_that_train_on_galaxies(easy_h5, tmp_path, capsys):
    from galaxalign.jobs.config import BenchmarkConfig
    from galaxalign.jobs.config import _benchmark_base as base

    config = BenchmarkConfig(
        data=str(easy_h5), out=str(tmp_path), train=base().for_method("clip", feature_cache_views=4)
    )
    assert config.train.for_method("supervised").feature_cache_views == 4
    assert config.train.for_method("zero-label").feature_cache_views == 0
    bench = ["benchmark", "--data", str(easy_h5), "--out", str(tmp_path / "b"), "--feature-cache-views", "2"]
    assert "none of them trains on galaxy images" in one_line_error(capsys, [*bench, "--methods", "zero-label"])
    semi = [*bench[:-1], "1", "--methods", "clip,clip-semi"]
    assert "at least 2 views for clip-semi" in one_line_error(capsys, semi)
