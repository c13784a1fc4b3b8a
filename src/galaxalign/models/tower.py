"""The interface every image or text tower implements, in a module of its own.

Kept apart from the backbone registry so that tower implementations (EfficientNet, the
transformers wrappers) and the registry that builds them can both import it without importing
each other.
"""

from __future__ import annotations

import torch
from torch import nn


class Tower(nn.Module):
    """An image or text tower: a module that can list its blocks from input to output.

    An image tower may also run in two parts, split after its first `start` blocks
    (`forward_below`, then `forward_above`), so that a frozen lower part can be computed once and
    kept (training.feature_cache); a tower that cannot is not `splittable`.
    """

    def blocks(self) -> list[nn.Module]:
        raise NotImplementedError

    @property
    def splittable(self) -> bool:
        return type(self).forward_below is not Tower.forward_below

    def forward_below(self, pixels: torch.Tensor, start: int) -> torch.Tensor:
        """The activations after the first `start` blocks (1 <= start <= len(blocks()))."""
        raise NotImplementedError(f"{type(self).__name__} cannot be split between its blocks")

    def forward_above(self, hidden: torch.Tensor, start: int) -> torch.Tensor:
        """The tower's output from `forward_below(pixels, start)`: the blocks from `start` on."""
        raise NotImplementedError(f"{type(self).__name__} cannot be split between its blocks")
