"""Sample the true generating parameters of one synthetic galaxy from its class's features.

Every structural number is drawn from the taxonomy's feature ranges, widened in proportion to
`difficulty`, so neighbouring classes overlap the way real Galaxy Zoo classes do and a user's own
scheme renders without any class-specific code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np

from galaxalign.taxonomy import DISTURBANCE, ClassSpec, MorphologyFeatures


@dataclass(frozen=True)
class RenderVersion:
    """One look of Galaxy10-Sim. Files record theirs, so a study rendered with an older look can be
    rendered again, pixel for pixel (`galaxalign synth --render-version`); RENDER_VERSIONS numbers them."""

    # 0 easy .. 1 hard. Calibrated so that a supervised fine-tune of the packaged backbone lands in
    # the 0.75-0.92 accuracy strong models reach on real Galaxy10 DECaLS (see README, "Calibration").
    difficulty: float
    # Cutout width in galaxy half-light radii, within fov_limits arcsec, as Galaxy Zoo cutouts are zoomed.
    fov_per_hlr: float
    fov_limits: tuple[float, float]


RENDER_VERSIONS = {
    # Black sky, full colour, frames of 10 half-light radii: files without a render_version attribute.
    1: RenderVersion(difficulty=0.35, fov_per_hlr=10.0, fov_limits=(30.0, 170.0)),
    # Sky pedestal, desaturated colour (render._lupton_rgb), frames of 17 half-light radii: GZ DECaLS
    # cutouts are 424 px at 0.04 petro_th50 arcsec/px, never finer than 0.1 arcsec/px (a 42.4 arcsec
    # frame). The upper limit only bounds the field's stars and background galaxies (their number
    # grows with the frame's area); it is version 1's 170 scaled with the zoom. Its sky and framing
    # made the set harder, so its calibrated difficulty is lower.
    2: RenderVersion(difficulty=0.3, fov_per_hlr=17.0, fov_limits=(42.4, 290.0)),
}
RENDER_VERSION = max(RENDER_VERSIONS)  # what `galaxalign synth` renders unless told otherwise
# The `generator` attribute of the files `galaxalign synth` writes (readers check it for the version).
SYNTH_GENERATOR = "galaxalign-synth"
DEFAULT_DIFFICULTY = RENDER_VERSIONS[RENDER_VERSION].difficulty

# How far each side of a feature range is widened at difficulty 1, and the hard limits after widening.
MARGIN = {"axis_ratio": 0.2, "bulge_fraction": 0.2, "pitch_deg": 10.0, "disturbance": 0.3}
LIMITS = {"axis_ratio": (0.05, 1.0), "bulge_fraction": (0.0, 1.0), "pitch_deg": (4.0, 50.0), "disturbance": (0.0, 1.0)}
# A weak bar an unbarred disk may get (with probability WEAK_BAR_CHANCE * difficulty).
WEAK_BAR = (0.02, 0.07)
WEAK_BAR_CHANCE = 0.3
# A chance projected neighbour a non-merger may get (with probability NEIGHBOUR_CHANCE * difficulty).
NEIGHBOUR_CHANCE = 0.15
# Half-light radius ranges (arcsec, log-uniform). Spirals are larger: volunteers only call arms in
# resolved galaxies, so confidently labelled spirals are big on the sky.
SPIRAL_HLR_ARCSEC = (4.0, 10.0)
DISK_HLR_ARCSEC = (3.0, 9.0)
SMOOTH_HLR_ARCSEC = (2.0, 6.0)
GALAXY10_FOV_ARCSEC = 256 * 0.262
MAX_MAGNITUDE = 17.77  # Galaxy Zoo DECaLS / SDSS main-sample limit in r


@dataclass(frozen=True)
class GalaxyParams:
    """The true values a galaxy was rendered from; angles in degrees, sizes in arcsec."""

    class_id: int
    redshift: float
    magnitude: float  # total r-band AB magnitude of the system
    half_light_radius_arcsec: float  # of the disk, or of a smooth galaxy's envelope
    fov_arcsec: float  # cutout width, zoomed to the galaxy as Galaxy Zoo DECaLS cutouts are
    seeing_fwhm_arcsec: float
    psf_beta: float  # Moffat wing index
    sky_noise: float  # multiple of the DECaLS sky noise
    offset_x_arcsec: float
    offset_y_arcsec: float
    position_angle: float
    axis_ratio: float
    bulge_fraction: float
    bulge_sersic_n: float  # on a 0.5 grid, so GalSim reuses its Sersic tables
    bulge_radius_ratio: float  # bulge half-light radius / disk half-light radius
    bulge_axis_ratio: float
    bulge_g_r: float
    disk_g_r: float
    n_arms: int
    pitch_deg: float
    arm_strength: float  # 0 no arms .. 1 all disk light in the arms
    arm_width: float  # exponent of the arm profile: larger is narrower
    arm_phase: float
    bar_strength: float  # fraction of the disk light in the bar
    bar_length: float  # bar half-length / disk half-light radius
    bar_angle: float  # in the disk plane
    knot_fraction: float  # fraction of the disk light in star-forming knots
    n_knots: int
    dust_strength: float  # g-band optical depth of an edge-on dust lane
    disturbance: float  # 0 regular .. 1 strongly lopsided and patchy
    merger_separation: float  # arcsec to the companion; 0 without one
    merger_flux_ratio: float
    merger_angle: float
    companion_axis_ratio: float
    companion_position_angle: float
    companion_bulge_fraction: float
    tail_strength: float  # tidal-tail light / body light; 0 for a chance projection
    n_stars: int
    n_background: int


PARAM_NAMES = tuple(f.name for f in fields(GalaxyParams) if f.name != "class_id")


def widen(base: tuple[float, float], name: str, difficulty: float) -> tuple[float, float]:
    """A feature range grown on both sides by MARGIN[name] * difficulty, within LIMITS[name]."""
    grow = MARGIN[name] * difficulty
    lo, hi = LIMITS[name]
    return max(lo, base[0] - grow), min(hi, base[1] + grow)


def class_ranges(features: MorphologyFeatures, difficulty: float) -> dict[str, tuple[float, float]]:
    """The widened range each feature-driven parameter of a class is drawn from."""
    ranges = {
        "axis_ratio": widen(features.axis_ratio, "axis_ratio", difficulty),
        "bulge_fraction": widen(features.bulge_fraction, "bulge_fraction", difficulty),
        "disturbance": widen(DISTURBANCE[features.disturbance], "disturbance", difficulty),
    }
    if features.spiral_arms and features.pitch_deg:
        ranges["pitch_deg"] = widen(features.pitch_deg, "pitch_deg", difficulty)
    return ranges


def sample_params(
    class_spec: ClassSpec, difficulty: float, rng: np.random.Generator, render_version: int = RENDER_VERSION
) -> GalaxyParams:
    """Draw one galaxy of a class; all randomness comes from `rng`, so a seed fixes it."""
    f = class_spec.features
    d = float(difficulty)
    ranges = class_ranges(f, d)
    uni = lambda lo, hi: float(rng.uniform(lo, hi))  # noqa: E731
    q = uni(*ranges["axis_ratio"])
    bulge_fraction = uni(*ranges["bulge_fraction"])
    disturbance = uni(*ranges["disturbance"])
    hlr = _log_uniform(rng, *_size_range(f), shrink=0.4 * d)
    structure = {
        **_bulge(f, q, bulge_fraction, hlr, rng),
        **_arms(f, ranges, d, rng),
        **_bar(f, d, rng),
        **_companion(f, hlr, d, rng),
    }
    if structure["bar_strength"] > 0 and structure["n_arms"] > 0:
        structure["arm_phase"] = structure["bar_angle"]  # arms leave from the bar ends
    system_hlr = hlr + 0.5 * structure["merger_separation"] * (structure["tail_strength"] > 0)
    look = RENDER_VERSIONS[render_version]
    fov = float(np.clip(look.fov_per_hlr * system_hlr * uni(0.85, 1.15), *look.fov_limits))
    magnitude = 16.0 - 3.5 * math.log10(hlr / 3.0) + float(rng.normal(0.0, 0.4)) + uni(0.0, 1.0) * d
    area = (fov / GALAXY10_FOV_ARCSEC) ** 2  # stars and background galaxies per Galaxy10 cutout
    return GalaxyParams(
        class_id=class_spec.id,
        redshift=float(np.clip(0.05 * (3.0 / hlr) * math.exp(rng.normal(0.0, 0.3)), 0.005, 0.3)),
        magnitude=float(np.clip(magnitude, 13.0, MAX_MAGNITUDE)),
        half_light_radius_arcsec=hlr,
        fov_arcsec=fov,
        seeing_fwhm_arcsec=uni(1.0, 1.5),
        psf_beta=uni(2.5, 4.5),
        sky_noise=uni(0.8, 1.2) * (0.6 + 0.8 * d),
        offset_x_arcsec=float(rng.normal(0.0, 0.3)),
        offset_y_arcsec=float(rng.normal(0.0, 0.3)),
        position_angle=uni(0.0, 180.0),
        axis_ratio=q,
        bulge_fraction=bulge_fraction,
        disk_g_r=uni(0.45, 0.7) if f.disk else structure["bulge_g_r"],
        knot_fraction=_knot_fraction(f, bulge_fraction, disturbance, structure["pitch_deg"], rng),
        n_knots=int(rng.integers(8, 40)),
        dust_strength=uni(0.3, 2.5) if (f.edge_on and f.disk) else 0.0,
        disturbance=disturbance,
        n_stars=int(rng.poisson(1.2 * area)),
        n_background=int(rng.poisson(3.0 * area)),
        **structure,
    )


def _size_range(f: MorphologyFeatures) -> tuple[float, float]:
    if f.spiral_arms:
        return SPIRAL_HLR_ARCSEC
    return DISK_HLR_ARCSEC if f.disk else SMOOTH_HLR_ARCSEC


def _log_uniform(rng: np.random.Generator, lo: float, hi: float, shrink: float) -> float:
    """Sizes spread evenly in log; `shrink` lowers the floor so hard sets hold more small galaxies."""
    return float(math.exp(rng.uniform(math.log(lo * (1.0 - shrink)), math.log(hi))))


def _bulge(f: MorphologyFeatures, q: float, bulge_fraction: float, hlr: float, rng) -> dict:
    """A smooth galaxy is one flattened body; a disk's bulge is rounder than the disk it sits in."""
    if f.disk:
        intrinsic = rng.uniform(0.55, 0.9)
        bulge_q = math.sqrt(intrinsic**2 + (1.0 - intrinsic**2) * q**2)
        n, ratio = rng.uniform(1.0, 4.0), 0.12 + 0.25 * bulge_fraction + rng.uniform(0.0, 0.1)
    else:
        bulge_q, n, ratio = q, rng.uniform(2.5, 6.0), rng.uniform(0.45, 0.8)
    return {
        "bulge_sersic_n": round(2.0 * n) / 2.0,
        "bulge_radius_ratio": float(ratio),
        "bulge_axis_ratio": float(bulge_q),
        "bulge_g_r": float(rng.uniform(0.78, 0.95)),
    }


def _arms(f: MorphologyFeatures, ranges: dict, d: float, rng) -> dict:
    """Arm count within the class range, pitch from the widened winding range, fainter when hard."""
    if "pitch_deg" not in ranges:
        return {"n_arms": 0, "pitch_deg": 0.0, "arm_strength": 0.0, "arm_width": 0.0, "arm_phase": 0.0}
    return {
        "n_arms": int(rng.integers(f.arm_count[0], f.arm_count[1] + 1)),
        "pitch_deg": float(rng.uniform(*ranges["pitch_deg"])),
        "arm_strength": float(min(0.95, rng.uniform(0.6, 0.95) * (1.25 - 0.6 * d))),
        "arm_width": float(rng.uniform(2.0, 5.0)),
        "arm_phase": float(rng.uniform(0.0, 360.0)),
    }


def _bar(f: MorphologyFeatures, d: float, rng) -> dict:
    """Barred classes get a strong bar; a face-on unbarred disk sometimes a weak one."""
    if f.bar:
        strength, length = rng.uniform(0.25, 0.45) * (1.2 - 0.5 * d), rng.uniform(0.6, 1.0)
    elif f.disk and not f.edge_on and rng.random() < WEAK_BAR_CHANCE * d:
        strength, length = rng.uniform(*WEAK_BAR), rng.uniform(0.4, 0.7)
    else:
        return {"bar_strength": 0.0, "bar_length": 0.0, "bar_angle": 0.0}
    return {"bar_strength": float(strength), "bar_length": float(length), "bar_angle": float(rng.uniform(0.0, 360.0))}


def _companion(f: MorphologyFeatures, hlr: float, d: float, rng) -> dict:
    """Mergers get a close companion with tidal tails; others rarely a chance neighbour without tails."""
    if f.merger:
        sep, ratio = hlr * rng.uniform(1.0, 3.0), rng.uniform(0.25, 1.0)
        tails = rng.uniform(0.15, 0.4) * (1.2 - 0.5 * d)
    elif rng.random() < NEIGHBOUR_CHANCE * d:
        sep, ratio, tails = hlr * rng.uniform(2.0, 4.0), rng.uniform(0.1, 0.4), 0.0
    else:
        return dict.fromkeys(
            (
                "merger_separation",
                "merger_flux_ratio",
                "merger_angle",
                "companion_axis_ratio",
                "companion_position_angle",
                "companion_bulge_fraction",
                "tail_strength",
            ),
            0.0,
        )
    return {
        "merger_separation": float(sep),
        "merger_flux_ratio": float(ratio),
        "merger_angle": float(rng.uniform(0.0, 360.0)),
        "companion_axis_ratio": float(rng.uniform(0.4, 1.0)),
        "companion_position_angle": float(rng.uniform(0.0, 180.0)),
        "companion_bulge_fraction": float(rng.uniform(0.1, 0.7)),
        "tail_strength": float(tails),
    }


def _knot_fraction(f: MorphologyFeatures, bulge_fraction: float, disturbance: float, pitch: float, rng) -> float:
    """Star-forming knots live in disks: more in open arms and disturbed disks, fewer under big bulges."""
    if not f.disk:
        return 0.0
    arms = 0.5 + pitch / 25.0 if pitch else 1.0
    return float((1.0 - bulge_fraction) * rng.uniform(0.02, 0.08) * arms + 0.05 * disturbance)
