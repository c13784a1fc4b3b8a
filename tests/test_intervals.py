"""The paired interval of a gap over (seed, galaxy) answers: by hand, against scipy, and by its coverage
in simulations with known seed and galaxy effects; and the claim study's re-judgement on a small rows file."""

import json
import math

import numpy as np
import pytest
from scipy import stats

from conftest import benchmark_script
from galaxalign.errors import GalaxAlignError
from galaxalign.evaluation.metrics import paired_gap, paired_interval, t_quantile

TRUE_GAP = 0.02


@pytest.mark.parametrize("df", [1.0, 1.5, 2.0, 2.7, 5.0, 30.0, 1000.0])
@pytest.mark.parametrize("probability", [0.9, 0.975, 0.9987])
def test_t_quantile_matches_scipy_t_ppf(df, probability):
    assert t_quantile(probability, df) == pytest.approx(stats.t.ppf(probability, df), rel=1e-10)


def test_t_quantile_at_infinite_df_is_the_normal_quantile():
    assert t_quantile(0.975, math.inf) == pytest.approx(1.959963984540054)
    with pytest.raises(ValueError, match="df > 0"):
        t_quantile(0.975, 0.0)


def test_paired_interval_by_hand():
    ours = np.array([[1, 1, 1, 0], [1, 1, 0, 1]])
    other = np.array([[0, 1, 0, 0], [0, 1, 0, 1]])
    # d = [1,0,1,0] and [1,0,0,0]: gap 3/8. Per seed [.5, .25]: MS_seed = 4 * 0.03125 = 0.125.
    # Per galaxy [1, 0, .5, 0]: MS_galaxy = 2 * 0.6875/3. Residuals d - row - column + gap are
    # +-0.125 (six cells) and +-0.375 (two): MS_residual = 0.375 / 3.
    ms_seed, ms_galaxy, ms_residual = 0.125, 2 * 0.6875 / 3, 0.375 / 3
    variance = (ms_seed + ms_galaxy - ms_residual) / 8
    df = variance**2 / ((ms_seed / 8) ** 2 / 1 + (ms_galaxy / 8) ** 2 / 3 + (ms_residual / 8) ** 2 / 3)
    result = paired_interval(ours, other)
    assert result.gap == pytest.approx(0.375)
    assert result.df == pytest.approx(df)
    assert result.half_width == pytest.approx(stats.t.ppf(0.975, df) * math.sqrt(variance))
    assert result.seed_se == pytest.approx(math.sqrt(ms_seed / 8))
    assert result.per_seed == (0.5, 0.25)
    assert result.z_half_width == pytest.approx(1.96 * math.sqrt(0.6875 / 3 / 4 + 0.03125 / 2), rel=1e-4)
    assert paired_gap(ours, other) == (result.gap, result.half_width)


def test_paired_interval_with_one_seed_or_one_galaxy():
    one_seed = paired_interval(np.array([[1, 1, 0, 1]]), np.array([[0, 1, 0, 0]]))
    assert one_seed.df == 3 and one_seed.seed_se == 0.0  # the seed spread is unknown, not zero
    # d = [1, 0, 0, 1]: variance 1/3 over 4 galaxies, t on 3 df.
    assert one_seed.half_width == pytest.approx(stats.t.ppf(0.975, 3) * math.sqrt(1 / 3 / 4))
    one_galaxy = paired_interval(np.array([[1], [0], [1]]), np.array([[0], [0], [0]]))
    assert one_galaxy.df == 2 and one_galaxy.half_width == pytest.approx(stats.t.ppf(0.975, 2) * math.sqrt(1 / 9))
    assert paired_interval(np.array([[1]]), np.array([[0]])).half_width == math.inf
    with pytest.raises(ValueError, match="one shape"):
        paired_interval(np.zeros((2, 3)), np.zeros((3, 2)))


def test_paired_interval_flags_seeds_that_agree_by_luck():
    """Per-seed gaps far closer together than the per-galaxy noise allows get a small chance."""
    rng = np.random.default_rng(3)
    noise = rng.standard_normal((3, 500))
    tight = noise - noise.mean(axis=1, keepdims=True) + 0.02  # every seed's gap exactly 0.02
    assert paired_interval(tight, np.zeros_like(tight)).seed_agreement_p < 1e-6
    assert paired_interval(noise, np.zeros_like(noise)).seed_agreement_p > 0.01


def coverage(n_seeds, sd_seed, sd_galaxy, sd_residual, n_galaxies=200, repeats=3000, seed=0):
    """How often the new and the old 95 % intervals hold the true gap, under d = mu + a_s + b_g + e_sg."""
    rng = np.random.default_rng(seed)
    shape = (repeats, n_seeds, n_galaxies)
    d = (
        TRUE_GAP
        + sd_seed * rng.standard_normal((repeats, n_seeds, 1))
        + sd_galaxy * rng.standard_normal((repeats, 1, n_galaxies))
        + sd_residual * rng.standard_normal(shape)
    )
    zeros = np.zeros(shape[1:])
    new = old = 0
    for draw in d:
        result = paired_interval(draw, zeros)
        new += abs(result.gap - TRUE_GAP) <= result.half_width
        old += abs(result.gap - TRUE_GAP) <= result.z_half_width
    return new / repeats, old / repeats


# (seed sd, galaxy sd, residual sd): the seed term, then the galaxy term, carries most of the variance.
SEEDS_DOMINATE = (0.05, 0.02, 0.1)
GALAXIES_DOMINATE = (0.0005, 0.3, 0.1)
BOTH = (0.012, 0.2, 0.2)


@pytest.mark.parametrize("n_seeds", [3, 6])
@pytest.mark.parametrize("effects", [SEEDS_DOMINATE, GALAXIES_DOMINATE, BOTH], ids=["seeds", "galaxies", "both"])
def test_paired_interval_covers_95_percent_with_known_seed_and_galaxy_effects(n_seeds, effects):
    new, _ = coverage(n_seeds, *effects)
    assert 0.93 <= new <= 0.97


def test_old_rule_under_covers_when_the_seeds_dominate():
    """1.96 times a 2-df seed spread, as if it were known: the rule the study was first judged by."""
    new, old = coverage(3, *SEEDS_DOMINATE)
    assert old < 0.88 and new > 0.93


def rows_file(path, gaps_by_seed, probe=True, budget=300):
    """A benchmark rows file: galaxalign, supervised and clip at 10 %, 3 seeds, 400 galaxies each.
    `budget=None` writes the 30-step reading's layout (no step budget; the runs' `steps`)."""
    rng = np.random.default_rng(0)
    rows = []
    for seed, gap in enumerate(gaps_by_seed):
        base = rng.random(400) < 0.6
        for method, shift in (("supervised", 0.0), ("clip", gap / 2), ("galaxalign", gap)):
            correct = base | (rng.random(400) < shift)
            row = {"method": method, "label_fraction": 0.1, "seed": seed, "steps_budget": budget, "steps": budget or 30}
            row["correct"] = correct.astype(int).tolist()
            if probe:
                row["probe_correct"] = correct.astype(int).tolist()
            rows.append(row)
    rows.append({"method": "zero-shot", "label_fraction": 0.0, "seed": 0, "accuracy": 0.1})
    path.write_text(json.dumps({"config": {}, "rows": rows}))
    return rows


def test_rejudge_reads_every_comparison_of_a_rows_file(tmp_path, capsys, monkeypatch):
    rejudge = benchmark_script("rejudge")
    rows = rows_file(tmp_path / "test-class-n300.json", [0.3, 0.25, 0.35])
    rows_file(tmp_path / "test-class.json", [0.0, 0.0, 0.0], probe=False, budget=None)
    found = rejudge.rejudge(sorted(tmp_path.glob("test-class*.json")), "galaxalign", ["supervised", "clip", "lp-ft"])
    # The 30-step reading first (no probe: 2 rivals, accuracy only), then 300 steps: 2 rivals x 2 metrics.
    assert [(c.reading, c.rival, c.metric) for c in found][-4:] == [
        ("test-class-n300.json", r, m) for r in ("supervised", "clip") for m in ("accuracy", "probe")
    ]
    assert len(found) == 6 and {c.steps for c in found[:2]} == {30}
    first = found[-4]
    by_seed = {(r["method"], r["seed"]): np.array(r["correct"]) for r in rows if "correct" in r}
    ours = np.stack([by_seed[("galaxalign", s)] for s in range(3)])
    other = np.stack([by_seed[("supervised", s)] for s in range(3)])
    expected = paired_interval(ours, other)
    assert (first.gap, first.half_width, first.df) == (expected.gap, expected.half_width, expected.df)
    assert first.verdict == "ahead" and found[0].verdict == "tie"
    assert first.familywise_half_width > first.half_width  # Bonferroni over the reading's four
    monkeypatch.setattr("sys.argv", ["rejudge", "--results", str(tmp_path), "--out", str(tmp_path / "out.json")])
    rejudge.main()
    printed = capsys.readouterr().out
    assert "`test-class-n300.json`: 4 intervals read at 95%" in printed
    assert "All readings: 6 intervals read at 95%" in printed
    written = json.loads((tmp_path / "out.json").read_text())
    assert written["summary"]["intervals"] == 6 and len(written["comparisons"]) == 6
    assert written["comparisons"][2]["half_width"] == pytest.approx(first.half_width, abs=1e-5)


def test_rejudge_names_a_bad_rows_file(tmp_path):
    rejudge = benchmark_script("rejudge")
    bad = tmp_path / "test-class.json"
    bad.write_text('{"config": {}}')
    with pytest.raises(GalaxAlignError, match="test-class.json: not a benchmark results file"):
        rejudge.pairs(bad, "galaxalign", ["supervised"])
