"""Rewrite a Galaxy10-layout h5 so that one image is one chunk, stored as fast to read as wanted.

A loader reads one galaxy at a time. If a file's chunks span many images (h5py's automatic
chunking of a (17736, 256, 256, 3) array picks (555, 16, 16, 1): one image touches 768 chunks,
each shared with 554 other images) every read inflates far more than it returns. After
`convert_h5` an image is exactly one chunk, stored raw ("none": fastest, largest), with LZF
(fast to decode, ships with h5py), or with deflate ("gzip", level `GZIP_LEVEL`: smallest and
slowest to decode, readable by any HDF5 tool). Everything else in the file (`ans`, `ra`, ...,
the `params` group, attributes) is copied as it is; pixels are copied bit for bit.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from galaxalign.config import option
from galaxalign.errors import GalaxAlignError
from galaxalign.io import atomic_path
from galaxalign.progress import progress_bar

COMPRESSIONS = ("none", "lzf", "gzip")
# Deflate inflates at the same speed whatever the level it was written with (1157 vs 1159 256-px
# images/s at levels 1 and 4); level 1 deflates 1.3-1.6x faster for 3 % more bytes on galaxy images.
GZIP_LEVEL = 1
# Images copied per block: about this many bytes, rounded to whole source chunks along the image
# axis so that no source chunk is inflated twice; memory stays near 2 blocks.
BLOCK_BYTES = 64 << 20
MAX_BLOCK_BYTES = 1 << 30  # above this a source chunk is too tall to align to; plain blocks instead


@dataclass
class ConvertConfig:
    """`galaxalign convert`: a copy of an h5 with one image per chunk."""

    src: str = field(metadata={"help": "Galaxy10-layout .h5 to read (left unchanged)"})
    out: str = field(metadata={"help": "the new .h5 to write (not the source itself)"})
    compression: str = option(
        "none",
        "how each image chunk is stored: none (fastest to read, largest), lzf (fast to read, about "
        "0.84 of raw on galaxy images), gzip (deflate level 1, about 0.67 of raw, slowest to read)",
        choices=COMPRESSIONS,
    )


def convert_h5(src: str | os.PathLike, dst: str | os.PathLike, compression: str = "none") -> Path:
    """Copy `src` to `dst` with `images` chunked (1, H, W, 3) and stored as `compression`.

    Written under a temporary name beside `dst` and renamed when complete, so a failure or an
    interrupt leaves no partial file (and an earlier `dst` untouched). Returns `dst`.
    """
    src, dst = Path(src), Path(dst)
    if compression not in COMPRESSIONS:
        raise GalaxAlignError(f"{dst}: --compression must be one of {', '.join(COMPRESSIONS)}, got {compression!r}")
    if not src.is_file():
        raise GalaxAlignError(f"{src}: no such file")
    if dst.is_dir():
        raise GalaxAlignError(f"{dst}: is a folder; the output must be a file path")
    if dst.resolve() == src.resolve() or (dst.exists() and os.path.samefile(src, dst)):
        raise GalaxAlignError(f"{dst}: the output is the source file; write the copy to another path")
    try:
        source = h5py.File(src, "r")
    except OSError as exc:
        raise GalaxAlignError(f"{src}: not a readable HDF5 file ({exc})".splitlines()[0]) from None
    with source:
        images = _images(source, src)
        try:
            with atomic_path(dst) as tmp, h5py.File(tmp, "w") as out:
                _copy_attrs(source, out)
                for key in source:
                    if key != "images":
                        source.copy(source[key], out, name=key)  # groups recursively, with attributes
                _copy_images(images, out, compression, src)
        except OSError as exc:  # a full disk, or a damaged object outside `images`
            raise GalaxAlignError(f"{src} -> {dst}: copy failed ({exc})".splitlines()[0]) from None
    return dst


def _images(f: h5py.File, path: Path) -> h5py.Dataset:
    if "images" not in f:
        raise GalaxAlignError(f"{path}: missing key 'images' (found: {', '.join(sorted(f.keys())) or 'none'})")
    images = f["images"]
    if not isinstance(images, h5py.Dataset):
        raise GalaxAlignError(f"{path}: key 'images': expected a dataset, found a group")
    if images.ndim != 4 or 0 in images.shape:
        raise GalaxAlignError(
            f"{path}: key 'images': expected a non-empty (N, H, W, 3) array, got shape {images.shape}"
        )
    return images


def _copy_attrs(source, target) -> None:
    """Attributes with their stored types (a plain `attrs[k] = v` would re-guess them)."""
    for name in source.attrs:
        stored = h5py.h5a.open(source.id, name.encode())
        target.attrs.create(name, source.attrs[name], dtype=stored.dtype)


def _copy_images(images: h5py.Dataset, out: h5py.File, compression: str, path: Path) -> None:
    n = images.shape[0]
    per_image = int(np.prod(images.shape[1:])) * images.dtype.itemsize
    filters: dict[str, dict[str, Any]] = {
        "none": {},
        "lzf": {"compression": "lzf"},
        "gzip": {"compression": "gzip", "compression_opts": GZIP_LEVEL},
    }
    target = out.create_dataset(
        "images", images.shape, images.dtype, chunks=(1, *images.shape[1:]), **filters[compression]
    )
    _copy_attrs(images, target)
    step = _block(images, per_image)
    with progress_bar(n, f"convert ({compression})", unit="img") as bar:
        for start in range(0, n, step):
            stop = min(start + step, n)
            try:
                block = images[start:stop]
            except OSError as exc:  # a damaged compressed chunk fails only when read
                raise GalaxAlignError(
                    f"{path}: key 'images': images {start}..{stop - 1} unreadable ({exc})".splitlines()[0]
                ) from None
            target[start:stop] = block
            bar.update(stop - start)


def _block(images: h5py.Dataset, per_image: int) -> int:
    """Images per block: about BLOCK_BYTES, in whole source chunks along the image axis."""
    plain = max(1, BLOCK_BYTES // per_image)
    rows = images.chunks[0] if images.chunks else 1
    if rows * per_image > MAX_BLOCK_BYTES:
        return plain
    return max(1, plain // rows) * rows
