"""Re-judge every committed paired comparison of the claim study with the few-seed interval.

The claim study's test rows (studies/claim/results/test-class*.json: one row per method, label
fraction and seed, with 1/0 per test galaxy in `correct` and, where a probe was fitted,
`probe_correct`) were judged by a rule that treated the seed-to-seed spread of 3 seeds as known.
This pairs `--ours` with each rival on the seeds both have and prints, per reading, budget,
fraction, rival and metric: the gap, the old half-width, the new one
(`galaxalign.evaluation.metrics.paired_interval`), its degrees of freedom, the per-seed gaps and
the verdict; then how many intervals were read, how many exclude zero, how many would by chance,
and which still do at the family-wise (Bonferroni) level over all of them. It trains and scores
nothing: the answers are the ones the runs kept.

    python studies/claim/rejudge.py [--results studies/claim/results] [--out studies/claim/results/rejudged.json]
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from galaxalign.errors import GalaxAlignError
from galaxalign.evaluation.metrics import paired_interval
from galaxalign.io import write_text_atomic

METRICS = (("accuracy", "correct"), ("probe", "probe_correct"))
LEVEL = 0.95
RULE = "galaxalign.evaluation.metrics.paired_interval: t on Welch-Satterthwaite df (two-way seed x galaxy)"
AGREEMENT_FLAG = 0.05  # mark an interval whose seeds agree this improbably closely


@dataclass(frozen=True)
class Comparison:
    """One paired interval, as read from one rows file."""

    reading: str
    steps: int | None
    fraction: float
    rival: str
    metric: str
    seeds: int
    galaxies: int
    gap: float
    old_half_width: float
    half_width: float
    df: float
    seed_se: float
    galaxy_se: float
    residual_se: float
    seed_agreement_p: float
    per_seed: tuple[float, ...]
    verdict: str
    familywise_half_width: float
    familywise_verdict: str


@dataclass(frozen=True)
class Pair:
    """The kept answers of ours and one rival on the seeds both have: a (seeds, galaxies) array each."""

    reading: str
    steps: int | None
    fraction: float
    rival: str
    metric: str
    ours: np.ndarray
    other: np.ndarray


def verdict(low: float, high: float) -> str:
    return "ahead" if low > 0 else ("behind" if high < 0 else "tie")


def load_rows(path: Path) -> list[dict]:
    try:
        rows = json.loads(path.read_text())["rows"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise GalaxAlignError(f"{path}: not a benchmark results file with 'rows' ({error})") from error
    if not isinstance(rows, list):
        raise GalaxAlignError(f"{path}: 'rows' is not a list")
    return rows


def answers(rows: list[dict], key: str, path: Path) -> dict[tuple[str, float, int | None, int], np.ndarray]:
    """(method, label fraction, step budget, seed) -> 1/0 per test galaxy, for the rows that keep `key`.

    The 30-step reading predates `steps_budget` (null there): its budget is the runs' `steps`."""
    kept = {}
    for r in rows:
        if key in r:
            steps = r.get("steps_budget") or r.get("steps")
            kept[(r["method"], float(r["label_fraction"]), steps, int(r["seed"]))] = np.asarray(r[key], dtype=float)
    if len({len(a) for a in kept.values()}) > 1:
        raise GalaxAlignError(f"{path}: rows hold '{key}' for different numbers of galaxies")
    return kept


def pairs(path: Path, ours: str, rivals: list[str]) -> list[Pair]:
    """Every (budget, fraction, rival, metric) of `path` where `ours` and the rival share seeds."""
    rows = load_rows(path)
    found = []
    for metric, key in METRICS:
        runs = answers(rows, key, path)
        for fraction, steps in sorted(
            {(f, b) for m, f, b, _ in runs if m == ours}, key=lambda fb: (fb[1] or 0, -fb[0])
        ):
            for rival in rivals:
                seeds = sorted(
                    s for m, f, b, s in runs if (m, f, b) == (ours, fraction, steps) and (rival, f, b, s) in runs
                )
                if seeds:
                    a = np.stack([runs[(ours, fraction, steps, s)] for s in seeds])
                    b = np.stack([runs[(rival, fraction, steps, s)] for s in seeds])
                    found.append(Pair(path.name, steps, fraction, rival, metric, a, b))
    metric_order = [m for m, _ in METRICS]
    return sorted(found, key=lambda p: (p.steps or 0, -p.fraction, rivals.index(p.rival), metric_order.index(p.metric)))


def judge(pair: Pair, n_intervals: int) -> Comparison:
    """The pair's interval at 95 % and at the Bonferroni level over the `n_intervals` read with it."""
    result = paired_interval(pair.ours, pair.other, level=LEVEL)
    wide = paired_interval(pair.ours, pair.other, level=1 - (1 - LEVEL) / n_intervals)
    return Comparison(
        reading=pair.reading,
        steps=pair.steps,
        fraction=pair.fraction,
        rival=pair.rival,
        metric=pair.metric,
        seeds=pair.ours.shape[0],
        galaxies=pair.ours.shape[1],
        gap=result.gap,
        old_half_width=result.z_half_width,
        half_width=result.half_width,
        df=result.df,
        seed_se=result.seed_se,
        galaxy_se=result.galaxy_se,
        residual_se=result.residual_se,
        seed_agreement_p=result.seed_agreement_p,
        per_seed=result.per_seed,
        verdict=verdict(result.low, result.high),
        familywise_half_width=wide.half_width,
        familywise_verdict=verdict(wide.low, wide.high),
    )


def markdown(found: list[Comparison], ours: str) -> list[str]:
    """One table per reading: the comparisons a results page states, old and new intervals side by side."""
    lines = []
    for reading in dict.fromkeys(c.reading for c in found):
        lines += [
            f"`{reading}`",
            "",
            f"| steps | labels | {ours} − | metric | gap | old ± (z) | new ± | df | per-seed gaps | verdict |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for c in (c for c in found if c.reading == reading):
            seeds = " ".join(f"{g:+.3f}" for g in c.per_seed)
            bold = "**" if c.verdict != "tie" else ""
            luck = " †" if c.seed_agreement_p < AGREEMENT_FLAG else ""
            family = f" (family-wise: {c.familywise_verdict})" if c.verdict != "tie" else ""
            lines.append(
                f"| {c.steps or ''} | {c.fraction:.0%} | {c.rival} | {c.metric} | {c.gap:+.3f} | "
                f"{c.old_half_width:.3f} | {c.half_width:.3f}{luck} | {c.df:.1f} | {seeds} | "
                f"{bold}{c.verdict}{bold}{family} |"
            )
        lines.append("")
    if any(c.seed_agreement_p < AGREEMENT_FLAG for c in found):
        lines += [
            f"† the per-seed gaps agree more closely than the per-galaxy noise alone would let them "
            f"(chance below {AGREEMENT_FLAG:.0%} with no seed effect at all): that interval is narrow by luck.",
            "",
        ]
    return lines


def rejudge(paths: list[Path], ours: str, rivals: list[str]) -> list[Comparison]:
    """Every comparison of every rows file, readings in budget order; each reading is one family."""
    readings = [pairs(path, ours, rivals) for path in paths]
    readings.sort(key=lambda found: min((p.steps or 0 for p in found), default=0))
    return [judge(pair, len(found)) for found in readings for pair in found]


def counts(found: list[Comparison]) -> dict:
    """How many intervals were read, how many exclude zero (new rule, old rule, family-wise), how many would by chance."""
    return {
        "intervals": len(found),
        "beyond_zero": sum(c.verdict != "tie" for c in found),
        "beyond_zero_old_rule": sum(abs(c.gap) > c.old_half_width for c in found),
        "expected_by_chance": round((1 - LEVEL) * len(found), 2),
        "beyond_zero_familywise": sum(c.familywise_verdict != "tie" for c in found),
    }


def summary(found: list[Comparison]) -> dict:
    by_reading = {r: counts([c for c in found if c.reading == r]) for r in dict.fromkeys(c.reading for c in found)}
    return {**counts(found), "by_reading": by_reading}


def sentence(name: str, n: dict) -> str:
    return (
        f"{name}: {n['intervals']} intervals read at {LEVEL:.0%}, {n['beyond_zero']} exclude zero "
        f"(old rule: {n['beyond_zero_old_rule']}), about {n['expected_by_chance']} would by chance alone; "
        f"at the family-wise level (Bonferroni within each reading) {n['beyond_zero_familywise']} do."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=Path(__file__).parent / "results", help="folder of rows files")
    parser.add_argument("--pattern", default="test-class*.json", help="which rows files to read")
    parser.add_argument("--ours", default="galaxalign")
    parser.add_argument("--rivals", default="supervised,clip,lp-ft")
    parser.add_argument("--out", type=Path, help="write the comparisons as JSON here (default: RESULTS/rejudged.json)")
    args = parser.parse_args()
    paths = sorted(args.results.glob(args.pattern))
    if not paths:
        raise GalaxAlignError(f"{args.results}: no rows file matches {args.pattern}")
    found = rejudge(paths, args.ours, args.rivals.split(","))
    if not found:
        raise GalaxAlignError(f"{args.results}: no rows pair {args.ours} with any of {args.rivals}")
    totals = summary(found)
    print("\n".join(markdown(found, args.ours)))
    for reading, n in totals["by_reading"].items():
        print(sentence(f"`{reading}`", n))
    print(sentence("All readings", totals))
    out = args.out or args.results / "rejudged.json"
    records = [json.dumps({k: _round(v) for k, v in asdict(c).items()}, ensure_ascii=False) for c in found]
    head = json.dumps({"rule": RULE, "ours": args.ours, **totals}, ensure_ascii=False)
    write_text_atomic(out, '{"summary": ' + head + ',\n "comparisons": [\n  ' + ",\n  ".join(records) + "\n]}\n")
    print(f"wrote {out}")


def _round(value: object) -> object:
    if isinstance(value, float):
        return round(value, 5)
    if isinstance(value, tuple | list):
        return [_round(v) for v in value]
    return value


if __name__ == "__main__":
    main()
