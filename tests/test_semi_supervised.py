"""The semi-supervised variant (issue 24, section 4): training galaxies without labels, pseudo-
labelled by the class prototypes on one augmented view and learnt on another (FixMatch-style),
given to galaxalign and to clip the same way."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import tiny
from galaxalign.errors import GalaxAlignError
from galaxalign.training import train
from galaxalign.training.batches import epoch_order
from galaxalign.training.objectives import pseudo_labels
from galaxalign.training.trainer import Trainer


def test_flags_that_do_nothing_are_refused(easy_h5, tmp_path):
    with pytest.raises(GalaxAlignError, match="method supervised, which has no prototypes"):
        tiny(easy_h5, tmp_path / "a", method="supervised", unlabelled_weight=1.0, label_fraction=0.5)
    with pytest.raises(GalaxAlignError, match="at --label-fraction 1"):
        tiny(easy_h5, tmp_path / "b", method="clip", unlabelled_weight=1.0)
    with pytest.raises(GalaxAlignError, match="--pseudo-threshold does nothing"):
        tiny(easy_h5, tmp_path / "c", method="clip", pseudo_threshold=0.5)
    base = tiny(easy_h5, tmp_path / "d", method="clip", unlabelled_weight=1.0, label_fraction=0.5)
    assert base.for_method("supervised").unlabelled_weight == 0.0  # a job applies it where it can


def test_pseudo_labels_take_the_confident_prototype():
    prototypes = [torch.eye(3)]
    weak = F.normalize(torch.tensor([[0.1, 0.2, 1.0], [1.0, 0.99, 0.0]]), dim=1)
    labels, mask = pseudo_labels(weak, prototypes, torch.tensor(np.log(30.0)), threshold=0.9)
    assert labels.tolist() == [2, 0] and mask.tolist() == [1.0, 0.0]  # the second is torn between 0 and 1


@pytest.mark.parametrize("method", ["clip", "galaxalign"])
def test_unlabelled_galaxies_are_planned_and_learnt_from(easy_h5, tmp_path, method):
    config = tiny(easy_h5, tmp_path / "r", method=method, unlabelled_weight=1.0, label_fraction=0.5, epochs=2)
    trainer = Trainer(config, resume=False)
    labelled = set(trainer.data.train_indices.tolist())
    pool = set(trainer.data.split.train.tolist()) - labelled
    order = epoch_order(trainer.train_labels, 8, 0, 0, True)
    plan = trainer.builder.plan(0, order, range(8))
    assert plan.unlabelled and set(plan.unlabelled) <= pool  # training galaxies whose labels are not used
    assert trainer.builder.plan(0, order, range(8)).unlabelled == plan.unlabelled  # planned, seeded
    weak = torch.cat([p["angle"] for p in plan.weak_params])
    assert not torch.allclose(weak, torch.cat([p["angle"] for p in plan.strong_params]))  # two views
    batch = trainer.builder.assemble(plan, trainer.builder.read(plan))
    assert batch.pixels.shape[0] == 8 and batch.unlabelled_weak.shape == batch.unlabelled_strong.shape == (8, 3, 32, 32)
    objective = trainer.objective
    model = objective.model
    with torch.no_grad():  # every pseudo-label kept (threshold just above 0): the loss is their cross-entropy
        objective.config = replace(config, pseudo_threshold=1e-6)
        text = objective.class_text_prototypes()
        prototypes = [text]
        if config.uses_symbols:
            prototypes.append(F.normalize(model.encode_symbol(objective.symbols[:: config.symbol_variants]), dim=-1))
        weak_probs = torch.stack(
            [
                (model.logit_scale.exp() * model.encode_image(batch.unlabelled_weak) @ p.t()).softmax(1)
                for p in prototypes
            ]
        ).mean(0)
        strong = model.encode_image(batch.unlabelled_strong)
        expected = F.cross_entropy(model.logit_scale.exp() * strong @ text.t(), weak_probs.argmax(1)).item()
        assert objective.pseudo_label_loss(batch).item() == pytest.approx(expected, rel=1e-4)
    run_dir = train(replace(config, out=str(tmp_path / "trained")))
    steps = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert all("unlabelled" in r for r in steps if "loss" in r)
