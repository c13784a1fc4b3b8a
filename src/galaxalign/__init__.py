"""GalaxAlign: align galaxy images, schematic symbols and text labels in one embedding space."""

__version__ = "0.1.0"

from galaxalign.errors import GalaxAlignError  # noqa: E402
from galaxalign.taxonomy import load_scheme  # noqa: E402

__all__ = ["GalaxAlignError", "load_scheme", "__version__"]
