"""Render a scheme's classes into an HDF5 file with the layout of Galaxy10_DECals.h5.

Galaxy i is drawn from its own seed, derived from (seed, i), so the file is identical for any
worker count. Workers stream ordered chunks to the parent, which alone writes the file, through
a temporary name that only replaces the target once complete.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import signal
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

import h5py
import numpy as np

from galaxalign._version import __version__
from galaxalign.config import option, required
from galaxalign.errors import GalaxAlignError
from galaxalign.io import atomic_path
from galaxalign.progress import progress_bar
from galaxalign.synth.params import PARAM_NAMES, RENDER_VERSION, RENDER_VERSIONS, SYNTH_GENERATOR, sample_params
from galaxalign.synth.render import render_galaxy
from galaxalign.taxonomy import Scheme, load_scheme

SIZE_RANGE = (16, 1024)
DEFLATE_LEVEL = 1  # noisy images barely shrink further at higher levels, which cost 1.5-3x more
MAX_CHUNK = 16  # galaxies per worker task: big enough to amortise IPC, small enough to balance
# Spawn keys that keep the per-galaxy streams and the class shuffle independent.
GALAXY_KEY, ORDER_KEY = 0, 1
# DECaLS footprint, roughly: declination limits in degrees.
DEC_RANGE = (-20.0, 35.0)


@dataclass(frozen=True)
class SynthConfig:
    """What to render; `difficulty=None` means the render version's calibrated difficulty and
    `workers=0` all cores."""

    per_class: int = required("galaxies per class")
    size: int = option(256, "image size in pixels")
    seed: int = option(0, "seed of the parameters and noise")
    scheme: str = option("galaxy10", "galaxy10, gz2, or a scheme JSON/YAML file")
    difficulty: float | None = option(None, "0 easy .. 1 hard (default: calibrated)")
    render_version: int = option(
        RENDER_VERSION, "the look: 2, or 1 to render files made before 2026-12-01 again (params.RENDER_VERSIONS)"
    )
    workers: int = option(0, "processes (0: all cores)")


@dataclass(frozen=True)
class _Job:
    """Everything a worker needs; plain picklable data, so spawn-started workers get it too."""

    scheme: Scheme
    labels: np.ndarray
    size: int
    seed: int
    difficulty: float
    render_version: int


@dataclass(frozen=True)
class _Chunk:
    start: int
    images: list[bytes]  # each image deflated in the worker, written to the file as its HDF5 chunk
    params: np.ndarray  # (k, len(PARAM_NAMES)) float32
    sky: np.ndarray  # (k, 2) ra, dec


def write_synth(out_path: str | os.PathLike, config: SynthConfig) -> None:
    """Render `config.per_class` galaxies of every class of the scheme into `out_path`."""
    _validate(config, out_path)
    scheme = load_scheme(config.scheme)
    if len(scheme) > 256:
        raise GalaxAlignError(f"{config.scheme}: {len(scheme)} classes do not fit the uint8 'ans' labels")
    look = RENDER_VERSIONS[config.render_version]
    difficulty = look.difficulty if config.difficulty is None else float(config.difficulty)
    labels = class_order(len(scheme), config.per_class, config.seed)
    job = _Job(scheme, labels, config.size, config.seed, difficulty, config.render_version)
    n = len(job.labels)
    params = np.empty((n, len(PARAM_NAMES)), np.float32)
    sky = np.empty((n, 2), np.float64)
    with atomic_path(out_path) as tmp:
        with h5py.File(tmp, "w") as h5:
            images = _create_images(h5, n, config.size)
            with progress_bar(n, "synth", unit="img") as bar:
                for chunk in _render_all(job, _worker_count(config.workers)):
                    for i, blob in enumerate(chunk.images, start=chunk.start):
                        images.id.write_direct_chunk((i, 0, 0, 0), blob)
                    rows = slice(chunk.start, chunk.start + len(chunk.images))
                    params[rows], sky[rows] = chunk.params, chunk.sky
                    bar.update(len(chunk.images))
            _write_tables(h5, job, params, sky)
            _describe(h5, job, config)


def class_order(n_classes: int, per_class: int, seed: int) -> np.ndarray:
    """Balanced labels in a seeded shuffle, so the file is not sorted by class."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(ORDER_KEY,)))
    return rng.permutation(np.repeat(np.arange(n_classes, dtype=np.uint8), per_class))


def make_galaxy(job: _Job, index: int) -> tuple[np.ndarray, np.ndarray, tuple[float, float]]:
    """Galaxy `index` of the file: its image, its parameter row and a fake sky position."""
    rng = np.random.default_rng(np.random.SeedSequence(job.seed, spawn_key=(GALAXY_KEY, index)))
    params = sample_params(job.scheme[int(job.labels[index])], job.difficulty, rng, job.render_version)
    image = render_galaxy(params, job.size, rng, job.render_version)
    row = np.array([getattr(params, name) for name in PARAM_NAMES], np.float32)
    return image, row, _sky_position(rng)


def _sky_position(rng: np.random.Generator) -> tuple[float, float]:
    """Uniform on the sphere within the DECaLS declination band."""
    lo, hi = (math.sin(math.radians(v)) for v in DEC_RANGE)
    return float(rng.uniform(0.0, 360.0)), math.degrees(math.asin(rng.uniform(lo, hi)))


# ---------------------------------------------------------------- validation


def _validate(config: SynthConfig, out_path) -> None:
    def bad(option: str, problem: str) -> GalaxAlignError:
        return GalaxAlignError(f"{out_path}: --{option} {problem}")

    if not _is_int(config.per_class) or config.per_class < 1:
        raise bad("per-class", f"must be an integer >= 1, got {config.per_class!r}")
    if not _is_int(config.size) or not SIZE_RANGE[0] <= config.size <= SIZE_RANGE[1]:
        raise bad("size", f"must be an integer in {SIZE_RANGE[0]}..{SIZE_RANGE[1]}, got {config.size!r}")
    if not _is_int(config.seed) or config.seed < 0:
        raise bad("seed", f"must be an integer >= 0, got {config.seed!r}")
    d = config.difficulty
    if d is not None and (isinstance(d, bool) or not isinstance(d, (int, float)) or not 0.0 <= d <= 1.0):
        raise bad("difficulty", f"must be a number in 0..1, got {d!r}")
    if not _is_int(config.render_version) or config.render_version not in RENDER_VERSIONS:
        versions = ", ".join(map(str, RENDER_VERSIONS))
        raise bad("render-version", f"must be one of {versions}, got {config.render_version!r}")
    if not _is_int(config.workers) or config.workers < 0:
        raise bad("workers", f"must be an integer >= 0 (0 = all cores), got {config.workers!r}")


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


# ---------------------------------------------------------------- rendering, in or out of process

_WORKER_JOB: _Job | None = None


def _worker_count(requested: int) -> int:
    if requested:
        return requested
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _render_all(job: _Job, workers: int) -> Iterator[_Chunk]:
    """Chunks in file order; one worker renders in this process (no start-up cost, easy to debug)."""
    n = len(job.labels)
    step = max(1, min(MAX_CHUNK, math.ceil(n / (4 * workers))))
    spans = [(start, min(start + step, n)) for start in range(0, n, step)]
    if workers == 1 or len(spans) == 1:
        for span in spans:
            yield _render_chunk(job, span)
        return
    with multiprocessing.get_context().Pool(min(workers, len(spans)), _init_worker, (job,)) as pool:
        yield from pool.imap(_render_span, spans)


def _init_worker(job: _Job) -> None:
    """Workers leave Ctrl-C to the parent, which stops the pool and removes the partial file."""
    global _WORKER_JOB
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _WORKER_JOB = job


def _render_span(span: tuple[int, int]) -> _Chunk:
    assert _WORKER_JOB is not None  # set by _init_worker in every pool process
    return _render_chunk(_WORKER_JOB, span)


def _render_chunk(job: _Job, span: tuple[int, int]) -> _Chunk:
    images, rows, sky = zip(*(make_galaxy(job, i) for i in range(*span)))
    blobs = [zlib.compress(np.ascontiguousarray(image).tobytes(), DEFLATE_LEVEL) for image in images]
    return _Chunk(span[0], blobs, np.stack(rows), np.array(sky))


# ---------------------------------------------------------------- the HDF5 file


def _create_images(h5: h5py.File, n: int, size: int) -> h5py.Dataset:
    """Deflated, one chunk per image, so readers load images lazily; workers do the deflating."""
    return h5.create_dataset(
        "images",
        (n, size, size, 3),
        np.uint8,
        chunks=(1, size, size, 3),
        compression="gzip",
        compression_opts=DEFLATE_LEVEL,
    )


def _write_tables(h5: h5py.File, job: _Job, params: np.ndarray, sky: np.ndarray) -> None:
    """Labels, the Galaxy10 metadata columns, and one `params/<name>` column per generating value."""
    column = {name: j for j, name in enumerate(PARAM_NAMES)}
    h5.create_dataset("ans", data=job.labels.astype(np.uint8))
    h5.create_dataset("ra", data=sky[:, 0])
    h5.create_dataset("dec", data=sky[:, 1])
    h5.create_dataset("redshift", data=params[:, column["redshift"]].astype(np.float64))
    h5.create_dataset("pxscale", data=params[:, column["fov_arcsec"]].astype(np.float64) / job.size)
    group = h5.create_group("params")
    for name, j in column.items():
        group.create_dataset(name, data=params[:, j])


def _describe(h5: h5py.File, job: _Job, config: SynthConfig) -> None:
    h5.attrs.update(
        {
            "generator": SYNTH_GENERATOR,
            "version": __version__,
            "render_version": job.render_version,  # the look (params.RENDER_VERSIONS); absent: version 1
            "seed": job.seed,
            "difficulty": job.difficulty,
            "per_class": config.per_class,
            "size": job.size,
            "scheme": job.scheme.name,
            "class_names": json.dumps(job.scheme.names),
            "scheme_json": json.dumps(job.scheme.to_dict()),
        }
    )
