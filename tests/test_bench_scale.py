"""benchmarks/bench_scale.py at a tiny N: every phase runs against the library, resumes, and reports."""

import json

import pytest

from conftest import benchmark_script


@pytest.fixture(scope="module")
def scale():
    return benchmark_script("bench_scale")


def config(scale, work, **overrides):
    values = dict(
        n=3000,
        shard_rows=1000,
        queries=40,
        val_queries=20,
        latency_queries=20,
        cold_queries=5,
        work_dir=str(work),
        phases=["data", "build", "truth", "serve", "extrapolate", "kill"],
    )
    return scale.ScaleConfig(**(values | overrides))


@pytest.mark.slow
def test_scale_benchmark_measures_every_phase_and_resumes(scale, tmp_path):
    rows = scale.run(config(scale, tmp_path))
    results = json.loads((tmp_path / "results.json").read_text())["phases"]
    assert set(results) == {"data", "build", "truth", "serve", "extrapolate", "kill"}
    assert results["data"]["shards"] == 3
    assert results["build"]["rc"] == 0 and 0 < results["build"]["peak_rss_gb"] < 6
    assert results["kill"]["identical files"] is True and results["kill"]["resume"]["rc"] == 0
    serve = results["serve"]
    assert {r["queries"] for r in serve["rows"]} == {"image", "cross"}
    for r in serve["rows"]:
        assert 0.0 <= r["recall@10"] <= 1.0 and 0 < r["warm p50 ms"] <= r["warm p95 ms"]
        assert r["cold p50 ms"] > 0
    assert 0 < serve["rss after queries GB"] < 2
    extrapolated = results["extrapolate"]["rows"]
    assert [r["N"] for r in extrapolated][1:] == ["1e+08", "1e+09"]
    assert extrapolated[2]["disk GB"] == pytest.approx(10 * extrapolated[1]["disk GB"])
    measures = {r["measure"] for r in rows}
    assert {"build peak RSS", "kill -9 then resume", "serve RSS after open + queries"} <= measures
    assert all(r[""] in ("met", "missed", "") for r in rows)

    # a rerun with --resume skips every finished phase; without it, the folder is refused
    stamps = {name: phase["finished"] for name, phase in results.items()}
    scale.run(config(scale, tmp_path, resume=True))
    again = json.loads((tmp_path / "results.json").read_text())["phases"]
    assert {name: phase["finished"] for name, phase in again.items()} == stamps
    with pytest.raises(SystemExit, match="--resume"):
        scale.run(config(scale, tmp_path))
    with pytest.raises(SystemExit, match="another --work-dir"):
        scale.run(config(scale, tmp_path, n=4000, resume=True))


@pytest.mark.slow
def test_real_queries_phase_trains_embeds_indexes_and_measures(scale, tmp_path):
    scale.run(config(scale, tmp_path, phases=["real"], real_n=300, real_px=28))
    real = json.loads((tmp_path / "results.json").read_text())["phases"]["real"]
    assert {r["queries"] for r in real["rows"]} == {"text", "symbol", "sketch"}
    assert all(0.0 <= r["recall@10"] <= 1.0 and r["count"] > 0 for r in real["rows"])
    assert real["embed job"]["rc"] == 0 and real["embed ratio"]["images"] == 300
    assert 0 < real["embed ratio"]["ratio embed / forward"]
