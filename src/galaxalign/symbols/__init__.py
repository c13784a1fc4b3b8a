"""Schematic galaxy symbols, drawn like the Galaxy Zoo icons volunteers click on.

`draw`: the vector primitives and the PNG/SVG emitters; `classes`: each class's family of seeded
variants, the gallery and the symbol files; `galaxy`: one galaxy's own symbol, drawn from its
Galaxy Zoo answers with each part as opaque as its answer is sure.
"""

from galaxalign.symbols.classes import SymbolSetConfig, symbol_family, symbol_gallery, write_symbol_set
from galaxalign.symbols.draw import Gradient, Primitive, render_symbol, symbol_geometry, symbol_svg
from galaxalign.symbols.galaxy import (
    apparent_radius,
    fitted_galaxy_symbols,
    galaxy_symbol_batch,
    galaxy_symbol_sheet,
    galaxy_symbol_spec,
    render_galaxy_symbol,
)

__all__ = [
    "Gradient",
    "Primitive",
    "SymbolSetConfig",
    "apparent_radius",
    "fitted_galaxy_symbols",
    "galaxy_symbol_batch",
    "galaxy_symbol_sheet",
    "galaxy_symbol_spec",
    "render_galaxy_symbol",
    "render_symbol",
    "symbol_family",
    "symbol_gallery",
    "symbol_geometry",
    "symbol_svg",
    "write_symbol_set",
]
