"""Where a method's lead comes from: paired test-accuracy gaps per class, from a benchmark's rows.

A benchmark row keeps, per run, 1/0 for each labelled test galaxy in file order (`correct`). This
splits those answers by true class and prints, per label fraction, each method's accuracy on the
class (mean over seeds) and the paired gap of `--ours` over each rival with its 95 % interval
(`galaxalign.evaluation.metrics.paired_gap`: over galaxies and seeds, as for the whole test set).
It scores nothing again: only the test file's labels are read, to group the answers already kept.

    python studies/claim/claim_by_class.py --rows studies/claim/results/test-class-n300.json \
        --test runs/claim/test.h5 [--ours galaxalign] [--rivals supervised,clip]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from galaxalign.data import open_dataset
from galaxalign.evaluation.evaluate import labelled_only
from galaxalign.evaluation.metrics import paired_gap
from galaxalign.taxonomy import load_scheme


def answers_by_run(rows: list[dict]) -> dict[tuple[str, float, int], np.ndarray]:
    """(method, label fraction, seed) -> 1/0 per test galaxy, for the rows that were tested."""
    return {
        (r["method"], r["label_fraction"], r["seed"]): np.asarray(r["correct"], float) for r in rows if "correct" in r
    }


def class_table(answers: dict, labels: np.ndarray, names: list[str], ours: str, rivals: list[str]) -> list[str]:
    """Markdown, one table per label fraction: accuracy per class and method, and ours − rival."""
    lines = []
    for fraction in sorted({f for _, f, _ in answers}, reverse=True):
        seeds = sorted(s for m, f, s in answers if (m, f) == (ours, fraction))
        methods = [m for m in (*rivals, ours) if all((m, fraction, s) in answers for s in seeds)]
        if not seeds or ours not in methods:
            continue
        compared = [m for m in methods if m != ours]
        lines += [
            f"| class ({fraction:.0%} of labels, {len(seeds)} seed{'s' * (len(seeds) > 1)}) | galaxies | "
            + " | ".join(methods)
            + " | "
            + " | ".join(f"{ours} − {m}" for m in compared)
            + " |",
            "|---|---|" + "---|" * (len(methods) + len(compared)),
        ]
        for k, name in enumerate(names):
            members = labels == k
            if not members.any():
                continue
            stacked = {m: np.stack([answers[(m, fraction, s)][members] for s in seeds]) for m in methods}
            cells = [f"{stacked[m].mean():.3f}" for m in methods]
            for m in compared:
                gap, half = paired_gap(stacked[ours], stacked[m])
                mark = "**" if abs(gap) > half else ""
                cells.append(f"{mark}{gap:+.3f} ± {half:.3f}{mark}")
            lines.append(f"| {name} | {int(members.sum())} | " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=Path, required=True, help="a benchmark's results.json")
    parser.add_argument("--test", type=Path, required=True, help="the test file the rows were scored on")
    parser.add_argument("--scheme", default="galaxy10")
    parser.add_argument("--ours", default="galaxalign")
    parser.add_argument("--rivals", default="supervised,clip")
    args = parser.parse_args()
    scheme = load_scheme(args.scheme)
    test = open_dataset(str(args.test), scheme=scheme)
    indices = labelled_only(np.arange(len(test)), test.labels)  # the benchmark's test order
    answers = answers_by_run(json.loads(args.rows.read_text())["rows"])
    lengths = {len(a) for a in answers.values()}
    if lengths != {len(indices)}:
        raise SystemExit(
            f"{args.rows}: rows hold {sorted(lengths)} answers, {args.test} has {len(indices)} labelled galaxies"
        )
    print("\n".join(class_table(answers, test.labels[indices], scheme.names, args.ours, args.rivals.split(","))))


if __name__ == "__main__":
    main()
