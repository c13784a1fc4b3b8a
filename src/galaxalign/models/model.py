"""The tri-modal GalaxAlign model: galaxy images, schematic symbols and text in one space.

The temperature starts at the backbone checkpoint's own learned `logit_scale` where it has one.
Stage 1: symbols go through the galaxy image encoder (shared weights and projection).
Stage 2: `split_symbol_encoder()` copies the stage-1 image encoder and projection into a symbol
encoder of its own, so the two visual domains can specialise while staying aligned.
A linear classifier head on the image features serves the `supervised` baseline.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from galaxalign.models.backbones import Backbone


class GalaxAlignModel(nn.Module):
    backbone: Backbone  # set with object.__setattr__: outside the module tree (see __init__)

    def __init__(self, backbone: Backbone, embed_dim: int = 256, num_classes: int = 0, init_temperature: float = 0.07):
        super().__init__()
        # Kept outside the module tree: its towers are registered below under their own names,
        # so every weight appears once in the state dict.
        object.__setattr__(self, "backbone", backbone)
        self.image_encoder = backbone.image_encoder
        self.text_encoder = backbone.text_encoder
        self.image_projection = _projection(getattr(backbone, "image_projection", None), backbone.image_dim, embed_dim)
        self.text_projection = _projection(getattr(backbone, "text_projection", None), backbone.text_dim, embed_dim)
        self.embed_dim = self.image_projection.out_features
        # A CLIP checkpoint's learned temperature (ln 100 for OpenAI's) is part of its alignment;
        # towers without one start at 1 / init_temperature.
        scale = backbone.logit_scale if backbone.logit_scale is not None else math.log(1.0 / init_temperature)
        self.logit_scale = nn.Parameter(torch.tensor(float(scale)))
        self.classifier = nn.Linear(backbone.image_dim, num_classes) if num_classes else None
        self.symbol_encoder: nn.Module | None = None
        self.symbol_projection: nn.Module | None = None

    @property
    def has_separate_symbol_encoder(self) -> bool:
        return self.symbol_encoder is not None

    def split_symbol_encoder(self) -> None:
        """Stage 2: the symbol encoder becomes an exact copy of the current image encoder."""
        if self.symbol_encoder is None:
            self.symbol_encoder = copy.deepcopy(self.image_encoder)
            self.symbol_projection = copy.deepcopy(self.image_projection)

    def image_features(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.image_encoder(pixels)

    def image_features_above(self, hidden: torch.Tensor, start: int) -> torch.Tensor:
        """Image features from the image tower's activations after its first `start` blocks (a
        feature cache's frozen lower part): the same features as `image_features` of those pixels."""
        return self.image_encoder.forward_above(hidden, start)

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.project_image(self.image_features(pixels))

    def project_image(self, features: torch.Tensor) -> torch.Tensor:
        """Image-tower features into the shared space (unit vectors)."""
        return F.normalize(self.image_projection(features), dim=-1)

    def encode_symbol(self, pixels: torch.Tensor) -> torch.Tensor:
        if self.symbol_encoder is None:
            return self.encode_image(pixels)
        assert self.symbol_projection is not None  # split_symbol_encoder sets both together
        return F.normalize(self.symbol_projection(self.symbol_encoder(pixels)), dim=-1)

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.text_projection(self.text_encoder(input_ids, attention_mask)), dim=-1)

    @torch.no_grad()
    def init_classifier(self, prototypes: torch.Tensor, feature_norm: float) -> None:
        """Start the head from class prototypes (C, D): its logits are then `logit_scale` times the
        prototype cosines, up to each image's projected-feature norm over `feature_norm`, so it
        predicts what the prototypes predict and fine-tuning starts from the aligned classifier."""
        if self.classifier is None:
            raise RuntimeError("this model has no classifier head")
        if feature_norm <= 0:
            raise ValueError(f"feature_norm must be positive, got {feature_norm}")
        scale = self.logit_scale.exp() / feature_norm
        weight = self.image_projection.weight.float()
        bias = self.image_projection.bias
        prototypes = prototypes.to(weight)
        self.classifier.weight.copy_(scale * prototypes @ weight)
        self.classifier.bias.copy_(
            scale * prototypes @ bias.float() if bias is not None else torch.zeros_like(self.classifier.bias)
        )

    def classify_features(self, features: torch.Tensor) -> torch.Tensor:
        if self.classifier is None:
            raise RuntimeError("this model has no classifier head")
        return self.classifier(features)


def _projection(pretrained: nn.Linear | None, in_dim: int, embed_dim: int) -> nn.Linear:
    """Reuse a backbone's aligned projection (CLIP kinds) or start a fresh linear one."""
    if pretrained is not None:
        return pretrained
    layer = nn.Linear(in_dim, embed_dim, bias=False)
    nn.init.normal_(layer.weight, std=in_dim**-0.5)
    return layer
