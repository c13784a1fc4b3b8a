"""The main job end to end (tiny backbone so it runs in seconds) and its report."""

import json
import re
from pathlib import Path

import pytest

from galaxalign.cli import main
from galaxalign.jobs.demo import DemoResult


@pytest.mark.slow
def test_quick_demo_writes_a_self_contained_report(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--backbone", "tiny", "--per-class", "6", "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "report:" in printed and f"galaxalign serve --index {out / 'index'}" in printed
    html = (out / "report.html").read_text()
    for heading in (
        "Results on the test split",
        "Reading the results",
        "Schematic symbols",
        "Example galaxies",
        "Training",
        "Confusion matrices",
        "The shared space",
        "Similarity search",
        "Try it yourself",
    ):
        assert f"<h2>{heading}</h2>" in html
    sources = re.findall(r'<img src="([^"]+)"', html)
    assert len(sources) >= 9 and all(s.startswith("data:image/png;base64,") for s in sources)
    assert "http://" not in html and "https://" not in html  # nothing fetched from outside
    summary = json.loads((out / "demo_summary.json").read_text())
    for method in ("supervised", "galaxalign"):
        assert 0 <= summary[f"{method}_accuracy"] <= 1
        assert f"{method:<11} test accuracy {summary[f'{method}_accuracy']:.3f}" in printed
        assert f"| {method} |" not in html  # a real HTML table, not markdown
        assert f"<td>{method}</td>" in html
    assert (out / "index" / "manifest.json").exists()


def test_demo_result_summary_is_what_demo_summary_json_holds():
    result = DemoResult(
        report=Path("out/report.html"),
        seconds=61.26,
        index=Path("out/index"),
        run=Path("out/runs/galaxalign"),
        accuracy={"supervised": 0.5, "galaxalign": 0.75},
        map_at_10={"supervised": 0.25, "galaxalign": 0.5},
    )
    assert json.loads(json.dumps(result.summary())) == {
        "report": "out/report.html",
        "seconds": 61.3,
        "index": "out/index",
        "run": "out/runs/galaxalign",
        "supervised_accuracy": 0.5,
        "galaxalign_accuracy": 0.75,
        "supervised_map@10": 0.25,
        "galaxalign_map@10": 0.5,
    }
