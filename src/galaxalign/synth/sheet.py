"""A contact sheet of a Galaxy10-layout file: one labelled row per class, to judge a render by eye."""

from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from galaxalign.errors import GalaxAlignError
from galaxalign.taxonomy import load_scheme

MAX_TILE = 128  # larger images are shrunk so a sheet of 10 x 8 stays viewable
LABEL_WIDTH = 230
BACKGROUND = (255, 255, 255)


def render_contact_sheet(h5_path: str | os.PathLike, per_class: int = 8) -> Image.Image:
    """The first `per_class` images of each class in file order; works on the real Galaxy10 file too
    (class names then come from the built-in galaxy10 scheme)."""
    path = Path(h5_path)
    if not path.is_file():
        raise GalaxAlignError(f"{path}: no such file")
    with h5py.File(path, "r") as h5:
        if "images" not in h5 or "ans" not in h5:
            raise GalaxAlignError(f"{path}: not a Galaxy10-layout file (needs 'images' and 'ans')")
        labels = h5["ans"][:]
        names = json.loads(h5.attrs["class_names"]) if "class_names" in h5.attrs else load_scheme("galaxy10").names
        rows = [h5["images"][np.flatnonzero(labels == c)[:per_class]] for c in range(len(names))]
    tile = min(MAX_TILE, rows[0].shape[1] if rows[0].size else MAX_TILE)
    sheet = Image.new("RGB", (LABEL_WIDTH + per_class * tile, len(names) * tile), BACKGROUND)
    draw, font = ImageDraw.Draw(sheet), ImageFont.load_default(size=15)
    for r, (name, images) in enumerate(zip(names, rows)):
        label = _wrap(f"{r}: {name}", 26)
        draw.multiline_text((8, r * tile + tile // 2), label, fill=(0, 0, 0), font=font, anchor="lm")
        for k, image in enumerate(images):
            sheet.paste(
                Image.fromarray(image).resize((tile, tile), Image.Resampling.LANCZOS),
                (LABEL_WIDTH + k * tile, r * tile),
            )
    return sheet


def _wrap(text: str, width: int) -> str:
    """Break a class name onto lines of at most `width` characters at spaces."""
    lines: list[str] = []
    for word in text.split():
        if lines and len(lines[-1]) + 1 + len(word) <= width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return "\n".join(lines)
