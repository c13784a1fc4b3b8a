"""The bookkeeping of the one final reading (issue 24, section 5; the rule in README.md here).

The final reading must read its test file once per committed configuration, also across sittings
whose run folders are gone: so every finished pass's rows (with each run's 1/0 answer per test
galaxy) and test readings are copied into the committed `results/final.json` and
`results/final_readings.jsonl`, and a pass trains only the methods without a row there. The
reading itself is `rejudge.py --pattern final.json --ours CHOSEN`. It trains and scores nothing.

    python studies/claim/final.py methods                 # the choice and its rivals, comma-separated
    python studies/claim/final.py pending SEED [--runs DIR]
    python studies/claim/final.py collect --runs DIR
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from galaxalign.io import write_json_atomic, write_text_atomic

sys.path.insert(0, str(Path(__file__).resolve().parent))
from study_rows import FINAL_FRACTIONS as FRACTIONS  # noqa: E402
from study_rows import STEPS, committed_rows, found_rows, read_object, row_key  # noqa: E402

HERE = Path(__file__).parent
RUNS = Path("/work/runs/symbols/claim/final")


def methods(results: Path) -> list[str]:
    """The chosen configuration, then its rivals, from the committed choice."""
    path = results / "choice.json"
    if not path.exists():
        raise SystemExit(f"{path}: missing: the choice is made first (python studies/claim/choose.py)")
    choice = read_object(path, "a choice of choose.py")
    return [choice["chosen"], *choice["rivals"]]


def committed(results: Path) -> list[dict]:
    return committed_rows(results / "final.json", "a final rows file")


def pending(rows: list[dict], wanted: list[str], seed: int) -> list[str]:
    """The methods of one seed's pass without a test row at every fraction of the rule."""
    done = {row_key(r) for r in rows if "correct" in r}
    return [m for m in wanted if any((m, f, seed, STEPS) not in done for f in FRACTIONS)]


def collect(results: Path, runs: Path) -> int:
    """Merge the passes' rows into results/final.json and their readings into final_readings.jsonl."""
    rows = {row_key(r): r for r in committed(results)}
    rows |= {row_key(r): r for r in found_rows(runs) if "correct" in r}
    ordered = sorted(rows.values(), key=lambda r: (int(r["seed"]), -float(r["label_fraction"]), r["method"]))
    write_json_atomic(results / "final.json", {"rule": "studies/claim/README.md, section 5", "rows": ordered})
    log = results / "final_readings.jsonl"
    lines = log.read_text().splitlines() if log.exists() else []
    for path in sorted(runs.glob("*/test_readings.jsonl")) if runs.is_dir() else []:
        lines += [line for line in path.read_text().splitlines() if line.strip() and line not in lines]
    write_text_atomic(log, "".join(line + "\n" for line in lines))
    return len(ordered)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=HERE / "results", help="the committed results folder")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("methods", help="print the chosen configuration and its rivals")
    ask = commands.add_parser("pending", help="print the methods of SEED's pass still without rows")
    ask.add_argument("seed", type=int)
    ask.add_argument("--runs", type=Path, default=RUNS, help="the final passes' benchmark folders")
    merge = commands.add_parser("collect", help="copy the passes' rows and readings into the results")
    merge.add_argument("--runs", type=Path, default=RUNS, help="the final passes' benchmark folders")
    args = parser.parse_args(argv)
    if args.command == "methods":
        print(",".join(methods(args.results)))
    elif args.command == "pending":
        print(",".join(pending(committed(args.results) + found_rows(args.runs), methods(args.results), args.seed)))
    else:
        print(f"{collect(args.results, args.runs)} rows in {args.results / 'final.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
