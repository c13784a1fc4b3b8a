"""The interface every image or text tower implements, in a module of its own.

Kept apart from the backbone registry so that tower implementations (EfficientNet, the
transformers wrappers) and the registry that builds them can both import it without importing
each other.
"""

from __future__ import annotations

from torch import nn


class Tower(nn.Module):
    """An image or text tower: a module that can list its blocks from input to output."""

    def blocks(self) -> list[nn.Module]:
        raise NotImplementedError
