"""The loss of one batch, per method: a method's row in `METHODS` names its objective here.

`Objective` wraps the model so that DDP sees one forward that returns the loss; it holds the
text bank (tokenised class phrases) and the symbol bank on the training device, and encodes
each distinct text or symbol of a batch once.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from galaxalign.models.losses import contrastive_loss, gather_features
from galaxalign.models.model import GalaxAlignModel
from galaxalign.training.batches import Batch
from galaxalign.training.config import TrainConfig

Parts = dict[str, float]


class Objective(nn.Module):
    def __init__(self, model: GalaxAlignModel, config: TrainConfig, text_tokens: dict, symbols: torch.Tensor | None):
        super().__init__()
        self.model, self.config = model, config
        self.text_tokens = text_tokens
        self.symbols = symbols  # (C*V, 3, S, S), normalised
        self.loss_of = OBJECTIVES[config.spec.loss]

    def forward(self, batch: Batch) -> tuple[torch.Tensor, Parts]:
        return self.loss_of(self, batch)

    def encode_texts(self, rows: torch.Tensor) -> torch.Tensor:
        return _once_per_row(rows, lambda r: self.model.encode_text(self.text_tokens["input_ids"][r],
                                                                    self.text_tokens["attention_mask"][r]))

    def encode_symbols(self, rows: torch.Tensor) -> torch.Tensor:
        return _once_per_row(rows, lambda r: self.model.encode_symbol(self.symbols[r]))


def _once_per_row(rows: torch.Tensor, encode: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """Encode each distinct row once, then expand back to one row per sample."""
    unique, inverse = torch.unique(rows, return_inverse=True)
    return encode(unique)[inverse]


def cross_entropy(objective: Objective, batch: Batch) -> tuple[torch.Tensor, Parts]:
    """The supervised baseline: a linear head on the image features."""
    model = objective.model
    loss = F.cross_entropy(model.classify_features(model.image_features(batch.pixels)), batch.labels)
    return loss, {"ce": loss.item()}


def contrastive(objective: Objective, batch: Batch) -> tuple[torch.Tensor, Parts]:
    """InfoNCE between every aligned modality and text; in stage 2 also image-symbol."""
    model, config = objective.model, objective.config
    labels = gather_features(batch.labels) if config.targets == "multi" else None
    image = gather_features(model.encode_image(batch.pixels))
    text = gather_features(objective.encode_texts(batch.text_rows))
    parts = {"image_text": (config.w_image_text, contrastive_loss(image, text, model.logit_scale, labels))}
    if config.uses_symbols:
        symbol = gather_features(objective.encode_symbols(batch.symbol_rows))
        parts["symbol_text"] = (config.w_symbol_text, contrastive_loss(symbol, text, model.logit_scale, labels))
        if model.has_separate_symbol_encoder:
            parts["image_symbol"] = (config.w_image_symbol, contrastive_loss(image, symbol, model.logit_scale, labels))
    loss = sum(weight * value for weight, value in parts.values())
    return loss, {name: value.item() for name, (_, value) in parts.items()}


OBJECTIVES: dict[str, Callable[[Objective, Batch], tuple[torch.Tensor, Parts]]] = {
    "cross_entropy": cross_entropy,
    "contrastive": contrastive,
}
