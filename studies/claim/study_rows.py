"""What the issue-24 scripts (controls.py, choose.py, final.py) share: the grid their rules were
written for, and one reader of the JSON files they pass between them, so that a malformed file
stops each of them with the same one-line error.

Imported by those scripts from their own folder; it trains, scores and writes nothing.
"""

from __future__ import annotations

import json
from pathlib import Path

VALIDATION_FRACTIONS = (0.1, 0.01)  # the controls, semi and the choice (validation only)
VALIDATION_SEEDS = (0, 1, 2)
FINAL_FRACTIONS = (1.0, 0.1, 0.01)  # the one final reading
STEPS = 300  # every run of issue 24: the budget the study's learning curve chose


def read_object(path: Path, what: str, lists: tuple[str, ...] = ()) -> dict:
    """The JSON object in `path`, whose `lists` keys hold lists; else exit naming the file."""
    try:
        found = json.loads(path.read_text())
        if not isinstance(found, dict):
            raise ValueError("not a JSON object")
        for key in lists:
            if not isinstance(found.get(key), list):
                raise ValueError(f"no {key!r} list")
    except (OSError, ValueError) as error:
        raise SystemExit(f"{path}: not {what} ({error})") from None
    return found


def read_rows(path: Path, what: str) -> list[dict]:
    """The `rows` of a results file (a benchmark's results.json or a committed table)."""
    rows: list[dict] = read_object(path, what, ("rows",))["rows"]
    return rows


def committed_rows(path: Path, what: str) -> list[dict]:
    """The rows of a committed table, or none when there is no table yet."""
    return read_rows(path, what) if path.exists() else []


def found_rows(results: Path) -> list[dict]:
    """Every row of the benchmark folders under `results` (or of one results.json)."""
    files = sorted(results.glob("*/results.json")) if results.is_dir() else [results] if results.exists() else []
    return [row for path in files for row in read_rows(path, "a benchmark results file")]


def row_key(row: dict) -> tuple[str, float, int, int | None]:
    """One run: its method, label fraction, seed and step budget."""
    return row["method"], float(row["label_fraction"]), int(row["seed"]), row.get("steps_budget")
