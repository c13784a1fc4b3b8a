"""Read galaxy images from any common format into one form: (H, W, 3) uint8 RGB.

Survey cutouts arrive as PNG/JPEG (already stretched colour composites) or as FITS (raw fluxes,
one band per plane). Everything downstream sees the same array, so the FITS path applies the
asinh (Lupton et al. 2004) stretch that produced the survey's own colour images.
"""

from __future__ import annotations

import gzip
import io
import math
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from galaxalign.errors import GalaxAlignError

# A decompression bomb (a small file that decodes to gigapixels) must fail before it is decoded.
MAX_PIXELS = 50_000_000
FITS_SUFFIXES = (".fits", ".fit", ".fts", ".fits.gz", ".fit.gz", ".fts.gz", ".fz")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".gif", *FITS_SUFFIXES)


class TooManyPixels(GalaxAlignError):
    """An image over the pixel cap, refused from its header: the web app answers 413 for it."""


def is_image_file(path: str | os.PathLike) -> bool:
    return str(path).lower().endswith(IMAGE_SUFFIXES)


def load_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as (H, W, 3) uint8 RGB; any problem is a one-line GalaxAlignError."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise GalaxAlignError(f"{path}: no such image file") from None
    except OSError as exc:
        raise GalaxAlignError(f"{path}: cannot read image ({exc.strerror or exc})") from None
    return decode_image_bytes(data, str(path))


def decode_image_bytes(data: bytes, name: str, max_pixels: int | None = None) -> np.ndarray:
    """Decode an uploaded file's bytes; `name` picks FITS vs raster and names the file in errors.

    Images over `max_pixels` (default MAX_PIXELS) are refused from their headers, before decoding.
    """
    limit = max_pixels or MAX_PIXELS
    if name.lower().endswith(FITS_SUFFIXES) or data[:9] == b"SIMPLE  =":
        return _decode_fits(data, name, limit)
    return _decode_raster(data, name, limit)


def _decode_raster(data: bytes, name: str, limit: int) -> np.ndarray:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
            w, h = im.size
            if w * h > limit:
                raise TooManyPixels(f"{name}: image is {w}x{h} pixels, over the limit of {limit}")
            im.load()
    except GalaxAlignError:
        raise
    except UnidentifiedImageError:
        raise GalaxAlignError(f"{name}: cannot read image (not a recognised image format)") from None
    except Exception as exc:  # PIL parsers raise many types on hostile or truncated input
        raise GalaxAlignError(f"{name}: cannot read image ({type(exc).__name__}: {exc})".splitlines()[0]) from None
    return _pil_to_rgb8(im)


def _pil_to_rgb8(im: Image.Image) -> np.ndarray:
    """Any PIL mode to 8-bit RGB, keeping relative brightness."""
    if im.mode.startswith("I;16"):
        # 16-bit greyscale: keep the top 8 bits, so a 16-bit file and its 8-bit export agree.
        grey = (np.asarray(im).astype(np.uint32) >> 8).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if im.mode in ("I", "F"):
        # 32-bit integer or float pixels carry fluxes, not display values: stretch like FITS.
        return asinh_stretch(np.asarray(im, dtype=np.float64)[None])
    if "A" in im.mode or "transparency" in im.info:
        # Composite onto black: a transparent pixel is empty sky, not whatever colour it stores.
        rgba = np.asarray(im.convert("RGBA"), dtype=np.uint16)
        rgb = (rgba[:, :, :3] * rgba[:, :, 3:] + 127) // 255
        return rgb.astype(np.uint8)
    return np.array(im.convert("RGB"), dtype=np.uint8)  # a writable copy, as torch.from_numpy wants


def _decode_fits(data: bytes, name: str, limit: int) -> np.ndarray:
    from astropy.io import fits

    # astropy reads gzip only from a path, and load_image hands it bytes: unwrap .fits.gz here.
    stream = gzip.GzipFile(fileobj=io.BytesIO(data)) if data[:2] == b"\x1f\x8b" else io.BytesIO(data)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # astropy warns about non-standard headers it can still read
            with fits.open(stream, ignore_missing_end=False) as hdul:
                _check_declared_size(hdul, name, limit)
                planes = [
                    np.array(hdu.data, dtype=np.float64)
                    for hdu in hdul
                    if hdu.is_image and hdu.data is not None and hdu.data.ndim >= 2 and hdu.data.size
                ]
    except GalaxAlignError:
        raise
    except Exception as exc:  # astropy raises OSError, ValueError, TypeError on damaged files
        raise GalaxAlignError(f"{name}: cannot read image ({type(exc).__name__}: {exc})".splitlines()[0]) from None
    bands = _fits_bands(planes, name)
    h, w = bands.shape[1:]
    if h * w > limit:
        raise TooManyPixels(f"{name}: image is {w}x{h} pixels, over the limit of {limit}")
    return asinh_stretch(bands)


def _check_declared_size(hdul, name: str, limit: int) -> None:
    """Refuse from the headers alone: a small tile-compressed (.fz) or gzipped file can declare gigapixels."""
    total = 0
    for hdu in hdul:
        shape: tuple[int, ...] = hdu.shape if hdu.is_image else ()
        if len(shape) >= 2 and shape[-1] * shape[-2] > limit:
            raise TooManyPixels(f"{name}: image is {shape[-1]}x{shape[-2]} pixels, over the limit of {limit}")
        total += math.prod(shape) if shape else 0
    if total > 3 * limit:
        raise TooManyPixels(f"{name}: FITS holds {total} values, over the limit of 3 bands of {limit} pixels")


def _fits_bands(planes: list[np.ndarray], name: str) -> np.ndarray:
    """Gather (C, H, W) bands from a cube or from several image HDUs, reddest first.

    Surveys store bands bluest first (g, r, z); RGB wants the reddest band in red, so the band
    order is reversed. One band gives a grey image; more than 3 keeps the first 3 stored.
    """
    if not planes:
        raise GalaxAlignError(f"{name}: cannot read image (no 2-D image data in any FITS HDU)")
    first = planes[0]
    if first.ndim == 2:
        cube = np.stack([p for p in planes if p.shape == first.shape][:3])
    elif first.ndim == 3 and first.shape[-1] == 3 and first.shape[0] not in (1, 3):
        cube = np.moveaxis(first, -1, 0)  # stored (H, W, 3)
    else:
        cube = first.reshape(-1, *first.shape[-2:])[:3]  # (C, H, W), or with leading length-1 axes
    if cube.shape[0] == 2:
        raise GalaxAlignError(f"{name}: cannot read image (2 bands; expected 1 or 3)")
    return cube[::-1]


def asinh_stretch(bands: np.ndarray, q: float = 8.0, stretch: float | None = None) -> np.ndarray:
    """Lupton et al. (2004) colour-preserving asinh stretch of (C, H, W) fluxes to (H, W, 3) uint8.

    Bands are in R, G, B order (C = 3) or one grey band (C = 1). Each band's sky level (its
    median) is subtracted; NaN and infinite pixels count as empty sky. The mean intensity I is
    mapped through asinh(q I / stretch) / asinh(q), so faint structure is lifted while the colour
    ratio between bands is kept; `stretch` is the intensity that reaches full scale (default:
    the 99.5th percentile, so only the brightest 0.5% of pixels saturate).
    """
    x = np.nan_to_num(np.asarray(bands, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    if x.ndim != 3 or x.shape[0] not in (1, 3):
        raise ValueError(f"asinh_stretch expects (1 or 3, H, W) bands, got shape {x.shape}")
    x = x - np.median(x, axis=(1, 2), keepdims=True)
    intensity = x.mean(axis=0)
    if stretch is None:
        stretch = float(np.percentile(intensity, 99.5))
    if not stretch > 0:
        return np.zeros((*x.shape[1:], 3), dtype=np.uint8)  # a blank (sky-only) image
    with np.errstate(divide="ignore", invalid="ignore"):
        gain = np.where(intensity > 0, np.arcsinh(q * intensity / stretch) / (np.arcsinh(q) * intensity), 0.0)
    rgb = np.clip(x * gain, 0.0, None)
    rgb /= np.maximum(rgb.max(axis=0), 1.0)  # saturate without changing the pixel's colour
    out = np.rint(rgb * 255.0).astype(np.uint8)
    if out.shape[0] == 1:
        out = np.repeat(out, 3, axis=0)
    return np.ascontiguousarray(np.moveaxis(out, 0, -1))


def resize_square(img: np.ndarray, size: int) -> np.ndarray:
    """Centre-crop to a square, then resize to size x size (antialiased: PIL scales its kernel)."""
    h, w = img.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    img = img[top : top + side, left : left + side]
    if side == size:
        return np.ascontiguousarray(img)
    out = Image.fromarray(np.ascontiguousarray(img)).resize((size, size), Image.Resampling.BILINEAR)
    return np.array(out)
