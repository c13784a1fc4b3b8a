"""Class drawings rendered like the survey images: the domain-matched symbols of issue 24, section 3.

A drawing is treated as a galaxy's light: scaled to a galaxy's apparent size, given a total flux and
a colour from generating parameters sampled for its class (`sample_params`), then seen through the
same pipeline as Galaxy10-Sim's galaxies (`render`: the Moffat PSF, the pixel scale, DECaLS sky
noise and the Lupton colour stretch of the data's render version). Nothing here draws; it reuses
the renderer's optics and display, so the symbols look like the images without new rendering code.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from galaxalign.symbols import apparent_radius
from galaxalign.synth.params import GalaxyParams, sample_params
from galaxalign.synth.render import (
    NATIVE_SCALE,
    _add_noise,
    _colour,
    _convolve,
    _lupton_rgb,
    _lupton_rgb_version1,
    _psf,
)
from galaxalign.taxonomy import Scheme

MIN_ZOOM, MAX_ZOOM = 0.2, 1.5


def fit_to_radius(grey: np.ndarray, radius: float) -> np.ndarray:
    """A grey drawing (S, S) in [0, 1], rescaled about its centre so that its half-light radius is
    `radius` (in half sides, as `symbols.apparent_radius` measures); NaN keeps it as drawn."""
    size = grey.shape[0]
    own = apparent_radius(grey, clip_sigma=0.0)
    if not (np.isfinite(radius) and np.isfinite(own) and own > 0):
        return grey.astype(np.float32)
    zoom = float(np.clip(radius / own, MIN_ZOOM, MAX_ZOOM))
    side = max(2, round(size * zoom))
    scaled = np.asarray(Image.fromarray(grey.astype(np.float32), "F").resize((side, side), Image.Resampling.BILINEAR))
    canvas = np.zeros((max(size, side),) * 2, np.float32)
    at = (canvas.shape[0] - side) // 2
    canvas[at : at + side, at : at + side] = scaled
    cut = (canvas.shape[0] - size) // 2
    return np.clip(canvas[cut : cut + size, cut : cut + size], 0.0, None)


def survey_look(
    grey: np.ndarray, params: GalaxyParams, rng: np.random.Generator, render_version: int = 1
) -> np.ndarray:
    """A drawing (S, S) as the light of a galaxy with `params`' flux, colour, seeing and sky, shown
    in `render_version`'s display: an RGB uint8 (S, S, 3) cutout."""
    size = grey.shape[0]
    scale = params.fov_arcsec / size
    total = 10.0 ** ((22.5 - params.magnitude) / 2.5)
    light = grey.astype(np.float32) / max(float(grey.sum()), 1e-9)
    g_r = params.bulge_fraction * params.bulge_g_r + (1.0 - params.bulge_fraction) * params.disk_g_r
    bands = (total * _colour(g_r)).astype(np.float32)[:, None, None] * light[None]
    psf = _psf(params.seeing_fwhm_arcsec / scale, params.psf_beta, size)
    native = _convolve(bands, psf) * (NATIVE_SCALE / scale) ** 2
    _add_noise(native, params.sky_noise * min(1.0, NATIVE_SCALE / scale), rng)
    return _lupton_rgb(native) if render_version >= 2 else _lupton_rgb_version1(native)


class DomainSymbols:
    """Renders class drawings like survey images, anew for every sample: each its class's drawing,
    at its galaxy's apparent size, with the flux, colour, seeing and sky of parameters sampled for
    its class from its own seed."""

    def __init__(self, drawings: np.ndarray, scheme: Scheme, difficulty: float, render_version: int):
        self.drawings = drawings  # (C * V, S, S) grey in [0, 1]
        self.scheme, self.difficulty, self.render_version = scheme, difficulty, render_version

    def render(self, rows: list[int], labels: list[int], radii: list[float], seeds: list[int]) -> np.ndarray:
        """(n, S, S, 3) uint8: drawing rows[i] of class labels[i] at radius radii[i], seeded by seeds[i]."""
        out = []
        for row, label, radius, seed in zip(rows, labels, radii, seeds):
            rng = np.random.default_rng(seed)
            params = sample_params(self.scheme[label], self.difficulty, rng, self.render_version)
            out.append(survey_look(fit_to_radius(self.drawings[row], radius), params, rng, self.render_version))
        return np.stack(out)
