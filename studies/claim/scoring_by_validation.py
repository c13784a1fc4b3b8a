"""Would choosing each run's scoring mode on validation change the benchmark table?

For every finished text-aligned run of a `galaxalign benchmark` folder, this scores the run's
validation galaxies under each prototype mode (text, symbol, fusion), picks the best mode on
validation alone (ties keep the run's own default), and reads that mode's test accuracy from the
run's `eval-test/metrics.json` (`accuracy_by_mode`, written by `galaxalign evaluate`). The test
split plays no part in the choice. The weights are the run's own, picked during training by
validation accuracy under its default mode, so this approximates a trainer that chose the mode
while training; it does not retrain anything.

    python studies/claim/scoring_by_validation.py BENCH_DIR [--data PATH]
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from galaxalign.data import open_dataset
from galaxalign.evaluation.evaluate import predict_split
from galaxalign.runs import load_run

ZERO_SHOT_MODES = ("text", "symbol", "fusion")

ALIGNED = ("clip", "galaxalign-stage1", "galaxalign")


def validation_accuracy_by_mode(run, dataset) -> dict[str, float]:
    val, predicted = predict_split(run, dataset, "val", modes=ZERO_SHOT_MODES)
    return {mode: float(np.mean(predicted[mode] == dataset.labels[val])) for mode in ZERO_SHOT_MODES}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bench_dir", type=Path)
    parser.add_argument("--data", help="the benchmark's data (default: the path in benchmark_config.json)")
    args = parser.parse_args()
    config = json.loads((args.bench_dir / "benchmark_config.json").read_text())
    dataset = None
    rows = defaultdict(list)
    for run_dir in sorted((args.bench_dir / "runs").iterdir()):
        parts = run_dir.name.rsplit("_", 2)  # METHOD_fFRACTION_sSEED; untrained_sSEED is not a method row
        metrics_path = run_dir / "eval-test" / "metrics.json"
        if len(parts) != 3 or parts[0] not in ALIGNED or not metrics_path.exists():
            continue
        method, fraction = parts[0], parts[1]
        run = load_run(run_dir)
        dataset = dataset or open_dataset(args.data or config["data"], scheme=run.scheme)
        val = validation_accuracy_by_mode(run, dataset)
        best = max(val.values())
        chosen = run.scoring if val[run.scoring] == best else max(val, key=lambda mode: val[mode])
        test = json.loads(metrics_path.read_text())["accuracy_by_mode"]
        rows[(method, float(fraction[1:]))].append((run.scoring, test[run.scoring], chosen, test[chosen]))

    print(
        "| method | label fraction | default mode | test accuracy, default | mode chosen on validation (per seed) | test accuracy, chosen |"
    )
    print("|---|---|---|---|---|---|")
    order = {m: i for i, m in enumerate(ALIGNED)}
    for (method, fraction), runs in sorted(rows.items(), key=lambda kv: (-kv[0][1], order[kv[0][0]])):
        default = np.mean([r[1] for r in runs])
        chosen = np.mean([r[3] for r in runs])
        print(
            f"| {method} | {fraction:g} | {runs[0][0]} | {default:.3f} | {', '.join(r[2] for r in runs)} | {chosen:.3f} |"
        )


if __name__ == "__main__":
    main()
