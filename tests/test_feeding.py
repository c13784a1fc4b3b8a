"""Keeping an accelerator fed, checked on CPU: a training step makes the host wait for the device
only where it must (syncs counted at the dispatcher, so a real step on CPU counts what a GPU step
would do), every host-to-device copy of a batch is asynchronous, and an epoch's batches are
planned as the loader asks for them, identical to planning them all first."""

from __future__ import annotations

import traceback
from collections import Counter
from pathlib import Path

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from conftest import tiny
from galaxalign.devices import autocast
from galaxalign.training import trainer as trainer_module
from galaxalign.training.batches import BatchBuilder, epoch_order
from galaxalign.training.trainer import Trainer

aten = torch.ops.aten
# Ops whose result the host needs before it can go on: on a GPU each waits for every kernel queued
# before it. `_local_scalar_dense` is `.item()`, `float()`, `int()` and `bool()` of a tensor.
SYNCING = {
    aten._local_scalar_dense.default,
    aten.nonzero.default,
    aten._unique2.default,
    aten.unique_dim.default,
    aten.unique_consecutive.default,
    aten.masked_select.default,
    aten.equal.default,
    aten.is_nonzero.default,
}


class SyncCounter(TorchDispatchMode):
    """Counts syncing ops (and boolean-mask indexing) by the file that asked for them."""

    def __init__(self):
        super().__init__()
        self.by_caller: Counter[str] = Counter()
        self.text_forwards = 0  # text-tower forwards in the counted step

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        masked = func is aten.index.Tensor and any(i is not None and i.dtype == torch.bool for i in args[1])
        if func in SYNCING or masked:
            self.by_caller[_caller()] += 1
        return func(*args, **kwargs)

    def galaxalign(self) -> Counter[str]:
        return Counter({k: v for k, v in self.by_caller.items() if k.startswith("galaxalign/")})


def _caller() -> str:
    """The innermost frame that asked, as 'package/.../file.py': torch's own wrappers (torch.unique,
    Tensor methods, dispatch) are skipped, its optimisers and DataLoader are not."""
    for frame in reversed(traceback.extract_stack()[:-2]):
        parts = Path(frame.filename).parts
        root = next((i for i, part in enumerate(parts) if part in ("galaxalign", "torch", "transformers")), None)
        if root is None or "tests" in parts:
            continue
        where = "/".join(parts[root:])
        if not where.startswith("torch/") or where.startswith(("torch/optim/", "torch/utils/data/")):
            return where
    return "?"


def one_step(trainer: Trainer, batches) -> SyncCounter:
    """The loop body of `Trainer.fit` for one batch: assemble it, forward, backward, optimiser
    step, and queue its loss record, as fit does between logging intervals."""
    counter = SyncCounter()
    encode_text = trainer.model.encode_text

    def counted(*args, **kwargs):
        counter.text_forwards += 1
        return encode_text(*args, **kwargs)

    trainer.model.encode_text = counted  # type: ignore[method-assign]  # the real text tower, counted
    with counter:
        index, batch = next(batches)
        with autocast(trainer.device, enabled=trainer.config.bf16):
            loss, parts = trainer.objective(batch)
        loss.backward()
        trainer._step()
        trainer._pending.append(({"step": index}, loss.detach(), parts, {}))
    del trainer.model.encode_text
    return counter


@pytest.mark.parametrize(
    "method, overrides",
    [
        ("supervised", {}),
        ("clip", {}),
        ("clip", {"targets": "classes"}),
        ("clip", {"targets": "multi"}),
        ("galaxalign", {"epochs": 2, "stage1_fraction": 0.5}),  # stage 2: a separate symbol encoder
        ("zero-label", {}),
        ("clip", {"unlabelled_weight": 1.0, "label_fraction": 0.5, "pseudo_threshold": 0.01}),  # pseudo-labels
    ],
)
def test_a_training_step_does_not_wait_for_the_device(easy_h5, tmp_path, method, overrides):
    config = tiny(easy_h5, tmp_path / "run", method=method, **{"epochs": 1, **overrides})
    trainer = Trainer(config, resume=False)
    epoch = 1 if method == "galaxalign" else 0
    if epoch:
        trainer._enter_stage2()
    trainer._pending = []
    order = epoch_order(trainer.train_labels, config.batch_size, config.seed, epoch, config.balanced)
    batches = trainer._epoch_batches(epoch, order, range(trainer.batches_per_epoch))
    counts = [one_step(trainer, batches) for _ in range(2)]  # the second: nothing left to warm up
    for counter in counts:
        assert counter.galaxalign() == Counter(), counter.by_caller
        # Host reads that wait for nothing: AdamW (not fused, not capturable) keeps its step
        # counts on the host, and a DataLoader draws its base seed on the host when an epoch's
        # loader starts (the first batch). transformers checks once per text-tower forward
        # whether the padding mask can be dropped (`padding_mask.all()`, a real sync).
        others = {k: v for k, v in counter.by_caller.items() if not k.startswith("galaxalign/")}
        host = ("torch/optim/", "torch/utils/data/")
        assert {k for k in others if not k.startswith(host)} <= {"transformers/masking_utils.py"}, others
        assert others.get("transformers/masking_utils.py", 0) <= counter.text_forwards
    assert len(trainer._pending) == 2  # the losses wait, on the device, for the logging interval


def test_losses_are_read_once_per_logging_interval(easy_h5, tmp_path, monkeypatch):
    monkeypatch.setattr(trainer_module, "FLUSH_EVERY", 3)
    config = tiny(easy_h5, tmp_path / "run", method="clip", epochs=1, batch_size=8)
    trainer = Trainer(config, resume=False)
    reads: list[int] = []
    flush = trainer._flush
    monkeypatch.setattr(trainer, "_flush", lambda: (reads.append(len(trainer._pending)), flush()))
    trainer.fit()
    records = [r for r in trainer.log.path.read_text().splitlines() if '"loss"' in r]
    assert len(records) == trainer.batches_per_epoch == sum(reads)
    assert max(reads) == 3  # batches wait until three are queued, then one read writes them all


def test_every_host_to_device_copy_of_a_batch_is_asynchronous(easy_h5, tmp_path):
    """On the meta device (no GPU needed) every copy from the host is visible to the dispatcher
    with its `non_blocking` flag; a blocking one would stall the host at every step."""
    config = tiny(easy_h5, tmp_path / "run", method="galaxalign", epochs=1)
    trainer = Trainer(config, resume=False)
    builder: BatchBuilder = trainer.builder
    order = epoch_order(trainer.train_labels, config.batch_size, config.seed, 0, config.balanced)
    plan = builder.plan(0, order, range(config.batch_size))
    images = torch.stack(builder.read(plan))
    meta = torch.device("meta")
    builder.assemble(plan, images, meta)  # per-device constants (normalisation) are made once

    class Copies(TorchDispatchMode):
        blocking: list[str] = []
        asynchronous = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            if func in (aten._to_copy.default, aten.copy_.default) and kwargs.get("device") == meta:
                if kwargs.get("non_blocking"):
                    Copies.asynchronous += 1
                else:
                    Copies.blocking.append(_caller())
            return func(*args, **kwargs)

    with Copies():
        batch = builder.assemble(plan, images, meta)
    assert Copies.blocking == [] and Copies.asynchronous >= 2  # the batch's integers, its pixels, ...
    assert batch.labels.device == batch.pixels.device == batch.distinct["text_rows"][0].device == meta


@pytest.mark.parametrize("workers", [0, 2])
def test_batches_are_planned_as_the_loader_asks_and_match_planning_first(easy_h5, tmp_path, monkeypatch, workers):
    config = tiny(easy_h5, tmp_path / "run", method="galaxalign", epochs=1, batch_size=4, workers=workers)
    trainer = Trainer(config, resume=False)
    builder: BatchBuilder = trainer.builder
    order = epoch_order(trainer.train_labels, config.batch_size, config.seed, 0, config.balanced)
    steps = trainer.batches_per_epoch
    assert steps >= 8
    eager = []
    for i in range(steps):
        plan = builder.plan(0, order, range(i * 4, i * 4 + 4))
        eager.append(builder.assemble(plan, torch.stack(builder.read(plan))))

    planned = []
    plan_one = builder.plan
    monkeypatch.setattr(builder, "plan", lambda *args: (planned.append(args[2].start), plan_one(*args))[1])
    batches = trainer._epoch_batches(0, order, range(steps))
    _, first = next(batches)
    # workers 0: this batch alone; 2 workers: the loader's read-ahead (2 batches per worker)
    assert len(planned) <= (1 if workers == 0 else 1 + 2 * 2) < steps, planned
    lazy = [first, *(batch for _, batch in batches)]
    assert planned == [i * 4 for i in range(steps)] and len(lazy) == steps
    for a, b in zip(eager, lazy):
        assert torch.equal(a.pixels, b.pixels) and torch.equal(a.labels, b.labels)
        assert torch.equal(a.text_rows, b.text_rows) and torch.equal(a.symbol_rows, b.symbol_rows)
        for name in ("text_rows", "symbol_rows"):
            rows, (unique, inverse) = getattr(b, name), b.distinct[name]
            expected = torch.unique(rows, return_inverse=True)  # what the device used to find
            assert torch.equal(unique, expected[0]) and torch.equal(inverse, expected[1])


def test_index_thumbnails_made_on_the_device_match_pil():
    """On a GPU the index's thumbnails are resized there (the model input already is, since
    3a0c69b); they must agree with the CPU's PIL thumbnails within one level of 255."""
    import numpy as np

    from conftest import easy_image
    from galaxalign.search.index import THUMBNAIL_SIZE, thumbnails_of

    rng = np.random.default_rng(0)
    same = [easy_image(c, rng, size=256) for c in (2, 8, 1, 2)]
    mixed = [easy_image(2, rng, size=48), rng.integers(0, 256, (120, 90, 3), dtype=np.uint8), same[0]]
    for images in (same, mixed):
        pil = thumbnails_of(images, "cpu", on_device=False)
        device = thumbnails_of(images, "cpu", on_device=True)
        assert pil.shape == device.shape == (len(images), THUMBNAIL_SIZE, THUMBNAIL_SIZE, 3)
        assert device.dtype == np.uint8
        assert np.abs(pil.astype(int) - device.astype(int)).max() <= 1
