"""Class symbol families: seeded variants of each class's symbol, the gallery, and the symbol files."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from galaxalign.config import option, required
from galaxalign.io import atomic_path
from galaxalign.symbols.draw import _check_count, _check_size, render_symbol, symbol_svg
from galaxalign.taxonomy import ClassSpec, Scheme

# ---------------------------------------------------------------- families, gallery, files


def _variant_seed(seed: int, class_id: int, i: int) -> int:
    """A seed per (run seed, class, variant), so classes never share a variant's randomness."""
    return int(np.random.SeedSequence([seed % 2**64, class_id, i]).generate_state(1)[0])


def symbol_family(class_spec: ClassSpec, n: int, size: int = 224, seed: int = 0) -> list[Image.Image]:
    """`n` seeded variants of a class's symbol."""
    _check_count("n", n)
    return [render_symbol(class_spec.symbol, size, _variant_seed(seed, class_spec.id, i)) for i in range(n)]


def _font(px: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=px)
    except (TypeError, OSError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _wrap(text: str, font: ImageFont.ImageFont | ImageFont.FreeTypeFont, width: int) -> list[str]:
    """Greedy word wrap to a width in pixels."""
    lines: list[str] = []
    for word in text.split():
        if lines and font.getlength(f"{lines[-1]} {word}") <= width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return lines


def symbol_gallery(scheme: Scheme, size: int = 160, variants: int = 0, seed: int = 0) -> Image.Image:
    """One row per class: its id and name, the canonical symbol, then `variants` seeded variants."""
    _check_size(size)
    _check_count("variants", variants)
    gap, label_w = max(4, size // 32), max(150, size + size // 2)
    font = _font(max(11, size // 10))
    line_h = max(13, size // 8)
    cols = 1 + variants
    width = label_w + cols * (size + gap) + gap
    sheet = Image.new("RGB", (width, len(scheme) * (size + gap) + gap), (40, 40, 46))
    draw = ImageDraw.Draw(sheet)
    for row, c in enumerate(scheme):
        y = gap + row * (size + gap)
        images = [render_symbol(c.symbol, size), *symbol_family(c, variants, size, seed)]
        for col, img in enumerate(images):
            sheet.paste(img, (label_w + gap + col * (size + gap), y))
        lines = _wrap(f"{c.id}  {c.name}", font, label_w - 3 * gap)
        top = y + (size - line_h * len(lines)) // 2
        for k, text in enumerate(lines):
            draw.text((gap * 2, top + k * line_h), text, fill=(235, 235, 235), font=font)
    return sheet


def write_symbol_set(
    scheme: Scheme, out_dir: str | os.PathLike, size: int = 224, variants: int = 0, seed: int = 0
) -> int:
    """Write every class's canonical PNG and SVG, its PNG variants and a gallery; count the files."""
    _check_size(size)
    _check_count("variants", variants)
    out = os.fspath(out_dir)
    written = 0
    for c in scheme:
        stem = os.path.join(out, f"{c.id}_{c.key}")
        with atomic_path(stem + ".png") as tmp:
            render_symbol(c.symbol, size).save(tmp, format="PNG")
        with atomic_path(stem + ".svg") as tmp:
            tmp.write_text(symbol_svg(c.symbol, size))
        for i, img in enumerate(symbol_family(c, variants, size, seed)):
            with atomic_path(f"{stem}_v{i:02d}.png") as tmp:
                img.save(tmp, format="PNG")
        written += 2 + variants
    with atomic_path(os.path.join(out, "gallery.png")) as tmp:
        symbol_gallery(scheme, min(size, 160), variants, seed).save(tmp, format="PNG")
    return written + 1


@dataclass
class SymbolSetConfig:
    """`galaxalign symbols`: each class's symbol (PNG, SVG), its variants, and a gallery."""

    out: str = required("output folder")
    size: int = option(224, "symbol size in pixels")
    variants: int = option(0, "seeded variants per class")
    seed: int = option(0, "seed of the variants")
    scheme: str = option("galaxy10", "galaxy10, gz2, or a scheme JSON/YAML file")
