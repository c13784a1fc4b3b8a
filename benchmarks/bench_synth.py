"""Galaxy10-Sim throughput: render and write N galaxies at 128 and 256 px with all cores.

Timed end to end as a user runs it (worker start-up and HDF5 writing included), so the numbers
are what `galaxalign synth` delivers. Run `python benchmarks/bench_synth.py [--images-128 N]`.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from galaxalign.synth import SynthConfig, write_synth
from galaxalign.taxonomy import load_scheme

TITLE = "Galaxy10-Sim rendering, all cores, end to end (HDF5 writing included)"


def run(images_128: int = 1000, images_256: int = 300, workers: int = 0) -> list[dict]:
    """One row per image size: size, images, seconds, images/s."""
    n_classes = len(load_scheme("galaxy10"))
    rows = []
    for size, wanted in ((128, images_128), (256, images_256)):
        per_class = max(1, round(wanted / n_classes))
        with tempfile.TemporaryDirectory() as tmp:
            config = SynthConfig(per_class=per_class, size=size, workers=workers)
            start = time.perf_counter()
            write_synth(Path(tmp) / "bench.h5", config)
            seconds = time.perf_counter() - start
        images = per_class * n_classes
        rows.append(
            {"size": size, "images": images, "seconds": round(seconds, 2), "images/s": round(images / seconds, 1)}
        )
    return rows


def markdown(rows: list[dict]) -> str:
    lines = ["| size | images | seconds | images/s |", "|---:|---:|---:|---:|"]
    lines += [f"| {r['size']} | {r['images']} | {r['seconds']:.2f} | {r['images/s']:.1f} |" for r in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images-128", type=int, default=1000)
    parser.add_argument("--images-256", type=int, default=300)
    parser.add_argument("--workers", type=int, default=0, help="0 = all cores")
    args = parser.parse_args()
    rows = run(args.images_128, args.images_256, args.workers)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"{TITLE}; workers: {args.workers or cores} of {cores} cores\n")
    print(markdown(rows))


if __name__ == "__main__":
    main()
