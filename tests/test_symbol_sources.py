"""Where the symbols come from and how they enter training: the symbol-source flag is refused
where it does nothing, and applies per method in a benchmark."""

from __future__ import annotations

import pytest

from galaxalign.cli import main
from galaxalign.errors import GalaxAlignError
from galaxalign.jobs.config import BenchmarkConfig
from galaxalign.training import METHODS, TrainConfig

NO_SYMBOLS = [m.name for m in METHODS.values() if not m.uses_symbols]


@pytest.mark.parametrize("method", NO_SYMBOLS)
def test_a_symbol_source_for_a_method_without_symbols_is_one_line_exit_2(easy_h5, tmp_path, capsys, method):
    out = tmp_path / "r"
    argv = ["train", "--data", str(easy_h5), "--out", str(out), "--backbone", "tiny", "--method", method]
    assert main([*argv, "--symbols", "galaxy", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--symbols galaxy" in err and f"method {method}" in err
    assert not out.exists()  # nothing half-written


def test_per_galaxy_symbols_for_a_method_without_galaxies_are_refused():
    with pytest.raises(GalaxAlignError, match="method zero-label, which trains on no galaxies"):
        TrainConfig(data="d", out="o", method="zero-label", symbols="galaxy")


def test_benchmark_applies_the_symbol_source_to_the_methods_that_use_symbols(tmp_path):
    base = TrainConfig(data="", out="", symbols="galaxy")
    config = BenchmarkConfig(data="d", out=str(tmp_path), methods="supervised,clip,galaxalign", train=base)
    assert config.train.for_method("galaxalign").symbols == "galaxy"
    assert (
        config.train.for_method("clip").symbols == "class" and config.train.for_method("zero-label").symbols == "class"
    )
    with pytest.raises(
        GalaxAlignError,
        match="benchmark: --symbols galaxy does nothing for the methods supervised, clip, zero-label: none",
    ):
        BenchmarkConfig(data="d", out=str(tmp_path), methods="supervised,clip,zero-label", train=base)
