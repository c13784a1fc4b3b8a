"""Input pipeline, CPU side: how fast images come out of a Galaxy10-sized h5, per process.

Makes a Galaxy10-layout file of N 256x256x3 galaxies (a few hundred Galaxy10-Sim renders, each
repeated with a few pixels of roll so no two chunks are the same), converts it with
`convert_h5` to three storages (raw, gzip as Galaxy10 DECaLS is, lzf), each one image per
chunk, and times for each: (a) read + decode in one process (`dataset[i].image` in a shuffled
order), (b) `image_batches` with 0, 1 and 2 workers at batch 256 (worker start-up included),
and, once, (c) the per-process CPU cost of going to 224 px (resize alone, and the trainer's
`GalaxyAugment.apply`: resize + rotation/flip/shift/scale). It then extrapolates to a GPU host
with 16 cores (15 worker processes at the per-worker rate) against the 3,000 images/s target.
One more row is the layout `convert` exists for: the same images gzip-compressed in the chunks
h5py's automatic chunking picks for the full Galaxy10 DECaLS array, (555, 16, 16, 1), read at
random (a sample of `--slow-reads` images only: each costs about half a second).
Files are read warm (just written, so in the page cache, as a 2.5 GB set would be on a host
with the RAM for it).

Run `nice python benchmarks/bench_input.py [--n 2000] [--workers 0,1,2] [--keep]`.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Generator
from functools import partial
from pathlib import Path
from typing import Any, cast
from unittest import mock

import h5py
import numpy as np
import torch
import torch.nn.functional as F

from galaxalign.data import GalaxyAugment, H5Dataset
from galaxalign.data import loader as loader_module
from galaxalign.data.convert import convert_h5
from galaxalign.data.datasets import slow_layout
from galaxalign.data.loader import Batch, image_batches, index_batches
from galaxalign.synth import SynthConfig, write_synth
from galaxalign.taxonomy import load_scheme

TITLE = "Input pipeline, CPU side: read + decode per process, and the 16-core extrapolation"
STORAGES = ("none", "gzip", "lzf")
TARGET = 3000  # images/s the GPU trains at (packaged, batch 256, H200; see docs/performance.md)
HOST_WORKERS = 15  # a 16-core host: 15 loader workers beside the training process
SIZE, OUT = 256, 224
GALAXY10_SHAPE = (17736, SIZE, SIZE, 3)
AUTO = "gzip, h5py auto chunks"  # the storage row of the automatically chunked layout
EXTRA: dict = {}  # what run() measured beyond its rows: worker start-up, load average, folder


def make_source(folder: Path, n: int, renders: int) -> Path:
    """A raw, one-image-per-chunk Galaxy10-layout h5 of `n` images made from `renders` renders."""
    classes = len(load_scheme("galaxy10"))
    base_path = folder / "renders.h5"
    write_synth(base_path, SynthConfig(per_class=max(1, round(renders / classes)), size=SIZE))
    with h5py.File(base_path) as base:
        pixels = base["images"][()]
        columns = {k: base[k][()] for k in ("ans", "ra", "dec", "redshift", "pxscale")}
        params = {k: v[()] for k, v in base["params"].items()}
        attrs = dict(base.attrs)
    b = len(pixels)
    take = np.arange(n) % b
    path = folder / "source.h5"
    with h5py.File(path, "w") as f:
        images = f.create_dataset("images", (n, SIZE, SIZE, 3), np.uint8, chunks=(1, SIZE, SIZE, 3))
        for start in range(0, n, b):
            stop = min(start + b, n)
            for k in range(start, stop):
                r = k // b  # repeat r of render k % b: rolled 3r px down, 2r px right
                images[k] = np.roll(pixels[k % b], (3 * r, 2 * r), axis=(0, 1))
        for key, column in columns.items():
            f.create_dataset(key, data=column[take])
        group = f.create_group("params")
        for key, column in params.items():
            group.create_dataset(key, data=column[take])
        f.attrs.update(attrs)
    base_path.unlink()
    return path


def auto_chunked(source: Path, target: Path) -> tuple[Path, tuple[int, ...]]:
    """`source`'s images gzip-compressed (h5py's default level) in the chunks h5py guesses for the
    full Galaxy10 DECaLS array, as a file written with `chunks=True` at that size would be."""
    from h5py._hl.filters import guess_chunk

    with h5py.File(source) as src, h5py.File(target, "w") as out:
        n = src["images"].shape[0]
        guessed = guess_chunk(GALAXY10_SHAPE, None, 1)
        chunks = (min(guessed[0], n), *guessed[1:])
        images = out.create_dataset("images", (n, SIZE, SIZE, 3), np.uint8, chunks=chunks, compression="gzip")
        for start in range(0, n, chunks[0]):
            images[start : start + chunks[0]] = src["images"][start : start + chunks[0]]
        for key in src:
            if key != "images":
                src.copy(src[key], out, name=key)
        out.attrs.update(dict(src.attrs))
        assert slow_layout(images) is not None  # the layout H5Dataset warns about
    return target, chunks


def load_average() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0]) if Path("/proc/loadavg").exists() else float("nan")


def read_rate(path: Path, order: np.ndarray) -> float:
    dataset = H5Dataset(path)
    dataset[int(order[0])]  # open, read the index once
    start = time.perf_counter()
    for i in order:
        _ = dataset[int(i)].image
    return len(order) / (time.perf_counter() - start)


def loader_rate(path: Path, order: np.ndarray, workers: int, batch_size: int) -> float:
    """Images/s through `image_batches`, worker start-up included (it is paid every epoch)."""
    dataset = H5Dataset(path)
    start = time.perf_counter()
    count = sum(len(batch) for batch in image_batches(dataset, index_batches(order, batch_size), workers=workers))
    return count / (time.perf_counter() - start)


def first_batch_seconds(path: Path, context: str, workers: int = 2) -> float:
    """Seconds to the first 1-image batch: what starting `workers` workers costs."""
    dataset = H5Dataset(path)
    with mock.patch.object(loader_module, "worker_context", lambda: multiprocessing.get_context(context)):
        start = time.perf_counter()
        batches = cast(Generator[Batch, None, None], image_batches(dataset, [[0], [1]], workers=workers))
        next(batches)
        seconds = time.perf_counter() - start
        batches.close()
    return seconds


def resize_rates(path: Path, batch: int = 64, reps: int = 3) -> dict[str, float]:
    """Per-process (1 thread) images/s: uint8 -> float -> 224 px, and the full GalaxyAugment."""
    dataset = H5Dataset(path)
    pixels = next(image_batches(dataset, [list(range(batch))]))
    assert isinstance(pixels, torch.Tensor)  # an h5's images share a shape
    augment = GalaxyAugment(OUT)
    params = augment.sample_params(batch, torch.Generator().manual_seed(0))
    steps = {
        "resize": lambda: F.interpolate(
            pixels.float().div_(255.0), size=(OUT, OUT), mode="bilinear", align_corners=False, antialias=True
        ),
        "augment": lambda: augment.apply(pixels, params),
    }
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # what one loader worker has
    try:
        rates = {}
        for name, step in steps.items():
            step()
            best = min(_timed(step) for _ in range(reps))  # best of a few: load spikes hit single calls
            rates[name] = batch / best
        return rates
    finally:
        torch.set_num_threads(threads)


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def run(
    n: int = 2000,
    workers: tuple[int, ...] = (0, 1, 2),
    batch_size: int = 256,
    renders: int = 300,
    keep: str | None = None,
    repeats: int = 3,
    slow_reads: int = 12,
) -> list[dict]:
    """One row per storage; the resize/augment rates (independent of storage) repeat on each.

    Every rate is the best of `repeats` rounds, each round timing every storage and worker
    count in turn, so that other jobs on a shared machine slow all of them alike.
    """
    folder = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="bench_input."))
    folder.mkdir(parents=True, exist_ok=True)
    try:
        started = load_average()
        source = make_source(folder, n, renders)
        raw_mb = n * SIZE * SIZE * 3 / 1e6
        order = np.random.default_rng(0).permutation(n)
        paths: dict[str, Path] = {}
        rows: dict[str, dict[str, Any]] = {}
        for storage in STORAGES:
            t = time.perf_counter()
            paths[storage] = convert_h5(source, folder / f"{storage}.h5", storage)
            convert_s = time.perf_counter() - t
            mb = paths[storage].stat().st_size / 1e6
            rows[storage] = {
                "storage": storage,
                "MB": round(mb, 1),
                "of raw": round(mb / raw_mb, 3),
                "convert s": round(convert_s, 1),
            }
        t = time.perf_counter()
        auto, auto_chunks = auto_chunked(source, folder / "auto.h5")
        mb = auto.stat().st_size / 1e6
        auto_row = {"storage": f"{AUTO} {auto_chunks}", "MB": round(mb, 1), "of raw": round(mb / raw_mb, 3)}
        auto_row["convert s"] = round(time.perf_counter() - t, 1)  # writing it, here
        source.unlink()
        loads = [load_average()]
        best: dict[tuple[str, str], float] = {}
        for _ in range(repeats):
            for storage, path in paths.items():
                timings: dict[str, Callable[[], float]] = {"read img/s (1 proc)": partial(read_rate, path, order)}
                for w in workers:
                    timings[f"loader w{w} img/s"] = partial(loader_rate, path, order, w, batch_size)
                for key, measure in timings.items():
                    best[storage, key] = max(best.get((storage, key), 0.0), measure())
            slow = read_rate(auto, order[:slow_reads])
            best[AUTO, "read img/s (1 proc)"] = max(best.get((AUTO, "read img/s (1 proc)"), 0.0), slow)
            loads.append(load_average())
        rates = resize_rates(paths["none"], reps=3 * repeats)
        startup = {
            ctx: first_batch_seconds(paths["none"], ctx)
            for ctx in ("fork", "spawn")
            if ctx in multiprocessing.get_all_start_methods()
        }
        out = []
        for storage, row in rows.items():
            row.update({key: round(value) for (s, key), value in best.items() if s == storage})
            per_worker = row.get("loader w1 img/s", row["read img/s (1 proc)"])
            row["resize224 img/s (1 proc)"] = round(rates["resize"])
            row["augment224 img/s (1 proc)"] = round(rates["augment"])
            row[f"x{HOST_WORKERS} read"] = round(HOST_WORKERS * per_worker)
            row[f"x{HOST_WORKERS} read+resize"] = round(HOST_WORKERS / (1 / per_worker + 1 / rates["resize"]))
            row[f"x{HOST_WORKERS} read+augment"] = round(HOST_WORKERS / (1 / per_worker + 1 / rates["augment"]))
            row[f">= {TARGET}"] = "/".join(
                "met" if row[k] >= TARGET else "no"
                for k in (f"x{HOST_WORKERS} read", f"x{HOST_WORKERS} read+resize", f"x{HOST_WORKERS} read+augment")
            )
            out.append(row)
        auto_row["read img/s (1 proc)"] = round(best[AUTO, "read img/s (1 proc)"], 1)
        out.append({key: auto_row.get(key, "-") for key in out[0]})  # the rest not timed: hours at this rate
        EXTRA.update(
            startup=startup,
            load=(started, max(loads + [load_average()])),
            folder=folder,
            layout_ratio=best["gzip", "read img/s (1 proc)"] / best[AUTO, "read img/s (1 proc)"],
            slow_reads=min(slow_reads, n),
        )
        return out
    finally:
        if not keep:
            shutil.rmtree(folder, ignore_errors=True)


def markdown(rows: list[dict]) -> str:
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(str(row[k]) for k in keys) + " |" for row in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="images in the test file (default 2000)")
    parser.add_argument("--workers", default="0,1,2", help="loader worker counts to time (default 0,1,2)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--renders", type=int, default=300, help="distinct Galaxy10-Sim renders to repeat")
    parser.add_argument("--keep", metavar="FOLDER", default=None, help="write the files here and keep them")
    parser.add_argument("--repeats", type=int, default=3, help="rounds; each rate is the best of them")
    parser.add_argument("--slow-reads", type=int, default=12, help="images read from the auto-chunked file")
    args = parser.parse_args()
    workers = tuple(int(w) for w in args.workers.split(",") if w.strip())
    rows = run(args.n, workers, args.batch_size, args.renders, args.keep, args.repeats, args.slow_reads)
    extra = EXTRA
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(
        f"{TITLE}\n{args.n} images of {SIZE}x{SIZE}x3, one per chunk, batch {args.batch_size}; {cores} cores; "
        f"best of {args.repeats} rounds; torch {torch.__version__}, h5py {h5py.__version__} "
        f"(HDF5 {h5py.version.hdf5_version}); 1-min load average {extra['load'][0]:.2f} at the start, "
        f"{extra['load'][1]:.2f} at most after a round\n"
    )
    print(markdown(rows))
    print(
        f"\nx{HOST_WORKERS}: {HOST_WORKERS} workers at the per-worker rate (loader w1 where timed, else read); "
        "'read+resize' and 'read+augment' add that step's 1-thread cost per image (as if done in the workers)."
    )
    print(
        f"Random reads, gzip one image per chunk (convert) against gzip in automatic chunks "
        f"({extra['slow_reads']} images): {extra['layout_ratio']:.0f}x faster."
    )
    print(
        "Worker start-up, 2 workers, seconds to the first batch: "
        + ", ".join(f"{ctx} {s:.2f}" for ctx, s in extra["startup"].items())
    )
    if args.keep:
        print(f"files kept in {extra['folder']}")


if __name__ == "__main__":
    main()
