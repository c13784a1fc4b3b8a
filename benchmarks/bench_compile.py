"""`--compile` measured, not assumed: the trainer's step time with and without torch.compile.

Both sides run the real trainer (`clip` method, the packaged backbone, TrainConfig's defaults:
batch 32, 112 px, top 3 blocks) on the same Galaxy10-layout h5 of random pixels, for `steps`
optimiser steps each. The first `warmup` steps are dropped (the compiled side compiles there);
the compile cost is reported apart as the extra time of those steps. Run
`python benchmarks/bench_compile.py`; on a GPU host add `--device cuda`.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from bench_train import trainer_step_times, write_h5  # noqa: E402
from galaxalign.training import TrainConfig  # noqa: E402

TITLE = "torch.compile of the training step: trainer step time, eager vs compiled (steady state)"


def run(method: str = "clip", steps: int = 10, warmup: int = 3, device: str = "auto") -> list[dict]:
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "bench.h5"
        write_h5(data, 512)
        for compiled in (False, True):
            config = TrainConfig(
                data=str(data),
                out=f"{tmp}/{int(compiled)}",
                method=method,
                backbone="packaged",
                epochs=1,
                val_fraction=0.05,
                test_fraction=0.05,
                device=device,
                compile=compiled,
            )
            started = time.perf_counter()
            times = trainer_step_times(config, steps)
            wall = time.perf_counter() - started
            steady = statistics.median(times[warmup:])
            rows.append(
                {
                    "compile": compiled,
                    "method": method,
                    "batch": config.batch_size,
                    "device": device,
                    "steady step s": steady,
                    "img/s": config.batch_size / steady,
                    "first steps s (incl. compiling)": sum(times[:warmup]),
                    "wall s": wall,
                }
            )
    eager = rows[0]["steady step s"]
    for row in rows:
        row["eager/this"] = eager / row["steady step s"]
    return rows


if __name__ == "__main__":
    from run import markdown_table

    device = sys.argv[sys.argv.index("--device") + 1] if "--device" in sys.argv else "auto"
    print(f"{TITLE}\n")
    print(markdown_table(run(device=device)))
