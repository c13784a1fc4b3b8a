"""Peak resident memory of training from a Galaxy10-sized HDF5 file, measured in a child process.

The file has Galaxy10 DECaLS's shape, 17,736 x 256 x 256 x 3 uint8 (3.5 GB uncompressed, one
chunk per image), filled with noise in /tmp and deleted afterwards. Each row is a
fresh child that reports its own VmHWM (the kernel's RSS high-water mark, so short peaks count):
importing the package and torch, then also building the `packaged` model, then training it for
`steps` optimiser steps with the default batch and image size. H5Dataset reads one image at a
time, so the 3.5 GB of pixels should not show up in RSS (the page cache is not RSS).
Target: training peak <= 3 GB. Run `python benchmarks/bench_memory.py`.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

from galaxalign.training import TrainConfig

TITLE = "Peak RSS (child process) training from a Galaxy10-sized h5 (17,736 x 256 x 256 x 3 uint8)"
TARGET_GB = 3.0
GALAXY10_SHAPE = (17_736, 256, 256, 3)


def write_noise_h5(path: Path, shape=GALAXY10_SHAPE, block: int = 256, seed: int = 0) -> None:
    """Noise images in Galaxy10's layout: one random block of `block` images, shifted per block."""
    n = shape[0]
    noise = np.random.default_rng(seed).integers(0, 256, (block, *shape[1:]), np.uint8)
    with h5py.File(path, "w") as f:
        images = f.create_dataset("images", shape, np.uint8, chunks=(1, *shape[1:]))
        for start in range(0, n, block):
            stop = min(start + block, n)
            images[start:stop] = noise[: stop - start] + np.uint8(start // block)
        f["ans"] = np.arange(n) % 10


def child(stage: str, data: str, out: str, method: str, steps: int) -> None:
    """Run one stage and print {"peak_gb": ...}: `import` (torch and the trainer), `model` or `train`."""
    from galaxalign.runs import build_model
    from galaxalign.training import train

    if stage == "model":
        build_model(TrainConfig(data=data, out=out, method=method), n_classes=10)
    elif stage == "train":
        train(TrainConfig(data=data, out=out, method=method), pause_after_steps=steps)
    print(json.dumps({"peak_gb": peak_rss_kb() * 1024 / 1e9}))


def peak_rss_kb() -> int:
    """This process's RSS high-water mark (VmHWM). Not `ru_maxrss`: Linux carries that over from
    the parent's memory at fork + exec, so a child of a 1.6 GB parent reports >= 1.6 GB."""
    status = Path("/proc/self/status").read_text()
    return int(status.split("VmHWM:")[1].split()[0])


def measure(stage: str, data: Path, out: Path, method: str, steps: int) -> tuple[float, float]:
    """Peak RSS in GB and wall seconds of one child."""
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, __file__, "--child", stage, str(data), str(out), method, str(steps)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])["peak_gb"], time.perf_counter() - start


def run(method: str = "galaxalign", steps: int = 24) -> list[dict]:
    """Rows: import, import + model, training `steps` steps (TrainConfig defaults: batch 32, 112 px)."""
    batch = TrainConfig(data="-", out="-").batch_size
    rows = []
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        data = Path(tmp) / "galaxy10_noise.h5"
        start = time.perf_counter()
        write_noise_h5(data)
        write_s = time.perf_counter() - start
        size_gb = data.stat().st_size / 1e9
        for stage, what in (
            ("import", "import torch + galaxalign"),
            ("model", "+ build packaged model"),
            ("train", f"train {method}, {steps} steps, batch {batch}, 112 px"),
        ):
            peak, seconds = measure(stage, data, Path(tmp) / f"run-{stage}", method, steps)
            rows.append(
                {
                    "stage": what,
                    "peak RSS GB": round(peak, 3),
                    "child s": round(seconds, 1),
                    "h5 GB": round(size_gb, 2),
                    "h5 write s": round(write_s, 1),
                    f"<= {TARGET_GB:g} GB": ("met" if peak <= TARGET_GB else "missed") if stage == "train" else "",
                }
            )
    return rows


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        stage, data, out, method, steps = sys.argv[2:7]
        child(stage, data, out, method, int(steps))
    else:
        sys.path.insert(0, str(Path(__file__).parent))
        from run import markdown_table

        print(f"{TITLE}\n")
        print(markdown_table(run()))
