"""`--feature-cache-views` measured: seconds per training step with and without the feature cache.

Both sides run the real trainer at the claim study's settings (studies/claim/claim_study.sh): the
packaged backbone (DINOv2 ViT-S/14 + MiniLM) at its 112 px, batch 32, the top 3 blocks of each
tower (the image tower's top 2 layers and final norm), on a Galaxy10-layout h5 of random 128 px
pixels (content does not change the cost) with about as many labelled galaxies as the study's
10 % runs (96). The cached side first pushes `views` fixed views of each galaxy through the
frozen lower 10 layers (its build time is reported apart), then every step runs only the top
blocks on one cached view per galaxy; symbols and texts take the full towers on both sides.
Steps are timed by the trainer's own clock (bench_train.trainer_step_times); the first `warmup`
are dropped and the median of the rest is the figure. Validation (the full tower on unaugmented
images, the same on both sides) is not included. The two sides differ in protocol, not only in
speed: the cached run sees `views` fixed views per galaxy, the other a fresh one every step.
Run `python benchmarks/bench_feature_cache.py [--views 8] [--steps 6] [--methods clip,supervised]`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from bench_train import trainer_step_times, write_h5  # noqa: E402
from galaxalign.training import TrainConfig  # noqa: E402

TITLE = "Feature cache: trainer seconds per step, full image tower vs cached frozen blocks (claim-study settings)"


@dataclass
class FeatureCacheBench:
    methods: str = "clip,supervised,galaxalign"  # galaxalign's short run stays in stage 1
    views: int = 8  # --feature-cache-views of the cached side
    steps: int = 6  # optimiser steps per side
    warmup: int = 1  # first steps dropped
    galaxies: int = 120  # in the file; 96 of them are the training split
    batch_size: int = 32
    trainable_blocks: int = 3
    threads: int = 0  # torch threads (0: torch's default)
    budget: int = 300  # the study's steps per run, for the per-run estimate


def _config(bench: FeatureCacheBench, data: Path, out: str, method: str, views: int) -> TrainConfig:
    return TrainConfig(
        data=str(data),
        out=out,
        method=method,
        backbone="packaged",
        epochs=bench.steps,  # 96 galaxies make 3 steps an epoch: enough epochs for `steps`, paused there
        batch_size=bench.batch_size,
        trainable_blocks=bench.trainable_blocks,
        val_fraction=0.1,
        test_fraction=0.1,
        threads=bench.threads,
        validations=1,  # the last epoch's, never reached: no validation inside the timed steps
        checkpoint_minutes=1e9,  # nor an end-of-epoch checkpoint
        feature_cache_views=views,
    )


def _build_seconds(run_dir: Path) -> tuple[float, float]:
    """The cache's build time and memory, from its line in metrics.jsonl."""
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        if "feature_cache" in record:
            return record["feature_cache"]["seconds"], record["feature_cache"]["mib"]
    return 0.0, 0.0


def run(bench: FeatureCacheBench | None = None) -> list[dict]:
    bench = bench or FeatureCacheBench()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "bench.h5"
        write_h5(data, bench.galaxies, size=128)
        for method in [m.strip() for m in bench.methods.split(",") if m.strip()]:
            step: dict[int, float] = {}
            for views in (0, bench.views):
                config = _config(bench, data, f"{tmp}/{method}_{views}", method, views)
                times = trainer_step_times(config, bench.steps)
                step[views] = statistics.median(times[bench.warmup :])
            build, mib = _build_seconds(Path(f"{tmp}/{method}_{bench.views}"))
            rows.append(
                {
                    "method": method,
                    "views": bench.views,
                    "full s/step": step[0],
                    "cached s/step": step[bench.views],
                    "full/cached": step[0] / step[bench.views],
                    "cache build s": build,
                    "cache MiB": mib,
                    f"{bench.budget}-step run min, full": bench.budget * step[0] / 60,
                    "cached (incl. build)": (bench.budget * step[bench.views] + build) / 60,
                }
            )
    return rows


def parse(argv: list[str]) -> FeatureCacheBench:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    defaults = FeatureCacheBench()
    for f in fields(FeatureCacheBench):
        value = getattr(defaults, f.name)
        parser.add_argument("--" + f.name.replace("_", "-"), type=type(value), default=value)
    return FeatureCacheBench(**vars(parser.parse_args(argv)))


if __name__ == "__main__":
    from run import markdown_table

    print(f"{TITLE}\n")
    print(markdown_table(run(parse(sys.argv[1:]))))
