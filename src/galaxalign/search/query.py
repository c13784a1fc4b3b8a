"""Queries against a galaxy index: by image, catalogue id, words, class symbol or hand sketch.

Every query becomes one vector in the run's shared space. Images go through the image encoder,
words through the text encoder, and symbols and sketches through the symbol encoder, which was
trained on light strokes on a black sky: a sketch is first converted to that look.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from galaxalign.config import option, required
from galaxalign.data import load_image
from galaxalign.devices import DEVICE_HELP, check_device_name
from galaxalign.errors import GalaxAlignError
from galaxalign.search.index import GalaxyIndex, Hit, check_run, normalise
from galaxalign.symbols import render_symbol

if TYPE_CHECKING:
    from galaxalign.runs import ImageLike, Run
    from galaxalign.taxonomy import ClassSpec

ImageInput = np.ndarray | str | os.PathLike
SKETCH_FILL = 0.85  # fraction of the side a sketch's drawing spans, as a symbol's body does
INK_LEVEL = 32  # grey level (of 255) above which a pixel counts as drawn


def sketch_to_symbol(image: np.ndarray) -> np.ndarray:
    """A drawing (H, W), (H, W, 3) or (H, W, 4) uint8 in the symbol palette: (S, S, 3) light grey on black.

    A light background is inverted (dark pen on paper); on a transparent canvas the opaque
    strokes are the ink. The background level is removed, contrast stretched to full scale, and
    the drawing's bounding box centred on a square black canvas with a margin like a symbol's.
    """
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] == 4 and (image[..., 3] < 255).any():
        grey = image[..., 3].astype(np.float32)
    else:
        grey = image.astype(np.float32) if image.ndim == 2 else image[..., :3].astype(np.float32).mean(axis=2)
        border = np.median(np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]]))
        if border > 127:
            grey = 255.0 - grey
    background = np.median(np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]]))
    grey = np.clip(grey - background, 0, None)
    peak = grey.max()
    if peak < INK_LEVEL:
        raise GalaxAlignError("sketch is blank (no strokes that differ from the background)")
    grey = grey * (255.0 / peak)
    rows, cols = np.nonzero(grey > INK_LEVEL)
    grey = grey[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    h, w = grey.shape
    side = int(np.ceil(max(h, w) / SKETCH_FILL))
    canvas = np.zeros((side, side), np.uint8)
    top, left = (side - h) // 2, (side - w) // 2
    canvas[top : top + h, left : left + w] = np.rint(grey).astype(np.uint8)
    return np.repeat(canvas[:, :, None], 3, axis=2)


def keep_alpha(source, rgb: np.ndarray) -> np.ndarray:
    """`rgb` decoded from `source` (a path or file object), or RGBA where the source has alpha:
    on a transparent canvas export the opaque strokes are the ink."""
    try:
        with Image.open(source) as im:
            if "A" in im.mode or "transparency" in im.info:
                return np.asarray(im.convert("RGBA"))
    except OSError:  # FITS and other formats PIL does not read carry no alpha
        pass
    return rgb


def read_sketch(path: str | os.PathLike) -> np.ndarray:
    """A sketch file as an array, keeping its alpha channel."""
    return keep_alpha(path, load_image(path))  # load_image validates, with one-line errors


def symbol_vector(run: Run, spec: ClassSpec) -> np.ndarray:
    """A class's symbol query: its canonical drawing and its family mean, weighted equally."""
    canonical = np.asarray(render_symbol(spec.symbol, run.image_size).convert("RGB"))
    vector = normalise(run.embed_symbols([canonical]))[0]
    if run.config.symbol_variants > 0:
        family = run.symbols01[spec.id].mul(255).round().byte().permute(0, 2, 3, 1).numpy()
        vector = vector + normalise(run.embed_symbols(list(family)).mean(axis=0))[0]
    return vector


class Searcher:
    """Answers queries on `index` with the `run` that built it.

    `run` may be None for search by id alone, which uses the stored embeddings.
    """

    def __init__(self, index: GalaxyIndex, run: Run | None = None):
        if run is not None:
            check_run(index.dir, index.manifest, run)
        self.index, self.run = index, run
        self._symbol_vectors: dict[int, np.ndarray] = {}  # a class's symbol query never changes for a run

    def _need_run(self, what: str) -> Run:
        if self.run is None:
            raise GalaxAlignError(f"search by {what} needs the run that built the index ({self.index.run_dir})")
        return self.run

    def by_vector(self, vector: np.ndarray, k: int = 10) -> list[Hit]:
        return self.index.search(vector, k)[0]

    def by_image(self, image: ImageLike, k: int = 10) -> list[Hit]:
        return self.by_vector(self._need_run("image").embed_images([image]), k)

    def by_id(self, galaxy_id: str, k: int = 10) -> list[Hit]:
        """Galaxies most like an indexed one; the galaxy itself is left out."""
        row = self.index.row(galaxy_id)
        hits = self.by_vector(np.asarray(self.index.embeddings[row]), k + 1)
        return [h for h in hits if h.index != row][:k]

    def by_text(self, text: str, k: int = 10) -> list[Hit]:
        if not text.strip():
            raise GalaxAlignError("search text is empty")
        return self.by_vector(self._need_run("text").embed_texts([text]), k)

    def by_symbol(self, class_key: str | int, k: int = 10) -> list[Hit]:
        """Galaxies like a class's symbol: its canonical drawing and its family mean, weighted equally."""
        run = self._need_run("symbol")
        spec = run.scheme.by_key(str(class_key))
        if spec.id not in self._symbol_vectors:
            self._symbol_vectors[spec.id] = symbol_vector(run, spec)
        return self.by_vector(self._symbol_vectors[spec.id], k)

    def by_sketch(self, sketch: ImageInput, k: int = 10) -> list[Hit]:
        run = self._need_run("sketch")
        image = read_sketch(sketch) if isinstance(sketch, (str, os.PathLike)) else sketch
        return self.by_vector(run.embed_symbols([sketch_to_symbol(image)]), k)


QUERY_KINDS = ("image", "id", "text", "symbol", "sketch")


@dataclass
class SearchConfig:
    """`galaxalign search`: one query (exactly one of the kinds) against an index."""

    index: str = required("index folder")
    run: str | None = option(None, "run folder (default: the one that built the index)")
    image: str | None = option(None, "a galaxy image file")
    id: str | None = option(None, "an indexed galaxy's id (itself excluded)")
    text: str | None = option(None, 'words, e.g. "barred spiral with tight arms"')
    symbol: str | None = option(None, "a class key, id or name: search by its symbol", metavar="CLASS")
    sketch: str | None = option(None, "a drawing like a symbol (PNG; dark on light is fine)", metavar="FILE")
    ra: float | None = option(None, "with --dec: galaxies like the catalogue galaxy at RA, Dec (degrees; survey index)")
    dec: float | None = option(None, "with --ra: declination in degrees")
    tolerance: float | None = option(None, "arcsec within which --ra/--dec must find a galaxy (default 5)")
    cone: str | None = option(
        None, "keep only results within RADIUS degrees of RA,DEC (survey index)", metavar="RA,DEC,RADIUS"
    )
    k: int = option(10, "results", flag="-k")
    json: bool = option(False, "print JSON instead of a table")
    device: str = option("auto", DEVICE_HELP)

    def __post_init__(self):
        check_device_name(self.device)
        if (self.ra is None) != (self.dec is None):
            raise GalaxAlignError("search: a sky position needs both --ra and --dec")
        if self.tolerance is not None and self.ra is None:
            raise GalaxAlignError("search: --tolerance applies to a --ra/--dec query only")
        given = [kind for kind in QUERY_KINDS if getattr(self, kind) is not None] + (
            ["position"] if self.ra is not None else []
        )
        if len(given) != 1:
            flags = ", ".join(f"--{kind}" for kind in QUERY_KINDS)
            raise GalaxAlignError(f"search: give exactly one query of {flags}, --ra/--dec (got {len(given)})")
        self.cone_tuple()

    def cone_tuple(self) -> tuple[float, float, float] | None:
        if self.cone is None:
            return None
        try:
            ra, dec, radius = (float(part) for part in self.cone.split(","))
        except ValueError:
            raise GalaxAlignError(f"search: --cone must be RA,DEC,RADIUS in degrees, got {self.cone!r}") from None
        return ra, dec, radius

    @property
    def query(self) -> tuple[str, str | tuple[float, float]]:
        """(kind, value) of the one query given."""
        if self.ra is not None and self.dec is not None:
            return "position", (self.ra, self.dec)
        return next((kind, getattr(self, kind)) for kind in QUERY_KINDS if getattr(self, kind) is not None)
