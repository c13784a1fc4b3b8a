"""Read the controls (issue 24, section 3) and the unlabelled-image arms (section 4) by the rules
written before any of their runs (README.md here).

`claim_study.sh controls` and `claim_study.sh semi` train the arms on validation only (each row
keeps 1/0 per validation galaxy in `val_correct`, from the weights and scoring the run kept).
This pairs them over the seeds both arms have and the same validation galaxies, with
`galaxalign.evaluation.metrics.paired_interval` (95 %), for the comparisons fixed in advance (a
`Family`: 6 per label fraction for the controls, 3 for semi, which shares the controls' galaxalign
and clip runs), applies the rule (found / equivalent / not resolved / not readable) and writes
`results/FAMILY.json` (every row's answers and every interval) and `results/FAMILY.md` (the
table). A partial table says so: which runs are missing, and the command that resumes them. It
trains and scores nothing.

The committed tables are part of the record: their rows are kept and merged with the rows found
under `--results` (a run found there replaces its committed row), so a study resumes in a later
sitting whose run folders are gone. `--pending SEED FRACTION` prints the arms of that pass that
still have no row (comma-separated; empty when the pass is done): `claim_study.sh` trains only
those.

    python studies/claim/controls.py [--family controls|semi] [--results DIR ...]
    python studies/claim/controls.py --family semi --pending 1 0.1
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from galaxalign.errors import GalaxAlignError
from galaxalign.evaluation.metrics import paired_interval
from galaxalign.io import write_json_atomic, write_text_atomic
from galaxalign.runs import METRICS_FILE, is_finished

sys.path.insert(0, str(Path(__file__).resolve().parent))
from study_rows import STEPS, committed_rows, found_rows, row_key  # noqa: E402
from study_rows import VALIDATION_FRACTIONS as FRACTIONS  # noqa: E402
from study_rows import VALIDATION_SEEDS as SEEDS  # noqa: E402

LEVEL = 0.95
EQUIVALENCE = 0.01  # comparison 1 inside +-0.01: drawn and texture are equivalent


@dataclass(frozen=True)
class Family:
    """A set of arms and the comparisons between them fixed before any of its runs (README.md)."""

    name: str
    title: str
    arms: tuple[str, ...]  # trained by this family's passes (`claim_study.sh NAME`)
    shared: tuple[str, ...]  # arms whose rows come from another family's runs (the same runs)
    comparisons: tuple[tuple[str, str, str], ...]  # (ours, rival, question)
    first_number: int  # comparisons are numbered across families, as in README.md

    @property
    def every_arm(self) -> tuple[str, ...]:
        return self.arms + self.shared

    @property
    def resume(self) -> str:
        return f"OUT=/work/runs/symbols/claim JOBS=2 nice -n 19 studies/claim/claim_study.sh {self.name}"


CONTROLS = Family(
    "controls",
    "The controls (issue 24, section 3)",
    (
        "galaxalign",
        "galaxalign-texture",
        "galaxalign-domain",
        "galaxalign-galaxy",
        "clip-restart",
        "clip",
        "supervised",
    ),
    (),
    (
        ("galaxalign", "galaxalign-texture", "does the content of the drawings matter?"),
        ("galaxalign-domain", "galaxalign-texture", "does content that looks like a galaxy matter?"),
        ("galaxalign", "clip-restart", "do drawn class symbols beat clip given the same restart?"),
        ("galaxalign-domain", "clip-restart", "do domain-matched symbols beat clip given the same restart?"),
        ("galaxalign-galaxy", "clip-restart", "do per-galaxy symbols beat clip given the same restart?"),
        ("clip-restart", "clip", "how much of a two-stage gain is the restart alone?"),
    ),
    1,
)
SEMI = Family(
    "semi",
    "The unlabelled images (issue 24, section 4)",
    ("galaxalign-semi", "clip-semi"),
    ("galaxalign", "clip"),
    (
        ("galaxalign-semi", "galaxalign", "do the unlabelled images help galaxalign?"),
        ("clip-semi", "clip", "do the unlabelled images help clip?"),
        ("galaxalign-semi", "clip-semi", "given the unlabelled images, do the symbol anchors help?"),
    ),
    7,
)
FAMILIES = {f.name: f for f in (CONTROLS, SEMI)}
ARMS = CONTROLS.arms + SEMI.arms  # every arm a table of this script holds, in table order
HERE = Path(__file__).parent


@dataclass(frozen=True)
class Reading:
    """One comparison fixed in advance, at one label fraction, read by the rule."""

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


def read(
    rows: list[dict], steps: int = STEPS, family: Family = CONTROLS
) -> tuple[list[Reading], list[tuple[str, float, int]]]:
    """Every comparison that both arms' shared seeds allow at the `steps` budget, and the (arm,
    fraction, seed) runs missing."""
    answers = {
        (r["method"], float(r["label_fraction"]), int(r["seed"])): np.asarray(r["val_correct"], dtype=float)
        for r in rows
        if "val_correct" in r and r.get("steps_budget") == steps
    }
    missing = [(a, f, s) for f in FRACTIONS for s in SEEDS for a in family.every_arm if (a, f, s) not in answers]
    readings = []
    for fraction in FRACTIONS:
        for number, (ours, rival, question) in enumerate(family.comparisons, start=family.first_number):
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


def accuracy_table(rows: list[dict], steps: int, arms: tuple[str, ...] = CONTROLS.arms) -> list[str]:
    lines = ["| arm | " + " | ".join(f"{f:.0%} labels" for f in FRACTIONS) + " |", "|---|" + "---|" * len(FRACTIONS)]
    for arm in arms:
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
    family: Family = CONTROLS,
) -> str:
    total = len(family.every_arm) * len(FRACTIONS) * len(SEEDS)
    count = len(family.comparisons) * len(FRACTIONS)
    lines = [f"# {family.title}: validation only", ""]
    if missing:
        started = "; ".join(f"{name} at step {step} of {steps}" for name, step in (running or {}).items())
        lines += [
            f"**Partial: {total - len(missing)} of {total} runs finished.** Missing: "
            + ", ".join(f"{a} at {f:.0%} seed {s}" for a, f, s in missing)
            + (f". Under way when this was written: {started}" if started else "")
            + f". Resume with `{family.resume}` (each run resumes in its folder), then "
            f"`python studies/claim/controls.py --family {family.name}`. No comparison is read before its arms have 3 seeds; "
            "the rule below is the one written before any run.",
            "",
        ]
    lines += [
        f"Galaxy10-Sim (render version 1), {steps} steps, batch 32, equal selection (4 validated "
        "checkpoints of the kept stage, one scoring fixed in advance). Best validation accuracy per arm "
        "(optimistic for every arm alike: the checkpoint is chosen on these galaxies):",
        "",
        *accuracy_table(rows, steps, family.every_arm),
        "",
        f"The {count} comparisons fixed before any run, paired over the same validation galaxies and seeds "
        f"(`paired_interval`, 95 %; about {0.05 * count:.1f} of {count} would exclude 0 by chance):",
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


def merged(committed: list[dict], found: list[dict]) -> list[dict]:
    """Committed rows, each replaced by a run of the same arm, fraction, seed and budget found now."""
    rows = {row_key(r): {k: r[k] for k in ROW_KEYS if k in r} for r in committed}
    rows |= {row_key(r): {k: r[k] for k in ROW_KEYS if k in r} for r in found}
    return list(rows.values())


def pending(rows: list[dict], seed: int, fraction: float, steps: int, arms: tuple[str, ...]) -> list[str]:
    """The arms of one pass (seed, fraction) without a row with answers at the `steps` budget."""
    done = {row_key(r) for r in rows if "val_correct" in r}
    return [a for a in arms if (a, float(fraction), int(seed), steps) not in done]


RUNS = Path("/work/runs/symbols/claim")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", choices=sorted(FAMILIES), default="controls", help="which table")
    parser.add_argument(
        "--results",
        type=Path,
        nargs="+",
        help="folders of benchmark passes (every */results.json is read) or results.json files; "
        f"default: {RUNS}/FAMILY, and {RUNS}/controls for the arms semi shares with the controls",
    )
    parser.add_argument("--out", type=Path, help="the table, without suffix; default: results/FAMILY here")
    parser.add_argument("--steps", type=int, default=STEPS, help="the budget read (the rule's: 300)")
    parser.add_argument(
        "--pending",
        nargs=2,
        metavar=("SEED", "FRACTION"),
        help="print the arms of this pass still without a row (comma-separated) and write nothing",
    )
    parser.add_argument("--arms", help="with --pending: the arms asked about, in order; default: the family's")
    args = parser.parse_args(argv)
    family = FAMILIES[args.family]
    out: Path = args.out or HERE / "results" / family.name
    sources = [family, CONTROLS] if family.shared else [family]
    folders: list[Path] = args.results or [RUNS / f.name for f in sources]
    committed = committed_rows(out.with_suffix(".json"), "a controls table")
    if family.shared:  # the shared arms' rows, from the table that trains them, beside this one
        committed += committed_rows(out.with_name(CONTROLS.name + ".json"), "a controls table")
    found = [row for folder in folders for row in found_rows(folder)]
    rows = [r for r in merged(committed, found) if r["method"] in family.every_arm]
    if args.pending:
        return _print_pending(rows, family, args.pending, args.arms, args.steps)
    try:
        readings, missing = read(rows, args.steps, family)
    except (GalaxAlignError, ValueError) as error:
        raise SystemExit(f"{' '.join(map(str, folders))}: {error}") from None
    kept = sorted(
        rows, key=lambda r: (-float(r["label_fraction"]), int(r["seed"]), family.every_arm.index(r["method"]))
    )
    running = {name: step for folder in folders for name, step in in_progress(folder).items()}
    write_json_atomic(
        out.with_suffix(".json"),
        {
            "family": family.name,
            "partial": bool(missing),
            "missing": [{"arm": a, "label_fraction": f, "seed": s} for a, f, s in missing],
            "resume": family.resume,
            "in_progress": running,
            "readings": [asdict(r) for r in readings],
            "rows": kept,
        },
    )
    text = markdown(readings, missing, rows, args.steps, running, family)
    write_text_atomic(out.with_suffix(".md"), text)
    print(text)
    return 0


def _print_pending(rows: list[dict], family: Family, pass_: list[str], arms: str | None, steps: int) -> int:
    try:
        seed, fraction = int(pass_[0]), float(pass_[1])
    except ValueError:
        raise SystemExit(f"--pending: SEED FRACTION must be numbers, got {' '.join(pass_)}") from None
    asked = tuple(arms.split(",")) if arms else family.arms
    unknown = [a for a in asked if a not in family.arms]
    if unknown:
        raise SystemExit(f"--arms: not arms the {family.name} passes train: {', '.join(unknown)}")
    print(",".join(pending(rows, seed, fraction, steps, asked)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
