"""A faster training path for short studies on CPUs: the frozen lower image blocks run once.

With `feature_cache_views` V > 0, every training galaxy the run reads (the labelled ones, and a
semi-supervised run's unlabelled ones) gets V fixed augmented views before training, each drawn
with the run's own galaxy augmentation from a generator seeded by (run seed, galaxy index, view).
Each view goes once through the part of the image tower below its trained blocks (in eval mode,
without gradients, under the training autocast) and its activations are kept in RAM, in the
dtype that part returns, so the trained blocks see exactly what the full tower would compute on
that view. Each step then takes one of its galaxy's V views (a seeded choice; BatchBuilder.plan),
or two different ones for an unlabelled galaxy's weak and strong views, and runs only the trained
blocks.

This is a different augmentation protocol, not a speed-up of the same one: training sees V fixed
views per galaxy instead of a fresh one at every step. A study must use it for every arm alike.
Symbols, validation and everything else that goes through the image tower keep the full path.
The frozen blocks never change (they are outside the optimiser and have no dropout in the
packaged and tiny towers), so the cache stays valid through both stages and is rebuilt, the same,
on a resume.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from galaxalign.data import GalaxyAugment
from galaxalign.data.augment import to_device
from galaxalign.devices import autocast
from galaxalign.errors import GalaxAlignError
from galaxalign.models.model import GalaxAlignModel
from galaxalign.run_config import TrainConfig

# The most RAM the cached activations may take; a run that needs more is refused before building.
FEATURE_CACHE_LIMIT_GIB = 8.0
CHUNK_VIEWS = 64  # views pushed through the lower blocks per forward while building
_VIEW_SALT, _CHOICE_SALT = 0x71E3, 0xCAC4E

log = logging.getLogger(__name__)


class ViewSource(Protocol):
    """What the cache takes from the run's BatchBuilder (named here: the builder holds the cache)."""

    indices: np.ndarray  # the labelled training galaxies (dataset indices)
    unlabelled: np.ndarray | None  # semi-supervised: the training galaxies without labels
    augment: GalaxyAugment  # the run's galaxy augmentation

    def image(self, index: int) -> torch.Tensor: ...

    def augmented(
        self, images: list[torch.Tensor], params: list[dict[str, torch.Tensor]], device: torch.device
    ) -> torch.Tensor: ...


def view_params(builder: ViewSource, seed: int, index: int, view: int) -> dict[str, torch.Tensor]:
    """The augmentation of galaxy `index`'s view `view`: the run's galaxy augmentation, seeded."""
    rng = np.random.default_rng([seed, index, view, _VIEW_SALT])
    return builder.augment.sample_params(1, torch.Generator().manual_seed(int(rng.integers(2**62))))


@dataclass
class FeatureCache:
    """The cached views: row `slot * views + view` holds galaxy `indices[slot]`'s view `view`."""

    start: int  # image-tower blocks below the cached activations (the frozen ones)
    views: int
    slots: dict[int, int]  # dataset index -> its slot
    params: list[dict[str, torch.Tensor]]  # each row's augmentation (what the uncached path would apply)
    hidden: torch.Tensor  # (rows, tokens, width), on the host
    seconds: float = 0.0

    def choice(self, seed: int, epoch: int, position: int) -> int:
        """Which of its galaxy's views the sample at `position` of `epoch` takes (a generator of its
        own, so every other choice of the batch plan is the one the uncached run makes)."""
        return int(np.random.default_rng([seed, epoch, position, _CHOICE_SALT]).integers(self.views))

    def pair(self, seed: int, epoch: int, position: int) -> tuple[int, int]:
        """Two different views of an unlabelled galaxy: the one that pseudo-labels it, and the one
        that learns from that label (FixMatch's weak and strong views)."""
        rng = np.random.default_rng([seed, epoch, position, _CHOICE_SALT, 0x0A11])
        weak, strong = rng.choice(self.views, size=2, replace=False)
        return int(weak), int(strong)

    def row(self, index: int, view: int) -> int:
        return self.slots[index] * self.views + view

    def take(self, rows: list[int], device: torch.device) -> torch.Tensor:
        return to_device(self.hidden[torch.as_tensor(rows)], device)

    @property
    def mib(self) -> float:
        return self.hidden.numel() * self.hidden.element_size() / 2**20

    def record(self) -> dict:
        """Its line in metrics.jsonl (and the log): what was cached, its memory and build time."""
        return {
            "feature_cache": {
                "views": self.views,
                "galaxies": len(self.slots),
                "frozen_blocks": self.start,
                "dtype": str(self.hidden.dtype).removeprefix("torch."),
                "mib": round(self.mib, 1),
                "seconds": round(self.seconds, 1),
            }
        }


def cache_start(model: GalaxAlignModel, config: TrainConfig) -> int:
    """The image-tower blocks below the trained ones, after checking that the cache can hold them."""
    tower, name = model.image_encoder, config.backbone
    if not getattr(tower, "splittable", False):
        raise GalaxAlignError(
            f"config: --feature-cache-views: the {name} backbone's image tower cannot be split between its blocks"
        )
    blocks = len(tower.blocks())
    start = blocks - config.image_blocks if config.image_blocks else blocks
    if start < 1:
        raise GalaxAlignError(
            f"config: --feature-cache-views: {config.image_blocks} trainable image blocks of the {name} "
            f"backbone's {blocks} leave none frozen to cache"
        )
    return start


def build_feature_cache(
    model: GalaxAlignModel, builder: ViewSource, config: TrainConfig, device: torch.device
) -> FeatureCache:
    """Every training galaxy's views (the labelled ones, then the unlabelled ones a semi-supervised
    run reads) through the frozen lower blocks, kept on the host; refused (before most of the work)
    when they would take more than FEATURE_CACHE_LIMIT_GIB."""
    start, views = cache_start(model, config), config.feature_cache_views
    unlabelled = [] if builder.unlabelled is None else [int(i) for i in builder.unlabelled]
    indices = [int(i) for i in builder.indices] + unlabelled
    params = [view_params(builder, config.seed, i, v) for i in indices for v in range(views)]
    began, hidden, was_training = time.perf_counter(), None, model.training
    model.eval()
    try:
        per_chunk = max(1, CHUNK_VIEWS // views)
        for first in range(0, len(indices), per_chunk):
            chunk = indices[first : first + per_chunk]
            rows = range(first * views, (first + len(chunk)) * views)
            images = [image for i in chunk for image in [builder.image(i)] * views]
            pixels = builder.augmented(images, [params[r] for r in rows], device)
            with torch.no_grad(), autocast(device, enabled=config.bf16 or device.type == "cuda"):
                out = model.image_encoder.forward_below(pixels, start).cpu()
            if hidden is None:
                hidden = _allocate(out, len(params), config)
            hidden[rows.start : rows.stop] = out
    finally:
        model.train(was_training)
    assert hidden is not None, "a run has labelled galaxies"
    cache = FeatureCache(start, views, {i: s for s, i in enumerate(indices)}, params, hidden)
    cache.seconds = time.perf_counter() - began
    log.info("feature cache: %s", cache.record()["feature_cache"])
    return cache


def _allocate(first: torch.Tensor, rows: int, config: TrainConfig) -> torch.Tensor:
    """The cache's tensor, shaped from the first chunk's activations, once its size is known to fit."""
    gib = rows * first[0].numel() * first.element_size() / 2**30
    if gib > FEATURE_CACHE_LIMIT_GIB:
        raise GalaxAlignError(
            f"config: --feature-cache-views {config.feature_cache_views} would keep {gib:.1f} GiB of activations "
            f"({rows} views), more than the {FEATURE_CACHE_LIMIT_GIB:g} GiB limit; use fewer views"
        )
    return torch.empty((rows, *first.shape[1:]), dtype=first.dtype)
