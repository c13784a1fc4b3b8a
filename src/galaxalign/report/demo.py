"""`galaxalign demo`: the main job on the embedded default, offline, ending in one HTML report.

It renders Galaxy10-Sim, fine-tunes `supervised` and `galaxalign` on the same backbone, split
and budget, evaluates both, indexes the training galaxies for search, and writes
`OUT/report.html` (every picture inline) with the numbers it printed.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

from galaxalign.config import option
from galaxalign.errors import GalaxAlignError
from galaxalign.io import write_json_atomic


@dataclass
class DemoConfig:
    out: str = option("runs/demo", "output folder (data, runs, index, report.html)")
    quick: bool = option(False, "a smaller first look (about 2 minutes on 2 cores)")
    backbone: str = option("packaged", "backbone of both runs")
    per_class: int = option(0, "galaxies per class to render; 0: 60 (16 with --quick)")
    epochs: int = option(0, "epochs per run; 0: 3 (2 with --quick)")
    seed: int = option(0, "seed of the data, split and runs")

    def __post_init__(self):
        if self.per_class < 0 or self.epochs < 0:
            raise GalaxAlignError("demo: --per-class and --epochs must be positive (or 0 for the default)")

    @property
    def settings(self) -> dict:
        """What the run uses once the defaults are filled in."""
        quick = self.quick
        return {
            "per_class": self.per_class or (16 if quick else 60),
            "synth_size": 64 if quick else 128,
            "image_size": 56 if quick else 0,
            "epochs": self.epochs or (2 if quick else 3),
            "trainable_blocks": 3,
            "batch_size": 32,
        }


def run_demo(config: DemoConfig, progress: bool = True) -> dict:
    from galaxalign.data import Split, open_dataset
    from galaxalign.evaluation.evaluate import evaluate_run
    from galaxalign.runs import load_run
    from galaxalign.search import build_index
    from galaxalign.synth import SynthConfig, write_synth
    from galaxalign.training import TrainConfig, train

    out = Path(config.out)
    settings = config.settings
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "demo_config.json", {**asdict(config), "settings": settings})
    started = time.perf_counter()
    steps = 6

    def stage(n: int, text: str) -> None:
        print(f"[{n}/{steps}] {text} ({time.perf_counter() - started:.0f} s so far)", flush=True)

    data = out / "galaxy10_sim.h5"
    stage(1, f"rendering Galaxy10-Sim: {settings['per_class']} galaxies per class at {settings['synth_size']} px")
    if not data.exists():
        write_synth(data, SynthConfig(per_class=settings["per_class"], size=settings["synth_size"], seed=config.seed),
                    progress=progress)

    runs = {}
    for n, method in ((2, "supervised"), (3, "galaxalign")):
        run_dir = out / "runs" / method
        stage(n, f"fine-tuning {method} on {config.backbone} for {settings['epochs']} epochs")
        if not (run_dir / "summary.json").exists():
            train(TrainConfig(data=str(data), out=str(run_dir), method=method, backbone=config.backbone,
                              epochs=settings["epochs"], batch_size=settings["batch_size"],
                              trainable_blocks=settings["trainable_blocks"], image_size=settings["image_size"],
                              seed=config.seed, lr=2e-4), progress=progress)
        runs[method] = run_dir

    stage(4, "evaluating both runs on the test split")
    dataset = open_dataset(data, scheme="galaxy10")
    metrics = {m: evaluate_run(load_run(d), dataset, "test", progress=progress) for m, d in runs.items()}

    stage(5, "indexing the training galaxies for similarity search")
    run = load_run(runs["galaxalign"])
    split = Split.load(runs["galaxalign"] / "split.json")
    index_dir = out / "index"
    index = build_index(run, dataset.subset(split.train), index_dir, progress=progress)

    stage(6, "writing the report")
    from galaxalign.report.build import write_report

    report_path = write_report(out, data, runs, metrics, run, index, dataset, split, elapsed=time.perf_counter() - started)
    summary = {
        "report": str(report_path),
        "seconds": round(time.perf_counter() - started, 1),
        "index": str(index_dir),
        "run": str(runs["galaxalign"]),
        **{f"{m}_accuracy": metrics[m]["accuracy"] for m in runs},
        **{f"{m}_map@10": metrics[m]["map@10"] for m in runs},
    }
    write_json_atomic(out / "demo_summary.json", summary)
    return summary
