"""What trains and how fast: optimiser parameter groups and the learning-rate schedule.

Only the top blocks of each tower train (`trainable_blocks`), each block below the top at a
learning rate `layer_decay` times the one above it; projections, the classifier and the
temperature train at `head_lr` without weight decay. Inside the towers, as in open_clip and
timm, weight decay skips what it would only shrink towards zero for no regularising gain:
norm gains, biases (every tensor of one dimension), token, position and class embeddings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from galaxalign.models.model import GalaxAlignModel
from galaxalign.run_config import TrainConfig

# Bare embedding tensors by name (DINOv2, timm, open_clip, HF CLIP); nn.Embedding weights are found by type.
EMBEDDING_NAMES = frozenset(
    {"cls_token", "mask_token", "register_tokens", "class_embedding", "positional_embedding", "position_embeddings"}
)
NO_DECAY = "no_decay"  # suffix of the name of a block's group that is not weight-decayed


def no_decay_ids(model: nn.Module) -> set[int]:
    """ids of the parameters exempt from weight decay: 1-d tensors (norm gains, biases, the
    temperature's scalar), embedding tables, bare embedding tensors and `logit_scale`."""
    exempt = {
        id(p)
        for name, p in model.named_parameters(remove_duplicate=False)
        if p.ndim <= 1 or name.rsplit(".", 1)[-1] in EMBEDDING_NAMES | {"logit_scale"}
    }
    for module in model.modules():
        if isinstance(module, nn.Embedding):
            exempt.add(id(module.weight))
    return exempt


def _tower_groups(
    blocks: list[nn.Module], trainable_blocks: int, lr: float, layer_decay: float, tag: str, exempt: set[int]
) -> list[dict]:
    """Freeze all but the top `trainable_blocks` blocks; give each trained block a decayed lr,
    in two groups: its weight-decayed parameters, and those in `exempt` at weight decay 0."""
    for block in blocks:
        block.requires_grad_(False)
    chosen = blocks if trainable_blocks == -1 else blocks[len(blocks) - trainable_blocks :] if trainable_blocks else []
    groups = []
    for depth_from_top, block in enumerate(reversed(chosen)):
        block.requires_grad_(True)
        params = [p for p in block.parameters() if p.requires_grad]
        base = {"base_lr": lr * layer_decay**depth_from_top, "name": f"{tag}{depth_from_top}"}
        decayed = [p for p in params if id(p) not in exempt]
        if decayed:
            groups.append({"params": decayed, **base})
        if len(decayed) < len(params):
            kept = [p for p in params if id(p) in exempt]
            groups.append({"params": kept, **base, "name": f"{base['name']}.{NO_DECAY}", "weight_decay": 0.0})
    return groups


def _symbol_blocks(model: GalaxAlignModel) -> list[nn.Module]:
    """The symbol encoder's blocks, matched by position to the image encoder's."""
    assert model.symbol_encoder is not None, "the symbol encoder exists from stage 2 on"
    image_modules = dict(model.image_encoder.named_modules())
    symbol_modules = dict(model.symbol_encoder.named_modules())
    names = {id(module): name for name, module in image_modules.items()}
    return [symbol_modules[names[id(block)]] for block in model.backbone.image_blocks()]


def parameter_groups(model: GalaxAlignModel, config: TrainConfig) -> list[dict]:
    """Optimiser groups: decayed backbone blocks, then heads and temperature at head_lr."""
    backbone, exempt, lr, decay = model.backbone, no_decay_ids(model), config.lr, config.layer_decay
    groups = _tower_groups(backbone.image_blocks(), config.image_blocks, lr, decay, "image", exempt)
    if config.uses_text:
        groups += _tower_groups(backbone.text_blocks(), config.text_blocks, lr, decay, "text", exempt)
    else:
        model.text_encoder.requires_grad_(False)
    if model.symbol_encoder is not None:
        groups += _tower_groups(_symbol_blocks(model), config.image_blocks, lr, decay, "symbol", exempt)
    heads = [model.logit_scale]
    for head in (model.image_projection, model.text_projection, model.symbol_projection, model.classifier):
        if head is not None:
            head.requires_grad_(True)
            heads += list(head.parameters())
    if not config.uses_text:
        model.text_projection.requires_grad_(False)
        model.logit_scale.requires_grad_(False)
        heads = [p for p in heads if p.requires_grad]
    groups.append({"params": heads, "base_lr": config.head_lr, "name": "heads", "weight_decay": 0.0})
    return groups


def make_optimizer(model: GalaxAlignModel, config: TrainConfig) -> torch.optim.Optimizer:
    return torch.optim.AdamW(parameter_groups(model, config), lr=config.lr, weight_decay=config.weight_decay)


@dataclass(frozen=True)
class Schedule:
    """Warm-up, then cosine decay, once per stage: each stage gets its own budget of steps.

    One schedule over both stages left stage 2 (a new symbol encoder, a new optimiser) starting
    near the end of the decay, at a fraction of the peak rate, so it hardly trained.
    """

    stage_steps: tuple[int, ...]  # optimiser steps of each stage, in order
    warmup_fraction: float

    def factor(self, step: int) -> float:
        start = 0
        for i, steps in enumerate(self.stage_steps):
            if step < start + steps or i == len(self.stage_steps) - 1:
                return lr_factor(step - start, steps, int(self.warmup_fraction * steps))
            start += steps
        return 0.0


def lr_factor(step: int, total: int, warmup: int) -> float:
    """Linear warm-up, then cosine decay to zero."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def set_learning_rates(optimizer: torch.optim.Optimizer, factor: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = group["base_lr"] * factor
