"""A bounded load test: 8 concurrent clients for 8 s against `galaxalign serve` on 127.0.0.1.

The server is the real CLI in a child process over a 30-galaxy index of a tiny run; the clients
mix text, symbol, id and thumbnail requests. Every request must be answered 200. The latency
table is printed; benchmarks/bench_serve.py runs the full 30 s version with the packaged backbone.
"""

import pytest

from conftest import benchmark_script
from galaxalign.search import build_index

CLIENTS, SECONDS = 8, 8.0


bench_serve, bench_run = benchmark_script("bench_serve"), benchmark_script("run")


@pytest.fixture(scope="module")
def index_dir(run, dataset, tmp_path_factory):  # noqa: F811
    out = tmp_path_factory.mktemp("indexes") / "load"
    build_index(run, dataset, out)
    return out


@pytest.mark.slow
def test_concurrent_clients_get_only_200s(index_dir, capsys):
    with bench_serve.serve(index_dir) as url:
        assert url.startswith("http://127.0.0.1:")
        samples = bench_serve.drive(url, clients=CLIENTS, seconds=SECONDS)
    rows = bench_serve.summarise(samples, SECONDS)
    with capsys.disabled():
        print(
            f"\n{CLIENTS} clients, {SECONDS:g} s, tiny run, {len(samples)} request kinds:\n{bench_run.markdown_table(rows)}"
        )
    for row in rows:
        assert row["requests"] > 0 and row["errors"] == 0, row
