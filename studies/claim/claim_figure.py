"""The claim study in one picture: each method's test accuracy per budget and label fraction (a dot
per seed, a bar at the mean) beside the validation learning curve that chose the budget.

Reads the committed rows of `galaxalign benchmark` (results.json files) in the claim-study folder,
so it needs no run folders and reads no test set; a reading still under way is drawn with the seeds
it has, and the budget's label says how many. Writes a PNG and prints the plotted means.

    python studies/claim/claim_figure.py [--study studies/claim/results] [--out docs/images/claim_study.png]
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

# The test readings in the order they were made: file, budget in steps (the first file's rows have
# steps_budget None: the benchmark's default budget, 30 steps for these runs).
READINGS = (("test-class.json", 30), ("test-class-n150.json", 150), ("test-class-n300.json", 300))
CURVE = "curve-class.json"
METHODS = ("supervised", "clip", "lp-ft", "galaxalign")
COLOURS = {"supervised": "#7f7f7f", "clip": "#1f77b4", "lp-ft": "#9467bd", "galaxalign": "#d62728"}
FRACTIONS = (1.0, 0.1, 0.01)  # a fraction gets a panel once a reading has rows for it
SEED_MARKERS = ("o", "s", "^")


def _rows(path: Path) -> list[dict]:
    return json.loads(path.read_text())["rows"] if path.exists() else []


def test_accuracies(study: Path) -> dict[tuple[float, int, str], dict[int, float]]:
    """(label fraction, budget, method) -> {seed: test accuracy}, for the trained methods."""
    points: dict[tuple[float, int, str], dict[int, float]] = defaultdict(dict)
    for name, budget in READINGS:
        for row in _rows(study / name):
            if row["method"] in METHODS and row["label_fraction"] in FRACTIONS and "accuracy" in row:
                points[(row["label_fraction"], budget, row["method"])][row["seed"]] = row["accuracy"]
    return dict(points)


def validation_curve(study: Path) -> dict[str, dict[int, float]]:
    """method -> {budget: best validation accuracy}, seed 0 at 10 % of labels: the curve's runs, and
    the 30-step point from the first test reading's rows (the same split and settings)."""
    curve: dict[str, dict[int, float]] = defaultdict(dict)
    first = [(row, 30) for row in _rows(study / READINGS[0][0])]
    rest = [(row, row["steps_budget"]) for row in _rows(study / CURVE)]
    for row, budget in first + rest:
        if row["method"] in METHODS and row["seed"] == 0 and row["label_fraction"] == 0.1:
            curve[row["method"]][budget] = row["val_accuracy"]
    return {method: dict(sorted(points.items())) for method, points in curve.items()}


def draw(tests: dict, curve: dict, out: Path) -> list[float]:
    """Write the figure; returns the label fractions that got a panel."""
    fractions = [f for f in FRACTIONS if any(point[0] == f for point in tests)]
    fig = Figure(figsize=(4 * (len(fractions) + 1), 3.8), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(fractions) + 1)
    width = 0.8 / len(METHODS)
    *fraction_axes, curve_ax = axes
    for ax, fraction in zip(fraction_axes, fractions):
        budgets = sorted({budget for f, budget, _ in tests if f == fraction})
        for b, budget in enumerate(budgets):
            # Bars average the seeds every method at this budget has, so a reading under way
            # compares like with like; dots show every seed.
            present = [set(tests[(fraction, budget, m)]) for m in METHODS if (fraction, budget, m) in tests]
            common = set.intersection(*present) if present else set()
            for m, method in enumerate(METHODS):
                seeds = tests.get((fraction, budget, method), {})
                if not seeds:
                    continue
                x = b + (m - (len(METHODS) - 1) / 2) * width
                for seed, value in seeds.items():  # one marker per seed: the same seed across budgets
                    marker = SEED_MARKERS[seed % len(SEED_MARKERS)]
                    ax.scatter([x], [value], s=16, marker=marker, color=COLOURS[method], alpha=0.75, zorder=3)
                if common:
                    shared = np.mean([seeds[seed] for seed in common])
                    ax.hlines(shared, x - width / 2.5, x + width / 2.5, color=COLOURS[method], lw=2.5)
        labels = []
        for budget in budgets:
            seeds = {len(tests.get((fraction, budget, method), {})) for method in METHODS} - {0}
            counts = "/".join(map(str, sorted(seeds)))
            labels.append(
                f"{budget} steps" + ("" if seeds == {3} else f"\n({counts} seed{'s' * (counts != '1')} so far)")
            )
        ax.set_xticks(range(len(budgets)), labels)
        ax.set(ylabel="test accuracy (2,000 galaxies)", title=f"Test, {fraction:.0%} of labels")
        ax.grid(axis="y", alpha=0.3)
    for method in METHODS:
        if method in curve:
            steps, values = zip(*curve[method].items())
            curve_ax.plot(steps, values, marker="o", color=COLOURS[method], label=method)
    curve_ax.set(
        xscale="log", xlabel="training steps", ylabel="best validation accuracy", title="Learning curve, 10 %, seed 0"
    )
    curve_ax.set_xticks([30, 75, 150, 300], ["30", "75", "150", "300"])
    curve_ax.minorticks_off()
    curve_ax.grid(alpha=0.3)
    handles = [curve_ax.plot([], [], marker="o", color=COLOURS[m], label=m)[0] for m in METHODS]
    handles += [
        curve_ax.scatter([], [], marker=marker, color="black", label=f"seed {seed}")
        for seed, marker in enumerate(SEED_MARKERS)
    ]
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), frameon=False)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    return fractions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", type=Path, default=Path("studies/claim/results"))
    parser.add_argument("--out", type=Path, default=Path("docs/images/claim_study.png"))
    args = parser.parse_args()
    tests, curve = test_accuracies(args.study), validation_curve(args.study)
    draw(tests, curve, args.out)
    print("| label fraction | budget | " + " | ".join(METHODS) + " |")
    print("|---|---|" + "---|" * len(METHODS))
    for fraction in FRACTIONS:
        for budget in sorted({b for f, b, _ in tests if f == fraction}):
            cells = []
            for method in METHODS:
                seeds = tests.get((fraction, budget, method), {})
                cells.append(f"{np.mean(list(seeds.values())):.3f} (n={len(seeds)})" if seeds else "")
            print(f"| {fraction:g} | {budget} | " + " | ".join(cells) + " |")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
