"""Draw one galaxy in g, r, z from its generating parameters and compose a DECaLS-like RGB cutout.

GalSim draws the Sersic bulges, exponential disks, star-forming knots, PSF and noise. What GalSim
lacks (bars, logarithmic spiral arms, dust lanes, tidal tails, lopsided and patchy light) is built
as numpy images in the same pixel frame. All light is summed per band before seeing and convolved
with the PSF by one FFT per band, which is far cheaper than a GalSim convolution per component.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image

from galaxalign.errors import require_extra
from galaxalign.synth.params import RENDER_VERSION, GalaxyParams

require_extra("synth", "Rendering Galaxy10-Sim (galaxalign synth, demo)", "galsim")
import galsim  # noqa: E402  (after the check, which names the extra)

NATIVE_SCALE = 0.262  # DECaLS arcsec per pixel
# Sky noise per native pixel in nanomaggies (g, r, z), about DECaLS DR8 depth.
SKY_SIGMA = np.array([0.0045, 0.007, 0.011])
# Legacy Surveys colour-image weights (g, r, z), as in legacypipe's get_rgb: red bulges turn orange.
BAND_WEIGHT = np.array([5.25, 3.4, 2.2], np.float32)
# Lupton asinh stretch: linear below SOFT, and a mean weighted intensity of TOP saturates. TOP was
# 40 before the sky pedestal; 24 keeps the display units per unit of flux above the pedestal.
LUPTON_SOFT = 0.04
LUPTON_TOP = 24.0
LUPTON_TOP_VERSION1 = 40.0
# Display value of zero flux, as a share of 255. Real colour images put their black point below
# zero flux (the GZ DECaLS PNG stretch maps -0.5 of its units to black, which leaves the sky at
# about 17 DN), so sky noise shows on both sides of a grey pedestal instead of its half below zero
# being clipped to black (docs/sim-to-real.md).
SKY_PEDESTAL = 17.0 / 255.0
# Share of each pixel's colour contrast (about the mean of the weighted bands) that the display
# keeps. GZ DECaLS PNGs stretch each band on its own and desaturate, so their galaxies' colours
# are about a third as spread as a colour-preserving stretch shows them, and their sky noise is
# mostly grey (channels correlated about 0.75); 0.35 gives both (docs/sim-to-real.md).
COLOUR_SATURATION = 0.35
BAR_AXIS_RATIO = 0.28
TAIL_PITCH_DEG = (25.0, 60.0)  # open, and more varied than spiral arms
PLUME_THRESHOLD = 0.3  # disturbance above which the outline gets off-centre plumes
STAR_MAG = (17.0, 22.5)
BRIGHT_STAR_MAG = (13.5, 17.0)
BRIGHT_STAR_CHANCE = 0.1
UNDERFLOW_EXPONENT = 50.0  # exp(-50) = 2e-22: a stamp's sum stays well inside float32
DEGREES = galsim.degrees


@dataclass(frozen=True)
class _Body:
    """One galaxy of the scene (the main one, or a companion) in pixel units."""

    x: float
    y: float
    flux: float  # r band, nanomaggies
    hlr: float
    q: float
    pa: float
    bulge_fraction: float
    bulge_n: float
    bulge_hlr: float
    bulge_q: float
    bulge_g_r: float
    disk_g_r: float
    n_arms: int = 0
    pitch: float = 0.0
    arm_strength: float = 0.0
    arm_width: float = 0.0
    arm_phase: float = 0.0
    bar_strength: float = 0.0
    bar_length: float = 0.0
    bar_angle: float = 0.0
    knot_fraction: float = 0.0
    n_knots: int = 0
    dust: float = 0.0
    disturbance: float = 0.0
    tail_strength: float = 0.0
    tail_angle: float = 0.0


def render_galaxy(
    params: GalaxyParams, size: int, rng: np.random.Generator, render_version: int = RENDER_VERSION
) -> np.ndarray:
    """An RGB uint8 (size, size, 3) cutout: R, G, B carry z, r, g as in Legacy Surveys colour images;
    `render_version` chooses the display (params.RENDER_VERSIONS)."""
    scale = params.fov_arcsec / size
    deviate = galsim.BaseDeviate(int(rng.integers(1, 2**31 - 1)))
    light = np.zeros((3, size, size), np.float32)
    for body in _bodies(params, scale):
        light += _draw_body(body, size, rng, deviate)
    _add_stars(light, params.n_stars, rng)
    _add_background(light, params.n_background, scale, rng)
    psf = _psf(params.seeing_fwhm_arcsec / scale, params.psf_beta, size)
    native = _convolve(light, psf) * (NATIVE_SCALE / scale) ** 2
    _add_noise(native, params.sky_noise * min(1.0, NATIVE_SCALE / scale), rng)
    return _lupton_rgb(native) if render_version >= 2 else _lupton_rgb_version1(native)


# ---------------------------------------------------------------- the scene


def _bodies(p: GalaxyParams, scale: float) -> list[_Body]:
    """The main galaxy and, for mergers and chance neighbours, its companion, around the image centre."""
    total = 10.0 ** ((22.5 - p.magnitude) / 2.5)
    ratio = p.merger_flux_ratio if p.merger_separation > 0 else 0.0
    sep = p.merger_separation / scale
    ux, uy = math.cos(math.radians(p.merger_angle)), math.sin(math.radians(p.merger_angle))
    cx, cy = p.offset_x_arcsec / scale, p.offset_y_arcsec / scale
    lead = sep * ratio / (1.0 + ratio)  # keep the pair's light centred
    hlr = p.half_light_radius_arcsec / scale
    main = _Body(
        x=cx - lead * ux,
        y=cy - lead * uy,
        flux=total / (1.0 + ratio),
        hlr=hlr,
        q=p.axis_ratio,
        pa=p.position_angle,
        bulge_fraction=p.bulge_fraction,
        bulge_n=p.bulge_sersic_n,
        bulge_hlr=p.bulge_radius_ratio * hlr,
        bulge_q=p.bulge_axis_ratio,
        bulge_g_r=p.bulge_g_r,
        disk_g_r=p.disk_g_r,
        n_arms=p.n_arms,
        pitch=p.pitch_deg,
        arm_strength=p.arm_strength,
        arm_width=p.arm_width,
        arm_phase=p.arm_phase,
        bar_strength=p.bar_strength,
        bar_length=p.bar_length,
        bar_angle=p.bar_angle,
        knot_fraction=p.knot_fraction,
        n_knots=p.n_knots,
        dust=p.dust_strength,
        disturbance=p.disturbance,
        tail_strength=p.tail_strength,
        tail_angle=p.merger_angle + 180.0,
    )
    if ratio == 0.0:
        return [main]
    comp_hlr = hlr * math.sqrt(ratio)
    cq = p.companion_axis_ratio
    companion = _Body(
        x=cx + (sep - lead) * ux,
        y=cy + (sep - lead) * uy,
        flux=total * ratio / (1.0 + ratio),
        hlr=comp_hlr,
        q=cq,
        pa=p.companion_position_angle,
        bulge_fraction=p.companion_bulge_fraction,
        bulge_n=p.bulge_sersic_n,
        bulge_hlr=0.3 * comp_hlr,
        bulge_q=math.sqrt(0.5 + 0.5 * cq**2),
        bulge_g_r=p.bulge_g_r,
        disk_g_r=p.disk_g_r,
        knot_fraction=p.knot_fraction,
        n_knots=p.n_knots // 2,
        disturbance=p.disturbance if p.tail_strength > 0 else 0.0,
        tail_strength=p.tail_strength,
        tail_angle=p.merger_angle,
    )
    return [main, companion]


def _draw_body(b: _Body, size: int, rng: np.random.Generator, deviate: galsim.BaseDeviate) -> np.ndarray:
    """A body's g, r, z light before seeing: bulge, disk with arms, bar, knots, tails, dust."""
    X, Y = _disk_plane(size, b)
    R, phi = np.hypot(X, Y), np.arctan2(Y, X)
    bulge_x, bulge_y = b.x, b.y
    if b.disturbance > 0.02:  # a displaced nucleus is the first sign of a disturbance
        angle = rng.uniform(0.0, 2.0 * math.pi)
        bulge_x += 0.25 * b.disturbance * b.hlr * math.cos(angle)
        bulge_y += 0.25 * b.disturbance * b.hlr * math.sin(angle)
    bulge = galsim.Sersic(b.bulge_n, half_light_radius=b.bulge_hlr).shear(q=b.bulge_q, beta=b.pa * DEGREES)
    disk_profile = galsim.Exponential(half_light_radius=b.hlr).shear(q=b.q, beta=b.pa * DEGREES).dilate(math.sqrt(b.q))
    disk = _draw(disk_profile, size, b.x, b.y)
    if b.disturbance > 0.02:
        disk = _disturb(disk, R, phi, b, rng)
    if b.disturbance > PLUME_THRESHOLD:
        disk = disk + _plumes(b, size, rng)
    disk_flux = b.flux * (1.0 - b.bulge_fraction)
    bar_flux, knot_flux = disk_flux * b.bar_strength, disk_flux * b.knot_fraction
    smooth_flux = disk_flux - bar_flux - knot_flux
    parts = [
        (_draw_cuspy(bulge, size, bulge_x, bulge_y), b.flux * b.bulge_fraction, b.bulge_g_r),
        *_split_arms(disk, R, phi, b, smooth_flux, rng),
    ]
    if b.bar_strength > 0:
        parts.append((_bar(X, Y, b), bar_flux, 0.5 * (b.bulge_g_r + b.disk_g_r)))
    if b.knot_fraction > 0 and b.n_knots > 0:
        parts.append((_knots(b, size, deviate, rng), knot_flux, max(0.0, b.disk_g_r - 0.55)))
    light = _compose(parts)
    if b.dust > 0:
        light *= _dust_lane(size, b)
    if b.tail_strength > 0:
        light += _compose([(_tail(size, b, rng.uniform(*TAIL_PITCH_DEG)), b.flux * b.tail_strength, b.disk_g_r - 0.15)])
    return light


def _compose(parts: list[tuple[np.ndarray, float, float]]) -> np.ndarray:
    """Sum unit-flux component images into g, r, z with each component's flux and g-r colour."""
    out = np.zeros((3, *parts[0][0].shape), np.float32)
    for image, flux, g_r in parts:  # a plain loop: BLAS threads thrash when every core runs a worker
        for band, weight in enumerate(flux * _colour(g_r)):
            out[band] += np.float32(weight) * image
    return out


def _colour(g_r: float) -> np.ndarray:
    """Flux in g, r, z relative to r for a g-r colour; r-z follows g-r as for nearby galaxies."""
    r_z = 0.54 * g_r + 0.2
    return np.array([10.0 ** (-0.4 * g_r), 1.0, 10.0 ** (0.4 * r_z)])


# ---------------------------------------------------------------- geometry and GalSim drawing


@lru_cache(maxsize=8)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel offsets from the image's true centre, GalSim's convention (rows are y)."""
    c = (size - 1) / 2.0
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    return x - c, y - c


def _disk_plane(size: int, b: _Body) -> tuple[np.ndarray, np.ndarray]:
    """Every pixel's position in the plane of a thin disk inclined to axis ratio q (major axis kept)."""
    x, y = _grid(size)
    c, s = math.cos(math.radians(b.pa)), math.sin(math.radians(b.pa))
    dx, dy = x - b.x, y - b.y
    return dx * c + dy * s, (dy * c - dx * s) / b.q


def _draw(profile: galsim.GSObject, size: int, x: float, y: float) -> np.ndarray:
    """Sample a profile at pixel centres (no pixel or PSF: the PSF image carries the pixel)."""
    return profile.drawImage(nx=size, ny=size, scale=1.0, method="no_pixel", offset=(x, y)).array


def _draw_cuspy(profile: galsim.GSObject, size: int, x: float, y: float, patch: int = 4, sub: int = 4) -> np.ndarray:
    """Like _draw, but integrates the central pixels, where sampling a steep Sersic core would overshoot."""
    image = _draw(profile, size, x, y)
    centre = (size - 1) / 2.0
    i0 = int(np.clip(round(centre + y) - patch // 2, 0, size - patch))
    j0 = int(np.clip(round(centre + x) - patch // 2, 0, size - patch))
    mid = (patch - 1) / 2.0
    fine = profile.drawImage(
        nx=patch * sub,
        ny=patch * sub,
        scale=1.0 / sub,
        method="no_pixel",
        offset=((centre + x - j0 - mid) * sub, (centre + y - i0 - mid) * sub),
    ).array
    image[i0 : i0 + patch, j0 : j0 + patch] = fine.reshape(patch, sub, patch, sub).sum(axis=(1, 3))
    return image


def _psf(fwhm_px: float, beta: float, size: int, sub: int = 3) -> np.ndarray:
    """A Moffat PSF within a radius of about 4 FWHM, normalised to 1. Sampled 3x finer and binned,
    which adds the pixel response without GalSim's FFT draw (5x slower here); the round cut keeps
    saturated stars round rather than showing a square stamp."""
    half = min(int(4 * fwhm_px), (size - 1) // 2)
    k = 2 * half + 1
    moffat = galsim.Moffat(beta=beta, fwhm=fwhm_px, trunc=half + 0.5)
    fine = moffat.drawImage(nx=k * sub, ny=k * sub, scale=1.0 / sub, method="no_pixel").array
    stamp = fine.reshape(k, sub, k, sub).sum(axis=(1, 3))
    return stamp / stamp.sum()


def _convolve(light: np.ndarray, psf: np.ndarray) -> np.ndarray:
    """Linear convolution of each band with the PSF: one real FFT per band on a padded fast size."""
    n, k = light.shape[-1], psf.shape[0]
    m = _fast_length(n + k - 1)
    spectrum = np.fft.rfft2(light, s=(m, m)) * np.fft.rfft2(psf.astype(np.float32), s=(m, m))
    full = np.fft.irfft2(spectrum, s=(m, m))
    c = k // 2
    return full[:, c : c + n, c : c + n]


@lru_cache(maxsize=64)
def _fast_length(n: int) -> int:
    """The smallest length >= n with no prime factor above 5, where FFTs are quick."""
    while True:
        m = n
        for p in (2, 3, 5):
            while m % p == 0:
                m //= p
        if m == 1:
            return n
        n += 1


# ---------------------------------------------------------------- what GalSim lacks


def _split_arms(disk, R, phi, b: _Body, flux: float, rng) -> list[tuple[np.ndarray, float, float]]:
    """Move part of the disk light into logarithmic spiral arms, which are bluer than the disk."""
    total = disk.sum()
    if b.n_arms == 0 or b.arm_strength == 0 or total <= 0:
        return [(disk / max(total, 1e-12), flux, b.disk_g_r)]
    start = _arm_start(b)
    pattern = _spiral(R, phi, b.n_arms, b.pitch * rng.choice((-1.0, 1.0)), start, b.arm_phase, b.arm_width)
    weight = b.arm_strength * _ramp(R, 0.7 * start, 1.1 * start)
    arms, rest = disk * weight * pattern, disk * (1.0 - weight)
    arm_sum, rest_sum = max(float(arms.sum()), 1e-12), max(float(rest.sum()), 1e-12)
    arm_share = arm_sum / (arm_sum + rest_sum)
    return [
        (rest / rest_sum, flux * (1.0 - arm_share), b.disk_g_r),
        (arms / arm_sum, flux * arm_share, b.disk_g_r - 0.35),
    ]


def _arm_start(b: _Body) -> float:
    """Arms begin at the bar's ends, or just outside the bulge."""
    return b.bar_length * b.hlr if b.bar_strength > 0 else max(0.35 * b.hlr, 1.5 * b.bulge_hlr)


def _spiral(R, phi, n_arms: int, pitch: float, start: float, phase_deg: float, width: float) -> np.ndarray:
    """1 on each of n logarithmic arms of the given pitch (sign sets the winding sense), ~0 between."""
    wind = np.log(np.maximum(R, 1e-3) / start) / math.tan(math.radians(pitch))
    wave = np.cos(n_arms * (phi - wind - math.radians(phase_deg)))
    return ((1.0 + wave) * 0.5) ** width


def _ramp(R, lo: float, hi: float) -> np.ndarray:
    """Smooth 0 -> 1 step between radii lo and hi."""
    t = np.clip((R - lo) / max(hi - lo, 1e-6), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _bar(X, Y, b: _Body) -> np.ndarray:
    """A flat (Ferrers n=1) bar in the disk plane, ending where the arms begin."""
    length = b.bar_length * b.hlr
    c, s = math.cos(math.radians(b.bar_angle)), math.sin(math.radians(b.bar_angle))
    xb, yb = X * c + Y * s, (Y * c - X * s) / BAR_AXIS_RATIO
    image = np.clip(1.0 - (xb * xb + yb * yb) / length**2, 0.0, None)
    return image / max(image.sum(), 1e-12)


def _knots(b: _Body, size: int, deviate: galsim.BaseDeviate, rng) -> np.ndarray:
    """Point-like star-forming knots from GalSim's RandomKnots, moved onto the arms of a spiral."""
    points = galsim.RandomKnots(b.n_knots, half_light_radius=b.hlr, flux=1.0, rng=deviate).points
    X, Y = points[:, 0], points[:, 1]
    if b.n_arms > 0 and b.arm_strength > 0:
        R = np.hypot(X, Y)
        wind = np.log(np.maximum(R, 1e-3) / _arm_start(b)) / math.tan(math.radians(b.pitch))
        arm = rng.integers(0, b.n_arms, len(R)) * (2.0 * math.pi / b.n_arms)
        phi = wind + math.radians(b.arm_phase) + arm + rng.normal(0.0, 0.25 / b.n_arms, len(R))
        X, Y = R * np.cos(phi), R * np.sin(phi)
    c, s = math.cos(math.radians(b.pa)), math.sin(math.radians(b.pa))
    x, y = b.x + X * c - Y * b.q * s, b.y + X * s + Y * b.q * c
    image = np.zeros((size, size), np.float32)
    _splat(image, x, y, rng.exponential(1.0, len(x)))
    return image / max(image.sum(), 1e-12)


def _dust_lane(size: int, b: _Body) -> np.ndarray:
    """Transmission (g, r, z) of a thin dust layer along the major axis, slightly off the midplane."""
    x, y = _grid(size)
    c, s = math.cos(math.radians(b.pa)), math.sin(math.radians(b.pa))
    u, v = (x - b.x) * c + (y - b.y) * s, (y - b.y) * c - (x - b.x) * s
    width = max(0.5 * b.hlr * b.q + 0.3 * b.bulge_hlr * b.bulge_q, 0.5)
    depth = np.exp(-(((v - 0.3 * width) / width) ** 4) - (u / (1.8 * b.hlr)) ** 2)
    tau = b.dust * np.array([1.0, 0.85, 0.7], np.float32)
    return np.exp(-tau[:, None, None] * depth[None])


def _disturb(disk, R, phi, b: _Body, rng) -> np.ndarray:
    """Lopsided (m=1) and patchy light, keeping the disk's flux."""
    lopside = 0.6 * b.disturbance * (R / b.hlr) * np.cos(phi - rng.uniform(0.0, 2.0 * math.pi))
    patchy = 0.8 * b.disturbance * _smooth_noise(disk.shape[0], rng)
    out = disk * np.exp(lopside + patchy)
    return out * (disk.sum() / max(out.sum(), 1e-12))


def _plumes(b: _Body, size: int, rng) -> np.ndarray:
    """One to three faint, off-centre elongated blobs that make a disturbed outline irregular."""
    x, y = _grid(size)
    image = np.zeros((size, size), np.float32)
    for _ in range(1 + int(rng.integers(0, 1 + round(2 * b.disturbance)))):
        r, angle, tilt = b.hlr * rng.uniform(0.5, 1.5), rng.uniform(0.0, 2.0 * math.pi), rng.uniform(0.0, math.pi)
        sigma, q = b.hlr * rng.uniform(0.5, 1.0), rng.uniform(0.4, 0.8)
        dx, dy = x - b.x - r * math.cos(angle), y - b.y - r * math.sin(angle)
        u, v = dx * math.cos(tilt) + dy * math.sin(tilt), (dy * math.cos(tilt) - dx * math.sin(tilt)) / q
        image += np.exp(-0.5 * (u * u + v * v) / sigma**2) / (2.0 * math.pi * sigma**2 * q)
    return image * (0.15 * b.disturbance)


def _tail(size: int, b: _Body, pitch_deg: float) -> np.ndarray:
    """A tidal tail: one open, narrow spiral stream from one to about five half-light radii, drawn
    in the sky plane (tails are not confined to the disk)."""
    x, y = _grid(size)
    dx, dy = x - b.x, y - b.y
    R, phi = np.hypot(dx, dy), np.arctan2(dy, dx)
    wind = np.log(np.maximum(R, 1e-3) / b.hlr) / math.tan(math.radians(pitch_deg))
    arc = ((1.0 + np.cos(phi - wind - math.radians(b.tail_angle))) * 0.5) ** 16
    image = arc * _ramp(R, 0.8 * b.hlr, 2.0 * b.hlr) * np.exp(-R / (2.5 * b.hlr))
    return image / max(image.sum(), 1e-12)


def _smooth_noise(size: int, rng, cells: int = 6) -> np.ndarray:
    """A unit-variance random field smooth on a sixth of the image, by bicubic upsampling."""
    coarse = rng.standard_normal((cells, cells)).astype(np.float32)
    return np.asarray(Image.fromarray(coarse, mode="F").resize((size, size), Image.Resampling.BICUBIC))


def _splat(image: np.ndarray, x, y, flux) -> None:
    """Add point sources at sub-pixel positions (offsets from the centre), bilinearly."""
    n = image.shape[0]
    fx, fy = np.asarray(x) + (n - 1) / 2.0, np.asarray(y) + (n - 1) / 2.0
    j, i = np.floor(fx).astype(int), np.floor(fy).astype(int)
    tx, ty = fx - j, fy - i
    for di, dj, w in ((0, 0, (1 - tx) * (1 - ty)), (0, 1, tx * (1 - ty)), (1, 0, (1 - tx) * ty), (1, 1, tx * ty)):
        ii, jj = i + di, j + dj
        keep = (ii >= 0) & (ii < n) & (jj >= 0) & (jj < n)
        np.add.at(image, (ii[keep], jj[keep]), (flux * w)[keep])


# ---------------------------------------------------------------- field: stars, background galaxies


def _add_stars(light: np.ndarray, n: int, rng) -> None:
    """Foreground stars as point sources; a few are bright enough to saturate."""
    if n == 0:
        return
    size = light.shape[-1]
    bright = rng.random(n) < BRIGHT_STAR_CHANCE
    mags = np.where(bright, rng.uniform(*BRIGHT_STAR_MAG, n), rng.uniform(*STAR_MAG, n))
    x, y = rng.uniform(-size / 2, size / 2, (2, n))
    for band, ratio in enumerate(np.array([_colour(g_r) for g_r in rng.uniform(0.3, 1.4, n)]).T):
        _splat(light[band], x, y, 10.0 ** ((22.5 - mags) / 2.5) * ratio)


def _add_background(light: np.ndarray, n: int, scale: float, rng) -> None:
    """Small, faint, red background galaxies (exponential or de Vaucouleurs) in stamps; numpy is
    used because a GalSim draw per tiny stamp costs more than the whole main galaxy."""
    size = light.shape[-1]
    for _ in range(n):
        hlr = rng.uniform(0.3, 1.2) / scale
        n_sersic, q, angle = float(rng.choice((1.0, 4.0))), rng.uniform(0.3, 1.0), rng.uniform(0.0, math.pi)
        half = min(int(5 * hlr) + 2, size // 2 - 1)
        cx, cy = (int(v) for v in rng.integers(half, size - half, 2))
        y, x = np.mgrid[-half:half, -half:half].astype(np.float32) + np.float32(0.5)
        u, v = x * math.cos(angle) + y * math.sin(angle), (y * math.cos(angle) - x * math.sin(angle)) / q
        b_n = 2.0 * n_sersic - 1.0 / 3.0  # Ciotti & Bertin's b(n), good to 1% here
        exponent = b_n * (np.hypot(u, v) / hlr + 0.1) ** (1.0 / n_sersic)
        # A galaxy far smaller than a pixel (small cutouts of wide fields) has a profile below
        # float32's range at every pixel centre; dividing by the peak keeps its sum away from zero.
        # Only then: the normalisation cancels the shift, and other renders stay bit-identical.
        peak = float(exponent.min())
        stamp = np.exp(-exponent if peak < UNDERFLOW_EXPONENT else peak - exponent)
        flux = 10.0 ** ((22.5 - rng.uniform(19.5, 23.0)) / 2.5)
        weights = (flux * _colour(rng.uniform(0.8, 1.7)) / stamp.sum()).astype(np.float32)
        light[:, cy - half : cy + half, cx - half : cx + half] += weights[:, None, None] * stamp


# ---------------------------------------------------------------- noise and colour


def _add_noise(native: np.ndarray, factor: float, rng: np.random.Generator) -> None:
    """Gaussian sky noise per band at DECaLS depth, lower on pixels binned from several native ones
    (finer pixels only resample the native noise). Drawn by numpy:
    GalSim's deviates fill arrays with OpenMP threads, which thrash when every core runs a worker."""
    noise = rng.standard_normal(native.shape, dtype=np.float32)
    native += noise * (SKY_SIGMA * factor).astype(np.float32)[:, None, None]


def _lupton_rgb(native: np.ndarray) -> np.ndarray:
    """Lupton et al. (2004) asinh colour composite, saturating to the colour of the source, with
    colours pulled toward grey (COLOUR_SATURATION) and zero flux shown at SKY_PEDESTAL. The asinh
    is odd, so a pixel below zero flux is darker than the pedestal rather than clipped to black."""
    rgb = native[::-1] * BAND_WEIGHT[::-1, None, None]  # z, r, g -> R, G, B
    intensity = rgb.mean(axis=0)
    rgb = intensity + np.float32(COLOUR_SATURATION) * (rgb - intensity)  # keeps the mean intensity
    top = np.float32(1.0 / math.asinh(LUPTON_TOP / LUPTON_SOFT))
    safe = np.where(np.abs(intensity) < 1e-9, np.float32(1e-9), intensity)  # asinh(x)/x -> 1 at 0
    rgb *= np.arcsinh(safe * np.float32(1.0 / LUPTON_SOFT)) * top / safe
    rgb /= np.maximum(rgb.max(axis=0), np.float32(1.0))
    display = np.float32(SKY_PEDESTAL) + np.float32(1.0 - SKY_PEDESTAL) * rgb
    np.clip(display, 0.0, 1.0, out=display)
    return (display.transpose(1, 2, 0) * np.float32(255.0) + np.float32(0.5)).astype(np.uint8)


def _lupton_rgb_version1(native: np.ndarray) -> np.ndarray:
    """Render version 1's display, kept as it was so that its files render again bit for bit: black
    below zero flux, full colour, TOP at 40."""
    rgb = native[::-1] * BAND_WEIGHT[::-1, None, None]  # z, r, g -> R, G, B
    intensity = np.maximum(rgb.mean(axis=0), np.float32(1e-6))
    top = np.float32(1.0 / math.asinh(LUPTON_TOP_VERSION1 / LUPTON_SOFT))
    stretched = np.arcsinh(intensity * np.float32(1.0 / LUPTON_SOFT)) * top
    rgb *= stretched / intensity
    np.clip(rgb, 0.0, None, out=rgb)
    rgb *= np.float32(255.0) / np.maximum(rgb.max(axis=0), np.float32(1.0))
    return (rgb.transpose(1, 2, 0) + np.float32(0.5)).astype(np.uint8)
