"""`galaxalign demo`: the main job on the embedded default, offline, ending in one HTML report.

It renders Galaxy10-Sim, fine-tunes `supervised` and `galaxalign` on the same backbone, split
and budget, evaluates both, indexes the training galaxies for search, and writes
`OUT/report.html` (every picture inline) with the numbers it printed.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from galaxalign.io import write_json_atomic
from galaxalign.jobs.config import DemoConfig, refuse_several_processes

METHODS = ("supervised", "galaxalign")  # the baseline and the method, same backbone, split and budget

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoResult:
    """Where the demo put things and how each method scored on the test split."""

    report: Path
    seconds: float
    index: Path
    run: Path  # the galaxalign run, which the index embeds with
    accuracy: dict[str, float]  # by method
    map_at_10: dict[str, float]  # by method

    def summary(self) -> dict[str, object]:
        """OUT/demo_summary.json's content."""
        return {
            "report": str(self.report),
            "seconds": round(self.seconds, 1),
            "index": str(self.index),
            "run": str(self.run),
            **{f"{m}_accuracy": v for m, v in self.accuracy.items()},
            **{f"{m}_map@10": v for m, v in self.map_at_10.items()},
        }


def run_demo(config: DemoConfig) -> DemoResult:
    """Render, fine-tune both methods, evaluate, index and report; finished runs are kept."""
    from galaxalign.data import open_dataset
    from galaxalign.evaluation.evaluate import evaluate_run
    from galaxalign.report.build import DemoOutputs, write_report
    from galaxalign.runs import is_finished, load_run, load_split
    from galaxalign.search import build_index
    from galaxalign.synth import SynthConfig, write_synth
    from galaxalign.training import train

    refuse_several_processes("demo")
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "demo_config.json", asdict(config))
    started = time.perf_counter()
    steps = 6

    def stage(n: int, text: str) -> None:
        log.info("[%d/%d] %s (%.0f s so far)", n, steps, text, time.perf_counter() - started)

    data = out / "galaxy10_sim.h5"
    stage(1, f"rendering Galaxy10-Sim: {config.galaxies_per_class} galaxies per class at {config.synth_size} px")
    if not data.exists():
        write_synth(
            data,
            SynthConfig(per_class=config.galaxies_per_class, size=config.synth_size, seed=config.seed),
        )

    runs = {}
    for n, method in enumerate(METHODS, start=2):
        run_dir = out / "runs" / method
        stage(n, f"fine-tuning {method} on {config.train.backbone} for {config.train.epochs} epochs")
        if not is_finished(run_dir):
            train(
                config.train.for_method(method, data=str(data), out=str(run_dir), seed=config.seed),
            )
        runs[method] = run_dir

    stage(4, "evaluating both runs on the test split")
    device = config.train.device
    dataset = open_dataset(data, scheme="galaxy10")
    metrics = {m: evaluate_run(load_run(d, device=device), dataset, "test") for m, d in runs.items()}

    stage(5, "indexing the training galaxies for similarity search")
    run = load_run(runs["galaxalign"], device=device)
    split = load_split(runs["galaxalign"])
    index_dir = out / "index"
    index = build_index(run, dataset.subset(split.train), index_dir)

    stage(6, "writing the report")
    outputs = DemoOutputs(out, data, runs, metrics, run, index, dataset, split, time.perf_counter() - started)
    result = DemoResult(
        report=write_report(outputs),
        seconds=time.perf_counter() - started,
        index=index_dir,
        run=runs["galaxalign"],
        accuracy={m: metrics[m]["accuracy"] for m in runs},
        map_at_10={m: metrics[m]["map@10"] for m in runs},
    )
    write_json_atomic(out / "demo_summary.json", result.summary())
    return result
