"""Optimiser groups: weight decay only where it regularises, as open_clip and timm apply it."""

from __future__ import annotations

import pytest
import torch

from clip_folder import write_tiny_clip
from conftest import tiny
from galaxalign.models import build_backbone
from galaxalign.models.model import GalaxAlignModel
from galaxalign.training.optim import make_optimizer

# What open_clip and timm keep out of weight decay, spelled as these towers name it: norm gains
# and biases, token/position/class embeddings (DINOv2 and BERT spellings, HF CLIP's), logit_scale.
EXEMPT_PIECES = (
    ".bias",
    "norm",
    "layrnorm",
    "LayerNorm",
    "layer_scale",
    "cls_token",
    "mask_token",
    "class_embedding",
    "position_embedding",
    "token_embedding",
    "word_embeddings",
    "token_type_embeddings",
    "logit_scale",
)


def decay_of_each_parameter(model, config) -> dict[str, float]:
    optimizer = make_optimizer(model, config)
    by_id = {id(p): group["weight_decay"] for group in optimizer.param_groups for p in group["params"]}
    return {name: by_id[id(p)] for name, p in model.named_parameters() if id(p) in by_id}


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clip") / "clip"
    write_tiny_clip(folder)
    return folder


@pytest.mark.parametrize("backbone", ["packaged", "tiny", "hf"])
def test_weight_decay_skips_norms_biases_embeddings_and_logit_scale(backbone, clip_folder, tmp_path):
    spec = f"hf:{clip_folder}" if backbone == "hf" else backbone
    config = tiny(tmp_path / "data.h5", tmp_path / "run", backbone=spec, method="clip", weight_decay=0.05)
    model = GalaxAlignModel(build_backbone(spec), embed_dim=16)
    decay = decay_of_each_parameter(model, config)
    towers = {n: d for n, d in decay.items() if n.startswith(("image_encoder.", "text_encoder."))}
    assert len(towers) == sum(1 for n, p in model.named_parameters() if p.requires_grad and "encoder." in n)
    exempt = {n for n in towers if any(piece in n for piece in EXEMPT_PIECES)}
    assert exempt and len(exempt) < len(towers)
    assert {n: towers[n] for n in exempt} == dict.fromkeys(exempt, 0.0)
    assert {n: d for n, d in towers.items() if n not in exempt} == dict.fromkeys(set(towers) - exempt, 0.05)
    assert decay["logit_scale"] == 0.0
    # The matrices that do the work decay, the patch embedding's convolution among them.
    matrices = [n for n in towers if n not in exempt and model.get_parameter(n).ndim >= 2]
    assert any("patch_embedding" in n for n in matrices) and len(matrices) == len(set(towers) - exempt)


def test_each_no_decay_group_keeps_its_blocks_learning_rate(tmp_path):
    config = tiny(tmp_path / "d.h5", tmp_path / "r", trainable_blocks=2, lr=1.0, layer_decay=0.5, method="supervised")
    model = GalaxAlignModel(build_backbone("tiny"), embed_dim=16, num_classes=3)
    groups = make_optimizer(model, config).param_groups
    rates = {g["name"]: (g["base_lr"], g["weight_decay"]) for g in groups}
    # The top block is the final layernorm: only gains and biases, so only its no-decay group.
    assert "image0" not in rates and rates["image0.no_decay"] == (1.0, 0.0)
    assert rates["image1"] == (0.5, config.weight_decay) and rates["image1.no_decay"] == (0.5, 0.0)
    assert sum(len(g["params"]) for g in groups) == sum(1 for p in model.parameters() if p.requires_grad)
    assert all(isinstance(p, torch.nn.Parameter) for g in groups for p in g["params"])
