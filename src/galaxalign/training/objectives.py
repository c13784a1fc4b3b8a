"""The loss of one batch, per method: a method's row in `METHODS` names its objective here.

`Objective` wraps the model so that DDP sees one forward that returns the loss; it holds the
text bank (tokenised class phrases) and the symbol bank on the training device, and encodes
each distinct text or symbol of a batch once. Nothing here makes the host wait for the device
on one process: the distinct rows come with the batch (found on the host), and the loss parts
stay tensors until the trainer logs them. Under DDP the global batch's distinct texts are found
by torch.unique of the gathered rows (one sync per text loss).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from galaxalign.models.losses import contrastive_loss, distinct_text_loss, gather_features
from galaxalign.models.model import GalaxAlignModel
from galaxalign.run_config import TrainConfig
from galaxalign.training.batches import Batch

Parts = dict[str, torch.Tensor]  # detached scalars, on the device


class Objective(nn.Module):
    def __init__(
        self,
        model: GalaxAlignModel,
        config: TrainConfig,
        text_tokens: dict,
        symbols: torch.Tensor | None,
        text_owners: torch.Tensor,
        stage: int = 1,
    ):
        super().__init__()
        self.model, self.config = model, config
        self.text_tokens = text_tokens  # every class phrase (then, with per-galaxy captions, every caption)
        self.text_owners = text_owners  # class of each class phrase, on the device
        self.n_classes = int(text_owners.max()) + 1  # read once here, not at every step
        self.symbols = symbols  # (C*V, 3, S, S), normalised
        self.loss_of = OBJECTIVES[config.spec.loss_at(stage)]

    def forward(self, batch: Batch) -> tuple[torch.Tensor, Parts]:
        return self.loss_of(self, batch)

    def encode_texts(self, rows: torch.Tensor, once: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        return _once_per_row(
            rows,
            once,
            lambda r: self.model.encode_text(self.text_tokens["input_ids"][r], self.text_tokens["attention_mask"][r]),
        )

    def encode_symbols(self, batch: Batch) -> torch.Tensor:
        if batch.symbol_pixels is not None:  # each galaxy's own symbol
            return self.model.encode_symbol(batch.symbol_pixels)
        bank = self.symbols
        assert bank is not None, "a method that aligns symbols has the class symbol bank"
        once = batch.distinct_of(batch.symbol_rows)
        return _once_per_row(batch.symbol_rows, once, lambda r: self.model.encode_symbol(bank[r]))

    def pseudo_label_loss(self, batch: Batch) -> torch.Tensor:
        """FixMatch with class prototypes: each unlabelled galaxy's weak view is labelled by the
        text prototypes (and, for a method that trains symbols, by the prototypes of each class's
        canonical drawing too) without gradients; where that label is confident, its strong view
        learns it by cross-entropy against the text prototypes. Masked galaxies count as 0 in the
        mean, as in FixMatch."""
        model, scale = self.model, self.model.logit_scale
        with torch.no_grad():
            prototypes = [self.class_text_prototypes()]
            if self.config.uses_symbols and self.symbols is not None:
                drawings = self.symbols[:: self.config.symbol_variants]  # each class's first drawing
                prototypes.append(F.normalize(model.encode_symbol(drawings).float(), dim=-1))
            weak = model.project_image(unlabelled_features(model, batch, strong=False))
            labels, mask = pseudo_labels(weak.float(), prototypes, scale, self.config.pseudo_threshold)
        strong = model.project_image(unlabelled_features(model, batch, strong=True))
        logits = scale.exp() * strong @ prototypes[0].to(strong.dtype).t()
        return (F.cross_entropy(logits, labels, reduction="none") * mask).mean()

    def class_text_prototypes(self) -> torch.Tensor:
        """(C, D) mean embedding of each class's phrases, with gradients (class-level targets)."""
        n_classes = self.n_classes
        rows = torch.arange(len(self.text_owners), device=self.text_owners.device)
        embeddings = self.model.encode_text(
            self.text_tokens["input_ids"][rows], self.text_tokens["attention_mask"][rows]
        )
        sums = torch.zeros(n_classes, embeddings.shape[1], device=embeddings.device, dtype=embeddings.dtype)
        return F.normalize(sums.index_add(0, self.text_owners, embeddings), dim=-1)


def pseudo_labels(
    weak: torch.Tensor, prototypes: list[torch.Tensor], scale: torch.Tensor, threshold: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(class, mask) per unlabelled galaxy: the class of the mean of the prototypes' softmaxes
    (text, and symbols where the method has them), kept where that probability reaches `threshold`."""
    probabilities = torch.stack([(scale.exp() * weak @ p.t()).softmax(dim=1) for p in prototypes]).mean(dim=0)
    confidence, labels = probabilities.max(dim=1)
    return labels, (confidence >= threshold).to(weak.dtype)


def _once_per_row(
    rows: torch.Tensor,
    once: tuple[torch.Tensor, torch.Tensor] | None,
    encode: Callable[[torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    """Encode each distinct row once, then expand back to one row per sample. `once` is
    (distinct rows, inverse) when the batch brings them; else torch.unique finds them (a sync)."""
    unique, inverse = once if once is not None else torch.unique(rows, return_inverse=True)
    return encode(unique)[inverse]


def image_features(model: GalaxAlignModel, batch: Batch) -> torch.Tensor:
    """The batch's galaxy image features: from its pixels, or from its cached views' activations
    after the frozen lower blocks (training.feature_cache), through the trained blocks only."""
    if batch.image_hidden is not None:
        return model.image_features_above(batch.image_hidden, batch.image_start)
    assert batch.pixels is not None, "a method that trains on galaxy images has their pixels or cached views"
    return model.image_features(batch.pixels)


def unlabelled_features(model: GalaxAlignModel, batch: Batch, strong: bool) -> torch.Tensor:
    """The unlabelled galaxies' weak or strong view's image features, from pixels or the cache."""
    if batch.unlabelled_hidden is not None:
        return model.image_features_above(batch.unlabelled_hidden[int(strong)], batch.image_start)
    pixels = batch.unlabelled_strong if strong else batch.unlabelled_weak
    assert pixels is not None, "a semi-supervised batch has its unlabelled galaxies' views"
    return model.image_features(pixels)


def cross_entropy(objective: Objective, batch: Batch) -> tuple[torch.Tensor, Parts]:
    """The supervised baseline: a linear head on the image features."""
    model = objective.model
    loss = F.cross_entropy(model.classify_features(image_features(model, batch)), batch.labels)
    return loss, {"ce": loss.detach()}


def contrastive(objective: Objective, batch: Batch) -> tuple[torch.Tensor, Parts]:
    """InfoNCE between each aligned modality and text; in stage 2 also image-symbol.

    Targets: `onehot` (each sample's own partner, and every sample whose partner is the identical
    text: identical captions are positives of each other, not negatives), `multi` (every
    same-class pair in the global batch), or `classes` (cross-entropy of each image or symbol
    against all class text prototypes; image-symbol stays in-batch).

    Images are aligned with class phrases (what scoring uses); with per-galaxy symbols
    (`batch.caption_rows`) the symbol losses use each galaxy's own caption, and two galaxies with
    the same caption are each other's positives in image-symbol too.
    """
    model, config = objective.model, objective.config
    aligns = config.spec.aligns
    # The global batch's labels, for multi and classes targets (one-hot targets need none).
    labels = gather_features(batch.labels) if config.targets != "onehot" else batch.labels
    scale = model.logit_scale
    image = None
    if "image" in aligns:
        image = gather_features(model.project_image(image_features(model, batch)))
    symbol = gather_features(objective.encode_symbols(batch)) if "symbol" in aligns else None
    symbol_rows = batch.caption_rows if batch.caption_rows is not None else batch.text_rows
    if config.targets == "classes":
        prototypes = objective.class_text_prototypes()

        def with_text(x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
            return F.cross_entropy(scale.exp() * x @ prototypes.t(), labels)
    else:
        encoded: dict[int, torch.Tensor] = {}  # class phrases are encoded once for both losses

        def with_text(x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
            if id(rows) not in encoded:
                encoded[id(rows)] = gather_features(objective.encode_texts(rows, batch.distinct_of(rows)))
            if config.targets == "multi":
                return contrastive_loss(x, encoded[id(rows)], scale, labels)
            everyone = gather_features(rows)  # `rows` itself on one process: its distinct rows are known
            return distinct_text_loss(x, encoded[id(rows)], everyone, scale, batch.distinct_of(everyone))

    parts: dict[str, tuple[float, torch.Tensor]] = {}
    if image is not None:
        parts["image_text"] = (config.w_image_text, with_text(image, batch.text_rows))
    if symbol is not None:
        parts["symbol_text"] = (config.w_symbol_text, with_text(symbol, symbol_rows))
        if image is not None and model.has_separate_symbol_encoder:
            if config.targets == "multi":
                pairs = labels
            else:  # the same drawing (class symbols) or the same caption (per-galaxy symbols)
                pairs = gather_features(batch.caption_rows if batch.caption_rows is not None else batch.symbol_rows)
            parts["image_symbol"] = (config.w_image_symbol, contrastive_loss(image, symbol, scale, pairs))
    if batch.has_unlabelled and config.unlabelled_weight > 0:
        parts["unlabelled"] = (config.unlabelled_weight, objective.pseudo_label_loss(batch))
    loss = torch.stack([weight * value for weight, value in parts.values()]).sum()
    return loss, {name: value.detach() for name, (_, value) in parts.items()}


OBJECTIVES: dict[str, Callable[[Objective, Batch], tuple[torch.Tensor, Parts]]] = {
    "cross_entropy": cross_entropy,
    "contrastive": contrastive,
}
