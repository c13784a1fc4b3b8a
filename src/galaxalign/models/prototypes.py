"""Class prototypes in the shared space, and class scores from them.

A class's text prototype is the mean embedding of its label and descriptions; its symbol
prototype the mean embedding of its symbol family. An image is scored by cosine similarity to
the prototypes (zero-shot style), by their fusion, or by the linear head where a model has one.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from galaxalign.models.model import GalaxAlignModel
from galaxalign.symbols import symbol_family
from galaxalign.symbols.textures import class_textures
from galaxalign.taxonomy import Scheme

SCORING_MODES = ("head", "text", "symbol", "fusion")


def symbol_pixels(scheme: Scheme, variants: int, size: int, seed: int = 0) -> torch.Tensor:
    """Every class's symbol family as a float tensor (C, V, 3, size, size) in [0, 1]."""
    per_class = []
    for spec in scheme:
        images = symbol_family(spec, variants, size=size, seed=seed)
        per_class.append(np.stack([np.asarray(im.convert("RGB")) for im in images]))
    return torch.from_numpy(np.stack(per_class)).permute(0, 1, 4, 2, 3).float().div(255.0)


def class_symbol_bank(scheme: Scheme, variants: int, size: int, seed: int = 0, source: str = "drawn") -> torch.Tensor:
    """The class symbols a run trains on and scores by, (C, V, 3, size, size) in [0, 1]: the drawn
    families, or under `source="texture"` class-specific random textures in their place."""
    drawn = symbol_pixels(scheme, variants, size, seed=seed)
    if source != "texture":
        return drawn
    return torch.from_numpy(class_textures(drawn.numpy(), seed=seed))


def class_texts(scheme: Scheme) -> tuple[list[str], torch.Tensor]:
    """All class phrases flattened, with the class index of each."""
    texts, owners = [], []
    for spec in scheme:
        texts.extend(spec.texts)
        owners.extend([spec.id] * len(spec.texts))
    return texts, torch.tensor(owners)


def _mean_by_class(embeddings: torch.Tensor, owners: torch.Tensor, n_classes: int) -> torch.Tensor:
    embeddings = embeddings.float()
    sums = torch.zeros(n_classes, embeddings.shape[1], device=embeddings.device)
    return F.normalize(sums.index_add_(0, owners.to(embeddings.device), embeddings), dim=-1)


def _device(model: GalaxAlignModel) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def text_prototypes(model: GalaxAlignModel, scheme: Scheme) -> torch.Tensor:
    texts, owners = class_texts(scheme)
    tokens = model.backbone.tokenize(texts)
    device = _device(model)
    embeddings = model.encode_text(tokens["input_ids"].to(device), tokens["attention_mask"].to(device))
    return _mean_by_class(embeddings, owners, len(scheme))


@torch.no_grad()
def symbol_prototypes(model: GalaxAlignModel, symbols01: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    n_classes, variants = symbols01.shape[:2]
    flat = symbols01.flatten(0, 1)
    device = _device(model)
    embeddings = torch.cat(
        [
            model.encode_symbol(model.backbone.normalize(flat[i : i + batch_size].to(device)))
            for i in range(0, len(flat), batch_size)
        ]
    )
    owners = torch.arange(n_classes).repeat_interleave(variants)
    return _mean_by_class(embeddings, owners, n_classes)


FUSION_WEIGHTS = (0.25, 0.5, 0.75)  # the text share tried on validation (0 and 1 are symbol and text)


def standardise(logits: torch.Tensor) -> torch.Tensor:
    """Each row centred and scaled over the classes: scores of different modes on one footing."""
    return (logits - logits.mean(dim=1, keepdim=True)) / logits.std(dim=1, keepdim=True).clamp_min(1e-6)


class ClassScorer:
    """Class logits of embedded images with one of SCORING_MODES (the head acts on image features, in Run).

    Fusion mixes the standardised text and symbol scores, `fusion_weight` of text: image-text and
    image-symbol cosines have different offsets and spreads, so adding raw prototypes (or raw
    scores) would let one mode drown the other. The weight is chosen on validation by the trainer.
    """

    def __init__(
        self,
        model: GalaxAlignModel,
        scheme: Scheme,
        mode: str,
        symbols01: torch.Tensor | None = None,
        fusion_weight: float = 0.5,
    ):
        if mode not in SCORING_MODES:
            raise ValueError(f"scoring mode must be one of {SCORING_MODES}")
        if mode == "head" and model.classifier is None:
            raise ValueError("this run has no classifier head; use text, symbol or fusion scoring")
        if not 0.0 <= fusion_weight <= 1.0:
            raise ValueError(f"fusion weight must be in [0, 1], got {fusion_weight}")
        self.model, self.mode, self.fusion_weight = model, mode, fusion_weight
        self.text: torch.Tensor | None = text_prototypes(model, scheme) if mode in ("text", "fusion") else None
        self.symbol: torch.Tensor | None = None
        if mode in ("symbol", "fusion"):
            if symbols01 is None:
                raise ValueError(f"{mode} scoring needs the symbol family")
            self.symbol = symbol_prototypes(model, symbols01)

    def prototypes(self) -> torch.Tensor:
        """(C, D): the class vectors whose cosines this scorer ranks by (for a fusion, the same mix
        of the text and symbol prototypes: its linear stand-in), to start a linear head from."""
        if self.text is not None and self.symbol is not None:
            return self.fusion_weight * self.text + (1.0 - self.fusion_weight) * self.symbol
        prototypes = self.text if self.text is not None else self.symbol
        if prototypes is None:
            raise ValueError("head scoring has no prototypes")
        return prototypes

    @torch.no_grad()
    def logits_from_embeddings(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Prototype scores of already-embedded images (no second pass through the encoder)."""
        if self.mode == "head":
            raise ValueError("head scoring needs image features, not embeddings")
        scale = self.model.logit_scale.exp()
        embeddings = embeddings.float()
        text = None if self.text is None else embeddings @ self.text.t()
        symbol = None if self.symbol is None else embeddings @ self.symbol.t()
        if text is not None and symbol is not None:  # fusion (the only mode with both)
            return fuse(text, symbol, self.fusion_weight)
        scores = text if text is not None else symbol
        assert scores is not None, "a prototype mode has prototypes"
        return scale * scores


def fuse(text_scores: torch.Tensor, symbol_scores: torch.Tensor, weight: float) -> torch.Tensor:
    """`weight` of the standardised text scores plus the rest of the standardised symbol scores."""
    return weight * standardise(text_scores) + (1.0 - weight) * standardise(symbol_scores)
