"""The package version, stated once: a leaf every floor may import (the package's `__init__` is the top)."""

__version__ = "0.3.0"
