"""Make the choice of issue 24, section 5 on validation only, by the rule in README.md here
(written before any of its runs), and write `results/choice.json`.

The candidates are the GalaxAlign configurations of the controls and semi tables; each is scored
by its mean validation accuracy over every (fraction, seed) cell of the rule; the default is kept
when it is within `KEEP_DEFAULT` of the best. It refuses while a candidate misses a cell, reads no
test file and trains nothing.

    python studies/claim/choose.py [--results studies/claim/results]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from galaxalign.io import write_json_atomic

sys.path.insert(0, str(Path(__file__).resolve().parent))
from study_rows import STEPS, read_object  # noqa: E402
from study_rows import VALIDATION_FRACTIONS as FRACTIONS  # noqa: E402
from study_rows import VALIDATION_SEEDS as SEEDS  # noqa: E402

CANDIDATES = ("galaxalign", "galaxalign-domain", "galaxalign-galaxy", "galaxalign-semi")
DEFAULT = "galaxalign"
KEEP_DEFAULT = 0.005
RIVALS = ("supervised", "clip", "lp-ft")
RESTART_COMPARISON = 6  # clip-restart − clip: found positive at a fraction puts clip-restart among the rivals
HERE = Path(__file__).parent


def _table(path: Path) -> dict:
    return read_object(path, "a table of controls.py", ("rows", "readings"))


def scores(rows: list[dict]) -> tuple[dict[str, float], list[str]]:
    """Mean validation accuracy per candidate over the rule's cells, and the cells missing."""
    accuracy = {
        (r["method"], float(r["label_fraction"]), int(r["seed"])): float(r["val_accuracy"])
        for r in rows
        if r.get("steps_budget") == STEPS
    }
    missing = [
        f"{arm} at {f:.0%} seed {s}"
        for arm in CANDIDATES
        for f in FRACTIONS
        for s in SEEDS
        if (arm, f, s) not in accuracy
    ]
    if missing:
        return {}, missing
    return {arm: float(np.mean([accuracy[(arm, f, s)] for f in FRACTIONS for s in SEEDS])) for arm in CANDIDATES}, []


def choose(found: dict[str, float], restart_found: bool) -> dict:
    """The rule: the best score, or the default within KEEP_DEFAULT of it; the rivals it faces."""
    best = max(found, key=lambda arm: found[arm])
    chosen = DEFAULT if found[best] - found[DEFAULT] <= KEEP_DEFAULT else best
    rivals = (
        list(RIVALS) + (["clip-restart"] if restart_found else []) + (["clip-semi"] if chosen.endswith("-semi") else [])
    )
    return {"chosen": chosen, "best_score": best, "scores": found, "rivals": rivals}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--results", type=Path, default=HERE / "results", help="the folder of controls.json and semi.json"
    )
    args = parser.parse_args(argv)
    controls, semi = _table(args.results / "controls.json"), _table(args.results / "semi.json")
    found, missing = scores(controls["rows"] + semi["rows"])
    if missing:
        raise SystemExit(f"{args.results}: no choice yet, {len(missing)} candidate runs missing: {', '.join(missing)}")
    restart_found = any(
        r["number"] == RESTART_COMPARISON and r["verdict"] == "found positive" for r in controls["readings"]
    )
    choice = choose(found, restart_found) | {"rule": "studies/claim/README.md, section 5", "steps": STEPS}
    write_json_atomic(args.results / "choice.json", choice)
    print(json.dumps(choice, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
