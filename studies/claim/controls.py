"""Read the controls of issue 24, section 3 by the rule written before any run (README.md here).

`claim_study.sh controls` trains the arms on validation only (each row keeps 1/0 per validation
galaxy in `val_correct`, from the weights and scoring the run kept). This pairs them over the
seeds both arms have and the same validation galaxies, with
`galaxalign.evaluation.metrics.paired_interval` (95 %), for the 12 comparisons fixed in advance
(6 per label fraction), applies the rule (found / lead / equivalent / not resolved / not readable)
and writes `results/controls.json` (every row's answers and every interval) and
`results/controls.md` (the table). A partial table says so: which runs are missing, and the
command that resumes them. It trains and scores nothing.

The committed `results/controls.json` is part of the record: its rows are kept and merged with the
rows found under `--results` (a run found there replaces its committed row), so a study resumes in
a later sitting whose run folders are gone. `--pending SEED FRACTION` prints the arms of that pass
that still have no row (comma-separated; empty when the pass is done): `claim_study.sh` trains
only those.

    python studies/claim/controls.py [--results /work/runs/symbols/claim/controls]
    python studies/claim/controls.py --pending 1 0.1
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from galaxalign.errors import GalaxAlignError
from galaxalign.evaluation.metrics import paired_interval
from galaxalign.io import write_json_atomic, write_text_atomic
from galaxalign.runs import METRICS_FILE, is_finished

ARMS = (
    "galaxalign",
    "galaxalign-texture",
    "galaxalign-domain",
    "galaxalign-galaxy",
    "clip-restart",
    "clip",
    "supervised",
)
FRACTIONS = (0.1, 0.01)
SEEDS = (0, 1, 2)
STEPS = 300
# The comparisons read, fixed before any run (README.md, "The comparisons read"): (ours, rival, question).
COMPARISONS = (
    ("galaxalign", "galaxalign-texture", "does the content of the drawings matter?"),
    ("galaxalign-domain", "galaxalign-texture", "does content that looks like a galaxy matter?"),
    ("galaxalign", "clip-restart", "do drawn class symbols beat clip given the same restart?"),
    ("galaxalign-domain", "clip-restart", "do domain-matched symbols beat clip given the same restart?"),
    ("galaxalign-galaxy", "clip-restart", "do per-galaxy symbols beat clip given the same restart?"),
    ("clip-restart", "clip", "how much of a two-stage gain is the restart alone?"),
)
LEVEL = 0.95
EQUIVALENCE = 0.01  # comparison 1 inside +-0.01: drawn and texture are equivalent
RESUME = "OUT=/work/runs/symbols/claim nice -n 19 studies/claim/claim_study.sh controls"
HERE = Path(__file__).parent


@dataclass(frozen=True)
class Reading:
    """One of the 12 comparisons at one label fraction, read by the rule."""

    number: int
    fraction: float
    ours: str
    rival: str
    question: str
    seeds: int
    galaxies: int
    gap: float | None
    half_width: float | None
    df: float | None
    per_seed: tuple[float, ...]
    verdict: str


def judge(gap: float, half_width: float, per_seed: tuple[float, ...], number: int) -> str:
    """The README's rule: found when the interval excludes 0 and every seed's gap has its sign."""
    low, high = gap - half_width, gap + half_width
    if low > 0 and all(g > 0 for g in per_seed):
        return "found positive"
    if high < 0 and all(g < 0 for g in per_seed):
        return "found negative"
    if low > 0 or high < 0:
        return "excludes 0, seeds disagree: not found"
    if number == 1 and -EQUIVALENCE <= low and high <= EQUIVALENCE:
        return "equivalent (inside ±0.01)"
    return "not resolved"


def read(rows: list[dict], steps: int = STEPS) -> tuple[list[Reading], list[tuple[str, float, int]]]:
    """Every comparison that both arms' shared seeds allow at the `steps` budget, and the (arm,
    fraction, seed) runs missing."""
    answers = {
        (r["method"], float(r["label_fraction"]), int(r["seed"])): np.asarray(r["val_correct"], dtype=float)
        for r in rows
        if "val_correct" in r and r.get("steps_budget") == steps
    }
    missing = [(a, f, s) for f in FRACTIONS for s in SEEDS for a in ARMS if (a, f, s) not in answers]
    readings = []
    for fraction in FRACTIONS:
        for number, (ours, rival, question) in enumerate(COMPARISONS, start=1):
            seeds = [s for s in SEEDS if (ours, fraction, s) in answers and (rival, fraction, s) in answers]
            if not seeds:
                readings.append(
                    Reading(number, fraction, ours, rival, question, 0, 0, None, None, None, (), "no runs yet")
                )
                continue
            a = np.stack([answers[(ours, fraction, s)] for s in seeds])
            b = np.stack([answers[(rival, fraction, s)] for s in seeds])
            result = paired_interval(a, b, level=LEVEL)
            verdict = (
                judge(result.gap, result.half_width, result.per_seed, number)
                if len(seeds) > 1
                else "not readable (1 seed: the seed spread is unknown)"
            )
            readings.append(
                Reading(
                    number,
                    fraction,
                    ours,
                    rival,
                    question,
                    len(seeds),
                    a.shape[1],
                    result.gap,
                    result.half_width,
                    result.df,
                    tuple(round(g, 4) for g in result.per_seed),
                    verdict,
                )
            )
    return readings, missing


def accuracy_table(rows: list[dict], steps: int) -> list[str]:
    lines = ["| arm | " + " | ".join(f"{f:.0%} labels" for f in FRACTIONS) + " |", "|---|" + "---|" * len(FRACTIONS)]
    for arm in ARMS:
        cells = []
        for f in FRACTIONS:
            values = [
                r["val_accuracy"]
                for r in rows
                if r["method"] == arm and float(r["label_fraction"]) == f and r.get("steps_budget") == steps
            ]
            if not values:
                cells.append("—")
            elif len(values) == 1:
                cells.append(f"{values[0]:.3f} (1 seed)")
            else:
                cells.append(f"{np.mean(values):.3f} ± {np.std(values, ddof=1):.3f} ({len(values)} seeds)")
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    return lines


def in_progress(folder: Path) -> dict[str, int]:
    """Runs started and not finished under a controls folder: run name -> last step logged."""
    found = {}
    for run_dir in sorted(folder.glob("*/runs/*")) if folder.is_dir() else []:
        log = run_dir / METRICS_FILE
        if is_finished(run_dir) or not log.exists():
            continue
        steps = [json.loads(line).get("step", 0) for line in log.read_text().splitlines() if line.strip()]
        found[run_dir.name] = int(max(steps, default=0))
    return found


def markdown(
    readings: list[Reading],
    missing: list[tuple[str, float, int]],
    rows: list[dict],
    steps: int,
    running: dict[str, int] | None = None,
) -> str:
    total = len(ARMS) * len(FRACTIONS) * len(SEEDS)
    lines = ["# The controls (issue 24, section 3): validation only", ""]
    if missing:
        started = "; ".join(f"{name} at step {step} of {steps}" for name, step in (running or {}).items())
        lines += [
            f"**Partial: {total - len(missing)} of {total} runs finished.** Missing: "
            + ", ".join(f"{a} at {f:.0%} seed {s}" for a, f, s in missing)
            + (f". Under way when this was written: {started}" if started else "")
            + f". Resume with `{RESUME}` (each pass resumes its runs), then "
            "`python studies/claim/controls.py`. No comparison is read before its arms have 3 seeds; "
            "the rule below is the one written before any run.",
            "",
        ]
    lines += [
        f"Galaxy10-Sim (render version 1), {steps} steps, batch 32, equal selection (4 validated "
        "checkpoints of the kept stage, one scoring fixed in advance). Best validation accuracy per arm "
        "(optimistic for every arm alike: the checkpoint is chosen on these galaxies):",
        "",
        *accuracy_table(rows, steps),
        "",
        "The 12 comparisons fixed before any run, paired over the same validation galaxies and seeds "
        "(`paired_interval`, 95 %; about 0.6 of 12 would exclude 0 by chance):",
        "",
        "| labels | # | ours − rival | seeds | gap | ± | df | per-seed gaps | reading |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in readings:
        numbers = (
            (f"{r.gap:+.3f}", f"{r.half_width:.3f}", f"{r.df:.1f}", " ".join(f"{g:+.3f}" for g in r.per_seed))
            if r.gap is not None and r.half_width is not None and r.df is not None
            else ("", "", "", "")
        )
        lines.append(
            f"| {r.fraction:.0%} | {r.number} | {r.ours} − {r.rival} | {r.seeds} | {' | '.join(numbers)} | {r.verdict} |"
        )
    return "\n".join(lines) + "\n"


ROW_KEYS = ("method", "label_fraction", "seed", "steps_budget", "val_accuracy", "seconds", "val_correct")


def _key(row: dict) -> tuple[str, float, int, int | None]:
    return row["method"], float(row["label_fraction"]), int(row["seed"]), row.get("steps_budget")


def committed_rows(path: Path) -> list[dict]:
    """The rows of an earlier table (`results/controls.json`), or none when there is no table yet."""
    if not path.exists():
        return []
    try:
        rows = json.loads(path.read_text())["rows"]
        if not isinstance(rows, list):
            raise TypeError("'rows' is not a list")
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise SystemExit(f"{path}: not a controls table with 'rows' ({error})") from None
    return rows


def found_rows(results: Path) -> list[dict]:
    """Every row of the benchmark passes under a controls folder (or of one results.json)."""
    files = sorted(results.glob("*/results.json")) if results.is_dir() else [results] if results.exists() else []
    rows: list[dict] = []
    for path in files:
        try:
            found = json.loads(path.read_text())["rows"]
            if not isinstance(found, list):
                raise TypeError("'rows' is not a list")
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise SystemExit(f"{path}: not a benchmark results file with 'rows' ({error})") from None
        rows += found
    return rows


def merged(committed: list[dict], found: list[dict]) -> list[dict]:
    """Committed rows, each replaced by a run of the same arm, fraction, seed and budget found now."""
    rows = {_key(r): {k: r[k] for k in ROW_KEYS if k in r} for r in committed}
    rows |= {_key(r): {k: r[k] for k in ROW_KEYS if k in r} for r in found}
    return list(rows.values())


def pending(rows: list[dict], seed: int, fraction: float, steps: int, arms: tuple[str, ...] = ARMS) -> list[str]:
    """The arms of one pass (seed, fraction) without a row with answers at the `steps` budget."""
    done = {_key(r) for r in rows if "val_correct" in r}
    return [a for a in arms if (a, float(fraction), int(seed), steps) not in done]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--results",
        type=Path,
        default=Path("/work/runs/symbols/claim/controls"),
        help="the controls folder (every pass's results.json in it is read) or one results.json",
    )
    parser.add_argument("--out", type=Path, default=HERE / "results" / "controls")
    parser.add_argument("--steps", type=int, default=STEPS, help="the budget read (the rule's: 300)")
    parser.add_argument(
        "--pending",
        nargs=2,
        metavar=("SEED", "FRACTION"),
        help="print the arms of this pass still without a row (comma-separated) and write nothing",
    )
    parser.add_argument("--arms", default=",".join(ARMS), help="with --pending: the arms asked about, in order")
    args = parser.parse_args(argv)
    rows = merged(committed_rows(args.out.with_suffix(".json")), found_rows(args.results))
    if args.pending:
        try:
            seed, fraction = int(args.pending[0]), float(args.pending[1])
        except ValueError:
            raise SystemExit(f"--pending: SEED FRACTION must be numbers, got {' '.join(args.pending)}") from None
        unknown = [a for a in args.arms.split(",") if a not in ARMS]
        if unknown:
            raise SystemExit(f"--arms: not arms of the controls: {', '.join(unknown)}")
        print(",".join(pending(rows, seed, fraction, args.steps, tuple(args.arms.split(",")))))
        return 0
    try:
        readings, missing = read(rows, args.steps)
    except (GalaxAlignError, ValueError) as error:
        raise SystemExit(f"{args.results}: {error}") from None
    kept = sorted(
        rows,
        key=lambda r: (
            -float(r["label_fraction"]),
            int(r["seed"]),
            ARMS.index(r["method"]) if r["method"] in ARMS else len(ARMS),
        ),
    )
    running = in_progress(args.results)
    write_json_atomic(
        args.out.with_suffix(".json"),
        {
            "partial": bool(missing),
            "missing": [{"arm": a, "label_fraction": f, "seed": s} for a, f, s in missing],
            "resume": RESUME,
            "in_progress": running,
            "readings": [asdict(r) for r in readings],
            "rows": kept,
        },
    )
    text = markdown(readings, missing, rows, args.steps, running)
    write_text_atomic(args.out.with_suffix(".md"), text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
