"""Class-specific random textures: a control for the drawings (issue 24, section 3).

Each class gets a random texture process (a Gaussian random field with its own spectral slope,
anisotropy and orientation, drawn from the run seed and the class), and each of its `variants`
is a fresh realisation of that process, given exactly the grey levels of that class's drawn
symbols (histogram matching). Used in place of the drawings (same count, same pipeline), they keep the class structure
(every class has symbols of its own, distinct from the others') and destroy the content: nothing
in them draws a bulge, a bar, an arm or an edge-on disk.
"""

from __future__ import annotations

import numpy as np

from galaxalign.symbols.draw import _check_count, _check_size

SLOPES = (1.5, 3.5)  # power-spectrum slopes: from fine grain to smooth blotches
STRETCH = (1.0, 3.0)  # anisotropy of the spectrum: 1 isotropic, 3 streaky


def class_texture(class_id: int, variants: int, size: int, seed: int = 0) -> np.ndarray:
    """`variants` realisations of one class's random texture, (variants, size, size) float with
    mean 0 and standard deviation 1 each."""
    _check_size(size)
    _check_count("variants", variants)
    process = np.random.default_rng(np.random.SeedSequence([seed % 2**64, class_id, 0x7E47]))
    slope, stretch = process.uniform(*SLOPES), process.uniform(*STRETCH)
    angle = process.uniform(0.0, np.pi)
    fy, fx = np.meshgrid(np.fft.fftfreq(size), np.fft.rfftfreq(size), indexing="ij")
    u = fx * np.cos(angle) + fy * np.sin(angle)
    v = (-fx * np.sin(angle) + fy * np.cos(angle)) * stretch
    radius = np.hypot(u, v)
    radius[0, 0] = np.inf  # no mean
    amplitude = radius ** (-slope / 2)
    out = np.empty((variants, size, size))
    for i in range(variants):
        draws = np.random.default_rng(np.random.SeedSequence([seed % 2**64, class_id, 0x7E47, i]))
        field = np.fft.irfft2(amplitude * np.fft.rfft2(draws.standard_normal((size, size))), s=(size, size))
        out[i] = (field - field.mean()) / (field.std() or 1.0)
    return out


def class_textures(drawn: np.ndarray, seed: int = 0) -> np.ndarray:
    """Textures in place of a bank of drawn class symbols `drawn` (C, V, 3, S, S) in [0, 1]: the same
    shape, grey like the drawings, each class's textures with exactly the grey levels of its own
    drawings (histogram-matched: the share of sky and of ink kept, where they lie shuffled)."""
    n_classes, variants, _, size, _ = drawn.shape
    out = np.empty_like(drawn)
    for c in range(n_classes):
        levels = np.sort(drawn[c].mean(axis=1), axis=None)  # the class's grey levels, all variants
        quantiles = np.linspace(0, len(levels) - 1, size * size).round().astype(np.int64)
        for v, field in enumerate(class_texture(c, variants, size, seed)):
            matched = np.empty(size * size, dtype=drawn.dtype)
            matched[np.argsort(field, axis=None, kind="stable")] = levels[quantiles]
            out[c, v] = matched.reshape(size, size)[None]
    return out
