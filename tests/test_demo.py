"""The main job end to end (tiny backbone so it runs in seconds) and its report."""

import json
import re

from galaxalign.cli import main


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
        assert f"| {method} |" not in html  # a real HTML table, not markdown
        assert f"<td>{method}</td>" in html
    assert (out / "index" / "manifest.json").exists()
