"""The rest of the real user's GPU path, each check a row of one table: what gpu_e2e.py's `clip`
rows leave out (issue 22, item 15).

Checks, all on a random CLIP ViT-B/16 saved as an `hf:` folder (the GPU machine has no network)
and a Galaxy10-layout h5 of numpy galaxies at 256 px:
- `two-stage`: `--method galaxalign`, stage 1 then the stage switch (a second image tower, the
  symbol encoder, and a new optimiser) and stage 2, validation and the test summary; images/s
  and peak GPU memory of each stage.
- `ddp-1`: the same run under a 1-process NCCL process group, so the DDP wrapper (its parameter
  broadcast and gradient all-reduce, re-wrapped at the stage switch) and the barriers run on
  NCCL; its logged losses against the plain run's. At world size 1 the feature gathers and the
  loss all-reduce are skipped, and two ranks cannot share one GPU: those need two GPUs (they are
  tested on CPU with 2-process gloo torchrun).
- `fp16-ckpt`: the CLIP saved in fp16, trained under bf16 autocast: fp32 master weights, finite
  losses.
- `compile`: `--compile` (torch.compile of the loss module): first-step time and images/s.
- `syncs/step`: host-device syncs of each optimiser step of `galaxalign` stage 1, counted with
  `torch.cuda.set_sync_debug_mode("warn")` between steps, and where they come from.
- `evaluate`, `index`: `evaluate_run` and `build_index` of the two-stage run, images/s.
- `h5 read`: random single-image reads of a Galaxy10-layout h5 written with the chunk shape h5py
  picks by default for Galaxy10 DECaLS's (17736, 256, 256, 3) and gzip, against the same images
  after `galaxalign convert` (one image per chunk); and the converted file through the loader.

`--include FILE` folds the markdown tables of gpu_bench.py and gpu_e2e.py (their captured
stdout) into the same table, so `benchmarks/gpu.sh` prints one table. Each check runs to its
share of `--budget` (a SIGALRM deadline, as in gpu_e2e.py) and a failure is a row, not the end.
`--device cpu --smoke` runs every check tiny on a CPU (tests/test_gpu_script.py); the sync
count needs CUDA and says so there.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import socket
import sys
import tempfile
import time
import traceback
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import h5py  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402

import gpu_e2e  # noqa: E402  (first: it sets the offline variables and stands in for a missing GalSim)
from galaxalign.data import H5Dataset  # noqa: E402
from galaxalign.data.convert import convert_h5  # noqa: E402
from galaxalign.data.loader import image_batches  # noqa: E402
from galaxalign.devices import resolve_device  # noqa: E402
from galaxalign.training import TrainConfig  # noqa: E402
from galaxalign.training.trainer import Trainer  # noqa: E402

GALAXY10_SHAPE = (17_736, 256, 256, 3)
CHECKS = ("two-stage", "ddp-1", "fp16-ckpt", "compile", "syncs/step", "evaluate", "index", "h5 read")
SYNC_WARNING = "synchroniz"  # torch's "called a synchronizing CUDA operation"


@dataclass(frozen=True)
class Sizes:
    px: int  # stored image size
    image_size: int  # trainer input size
    batch: int
    per_class: int  # galaxies per class in the training file
    steps: int  # optimiser steps of the single-stage checks
    reads: int  # random single-image reads per h5 layout
    full: bool  # ViT-B/16 sizes, else tiny


GPU = Sizes(px=256, image_size=224, batch=128, per_class=100, steps=12, reads=24, full=True)
SMOKE = Sizes(px=64, image_size=32, batch=8, per_class=8, steps=3, reads=4, full=False)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stage_rates(metrics: Path, batch: int) -> dict[int, float]:
    """images/s of each stage, from the trainer's cumulative rate on each logged step."""
    records = [json.loads(line) for line in metrics.read_text().splitlines() if '"images_per_s"' in line]
    elapsed = [batch * (i + 1) / r["images_per_s"] for i, r in enumerate(records)]
    rates, start, before = {}, 0.0, 0
    for stage in sorted({r["stage"] for r in records}):
        rows = [i for i, r in enumerate(records) if r["stage"] == stage]
        end = elapsed[rows[-1]]
        rates[stage] = (rows[-1] + 1 - before) * batch / (end - start) if end > start else float("nan")
        start, before = end, rows[-1] + 1
    return rates


def logged_losses(metrics: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in metrics.read_text().splitlines() if '"loss"' in line]


def per_step(counts_at_steps: list[int]) -> list[int]:
    """Syncs within each optimiser step, from the running count at each step's end (the first
    interval, which holds the start of the fit, is left out)."""
    return [b - a for a, b in zip(counts_at_steps, counts_at_steps[1:])]


class Checks:
    def __init__(self, args: argparse.Namespace, sizes: Sizes, device: torch.device, work: Path):
        self.args, self.sizes, self.device, self.work = args, sizes, device, work
        self.started = time.perf_counter()
        self.rows: list[dict] = []
        self.workers = args.workers if args.workers is not None else max(min(gpu_e2e.cores() - 1, 8), 0)
        self.data = work / "galaxies.h5"
        self.clip = work / "clip"
        self.two_stage_run: Path | None = None
        self.two_stage_losses: list[float] = []

    def time_left(self) -> float:
        return self.args.budget - (time.perf_counter() - self.started)

    def config(self, name: str, **fields) -> TrainConfig:
        s = self.sizes
        values: dict[str, Any] = dict(
            data=str(self.data),
            out=str(self.work / name),
            backbone=f"hf:{self.clip}",
            device=str(self.device),
            batch_size=s.batch,
            image_size=s.image_size,
            trainable_blocks=-1,
            workers=self.workers,
            epochs=1,
        )
        values.update(fields)
        return TrainConfig(**values)

    def run(self, check: str, share: float, fn: Callable[[], tuple[str, str]]) -> None:
        """One row: `fn` returns (result, figure); it may take `share` of the time left."""
        if check in self.args.skip:
            return
        left = self.time_left()
        if left < 5:
            self.rows.append({"check": check, "result": "skipped", "figure": f"{left:.0f} s left of the budget"})
            print_row(self.rows[-1])
            return
        seconds = max(left * share, 5.0)
        start = time.perf_counter()
        gpu_e2e.reset_peak(self.device)
        try:
            # The trainer's own lines (validation) go to stderr: stdout is the table's.
            with gpu_e2e.Deadline(seconds) as deadline, contextlib.redirect_stdout(sys.stderr):
                result, figure = fn()
            if deadline.fired:
                result, figure = "stopped", f"past its {seconds:.0f} s share"
        except Exception as exc:
            traceback.print_exc()
            result, figure = "failed", f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
        took = time.perf_counter() - start
        self.rows.append({"check": check, "result": result, "figure": figure, "s": f"{took:.0f}"})
        print_row(self.rows[-1])
        log(f"{check}: {result} ({figure}) in {took:.1f} s")

    # ------------------------------------------------------------ the checks

    def two_stage(self) -> tuple[str, str]:
        config = self.config("two-stage", method="galaxalign", epochs=2, stage1_fraction=0.5, val_every=1)
        trainer = Trainer(config, resume=False)
        trainer.fit()
        metrics = Path(config.out) / "metrics.jsonl"
        rates = stage_rates(metrics, config.batch_size)
        summary = json.loads((Path(config.out) / "summary.json").read_text())
        self.two_stage_run, self.two_stage_losses = Path(config.out), logged_losses(metrics)
        ok = sorted(rates) == [1, 2] and math.isfinite(summary["test_accuracy"])
        return ("ok" if ok else "wrong", ", ".join(f"stage {k} {v:,.0f} img/s" for k, v in rates.items()) + self.peak())

    def ddp(self) -> tuple[str, str]:
        backend = "nccl" if self.device.type == "cuda" else "gloo"
        dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{free_port()}", rank=0, world_size=1)
        try:
            config = self.config("ddp-1", method="galaxalign", epochs=2, stage1_fraction=0.5, val_every=1)
            trainer = Trainer(config, resume=False)
            wrapped = isinstance(trainer.objective, torch.nn.parallel.DistributedDataParallel)
            trainer.fit()
            losses = logged_losses(Path(config.out) / "metrics.jsonl")
        finally:
            dist.destroy_process_group()
        if not self.two_stage_losses or len(losses) != len(self.two_stage_losses):
            return ("ok" if wrapped else "not DDP", f"{backend}, {len(losses)} steps (no plain run to compare)")
        gap = float(np.max(np.abs(np.subtract(losses, self.two_stage_losses))))
        return ("ok" if wrapped and gap < 0.05 else "differs", f"{backend}; losses within {gap:.2g} of the plain run's")

    def fp16(self) -> tuple[str, str]:
        folder = self.work / "clip-fp16"
        gpu_e2e.save_clip_folder(folder, self.sizes.full, self.device)
        from safetensors.torch import load_file, save_file

        weights = folder / "model.safetensors"
        save_file({k: v.half() for k, v in load_file(str(weights)).items()}, str(weights), metadata={"format": "pt"})
        config = self.config("fp16", method="clip", backbone=f"hf:{folder}", bf16=True, epochs=2)
        trainer = Trainer(config, resume=False)
        dtypes = {p.dtype for p in trainer.model.parameters()}
        trainer.fit(pause_after_steps=self.sizes.steps)
        losses = logged_losses(Path(config.out) / "metrics.jsonl")
        ok = dtypes == {torch.float32} and losses and all(map(math.isfinite, losses))
        rate = gpu_e2e.step_times(Path(config.out) / "metrics.jsonl", config.batch_size)
        return (
            "ok" if ok else "wrong",
            f"master {sorted(map(str, dtypes))}, {len(losses)} steps" + _rate(rate, config),
        )

    def compile(self) -> tuple[str, str]:
        config = self.config("compile", method="clip", compile=True, epochs=2)
        trainer = Trainer(config, resume=False)
        trainer.fit(pause_after_steps=self.sizes.steps)
        times = gpu_e2e.step_times(Path(config.out) / "metrics.jsonl", config.batch_size)
        first = f"first step {times[0]:.0f} s" if len(times) else "no step"
        return ("ok" if len(times) >= 2 else "too few steps", first + _rate(times, config))

    def syncs(self) -> tuple[str, str]:
        if self.device.type != "cuda":
            return "n/a", "needs CUDA (torch.cuda.set_sync_debug_mode)"
        config = self.config("syncs", method="galaxalign", epochs=2)
        trainer = Trainer(config, resume=False)
        counts: list[int] = []
        step = trainer._step

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")

            def counted() -> None:
                step()
                counts.append(len(caught))

            trainer._step = counted  # type: ignore[method-assign]  # the count at each step's end
            torch.cuda.set_sync_debug_mode("warn")
            try:
                trainer.fit(pause_after_steps=self.sizes.steps)
            finally:
                torch.cuda.set_sync_debug_mode(0)
        each = per_step(counts)
        if not each:
            return "too few steps", f"{len(counts)} steps"
        first_step_end = counts[0]
        where = Counter(
            f"{Path(w.filename).name}:{w.lineno}"
            for w in caught[first_step_end : counts[-1]]
            if SYNC_WARNING in str(w.message)
        )
        top = ", ".join(f"{site} x{n}" for site, n in where.most_common(4))
        return f"{int(np.median(each))}", f"per step over {len(each)} steps (min {min(each)}, max {max(each)}); {top}"

    def evaluate_and_index(self) -> None:
        from galaxalign.evaluation.evaluate import evaluate_run
        from galaxalign.runs import load_run, load_split

        if self.two_stage_run is None:
            self.rows.append({"check": "evaluate", "result": "skipped", "figure": "no two-stage run"})
            print_row(self.rows[-1])
            return
        run = load_run(self.two_stage_run, device=str(self.device))
        dataset = H5Dataset(self.data)

        def evaluate() -> tuple[str, str]:
            split = load_split(run.run_dir)
            n = len(split.val) + len(split.train)  # the val queries and the train database are embedded
            start = time.perf_counter()
            evaluate_run(run, dataset, split="val", workers=self.workers, batch_size=256)
            return "ok", f"{n / (time.perf_counter() - start):,.0f} img/s over {n} images (val + train database)"

        def index() -> tuple[str, str]:
            try:
                from galaxalign.search import build_index
            except ImportError as exc:  # faiss-cpu, a dependency, is not in the GPU machine's image
                start = time.perf_counter()
                run.embed_dataset(dataset, batch_size=256, workers=self.workers, desc="index")
                rate = len(dataset) / (time.perf_counter() - start)
                return "embed only", f"{rate:,.0f} img/s, index's embedding pass ({exc.name} missing: no index built)"
            start = time.perf_counter()
            build_index(run, dataset, self.work / "index", workers=self.workers, batch_size=256)
            return "ok", f"{len(dataset) / (time.perf_counter() - start):,.0f} img/s over {len(dataset)} images"

        self.run("evaluate", 0.3, evaluate)
        self.run("index", 0.4, index)

    def h5_read(self) -> tuple[str, str]:
        auto = h5py.filters.guess_chunk(GALAXY10_SHAPE[:1] + (self.sizes.px, self.sizes.px, 3), None, 1)
        n = 2 * auto[0]
        slow, fast = self.work / "default-chunks.h5", self.work / "converted.h5"
        with h5py.File(self.data, "r") as f, h5py.File(slow, "w") as g:
            source = f["images"][()]
            images = g.create_dataset("images", (n, *f["images"].shape[1:]), np.uint8, chunks=auto, compression="gzip")
            for first in range(0, n, 256):
                stop = min(first + 256, n)
                images[first:stop] = source[np.arange(first, stop) % len(source)]
            g["ans"] = np.resize(f["ans"][()], n)
        convert_h5(slow, fast)
        rng = np.random.default_rng(0)
        picks = rng.choice(n, self.sizes.reads, replace=False)
        rates = {}
        for name, path in (("default", slow), ("converted", fast)):
            dataset = H5Dataset(path)  # h5py's default chunks: it says in one line that they are slow
            start = time.perf_counter()
            for i in picks:
                dataset[int(i)]
            rates[name] = len(picks) / (time.perf_counter() - start)
        converted = H5Dataset(fast)
        order = rng.permutation(n)
        batches = [
            order[i : i + self.sizes.batch].tolist() for i in range(0, n - self.sizes.batch + 1, self.sizes.batch)
        ]
        start = time.perf_counter()
        seen = sum(len(b) for b in image_batches(converted, batches, workers=self.workers))
        loader = seen / (time.perf_counter() - start)
        return (
            f"x{rates['converted'] / rates['default']:,.0f}",
            f"random reads {rates['default']:,.1f} img/s with h5py's chunks {auto} + gzip, "
            f"{rates['converted']:,.0f} img/s converted; loader {loader:,.0f} img/s ({self.workers} workers)",
        )

    def peak(self) -> str:
        return f"; peak {gpu_e2e.peak_gib(self.device):.1f} GiB" if self.device.type == "cuda" else ""


def _rate(times: np.ndarray, config: TrainConfig) -> str:
    if len(times) < 3:
        return ""
    return f"; {(len(times) - 2) * config.batch_size / (times[-1] - times[1]):,.0f} img/s after 2 steps"


def included_rows(path: Path) -> list[dict]:
    """The rows of the markdown tables in another script's captured stdout, as rows of this table."""
    lines = [line for line in path.read_text().splitlines() if line.startswith("| ")]
    rows, header = [], None
    for line in lines:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if header is None or cells == header:
            header = cells
            continue
        values = dict(zip(header, cells))
        name = " ".join(values.pop(k) for k in ("model", "task", "batch") if k in values)
        figure = "; ".join(f"{k} {v}" for k, v in values.items() if v)
        rows.append({"check": f"{path.stem}: {name}", "result": "measured", "figure": figure})
    return rows or [{"check": path.stem, "result": "no table", "figure": "see its log"}]


KEYS = ("check", "result", "figure", "s")


def print_row(row: dict) -> None:
    print("| " + " | ".join(str(row.get(k, "")).replace("|", "/") for k in KEYS) + " |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--smoke", action="store_true", help="tiny models and data: every check on a CPU")
    parser.add_argument("--budget", type=float, default=220.0, help="seconds the checks may take")
    parser.add_argument("--workers", type=int, help="loader workers (default: cores - 1, at most 8)")
    parser.add_argument("--skip", nargs="*", default=[], choices=CHECKS, help="checks not to run")
    parser.add_argument("--include", nargs="*", default=[], help="captured stdout of gpu_bench.py / gpu_e2e.py")
    args = parser.parse_args()
    sizes = SMOKE if args.smoke else GPU
    device = resolve_device(args.device)
    import transformers

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(
        f"# GPU path ({name}, torch {torch.__version__}, CUDA {torch.version.cuda}, transformers "
        f"{transformers.__version__}; random CLIP {'ViT-B/16' if sizes.full else 'tiny'}, batch {sizes.batch}, "
        f"{sizes.image_size} px)\n"
    )
    print("| " + " | ".join(KEYS) + " |\n|" + "---|" * len(KEYS), flush=True)
    for path in args.include:  # printed first: a later check that hangs cannot lose them
        for row in included_rows(Path(path)):
            print_row(row)
    with tempfile.TemporaryDirectory(prefix="gpu-paths-") as tmp:
        checks = Checks(args, sizes, device, Path(tmp))
        log(f"rendering {10 * sizes.per_class} galaxies at {sizes.px} px; saving a random CLIP ...")
        gpu_e2e.write_numpy_h5(checks.data, sizes.per_class, sizes.px)
        gpu_e2e.save_clip_folder(checks.clip, sizes.full, device)
        # The compile check last: its compile time is the least predictable, and it takes what is left.
        checks.run("two-stage", 0.2, checks.two_stage)
        checks.run("ddp-1", 0.2, checks.ddp)
        checks.run("fp16-ckpt", 0.15, checks.fp16)
        checks.run("syncs/step", 0.2, checks.syncs)
        checks.evaluate_and_index()
        checks.run("h5 read", 0.3, checks.h5_read)
        checks.run("compile", 0.95, checks.compile)
    print(f"\ntotal {time.perf_counter() - checks.started:.0f} s (budget {args.budget:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
