"""tools/import_graph.py: the checker `make lint` runs, on tiny packages and on galaxalign itself."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]


def _load_tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("import_graph", ROOT / "tools" / "import_graph.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["import_graph"] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


ig = _load_tool()
FLOORS = (("base",), ("mid",), ("top",))


def make_package(root: Path, files: dict[str, str]) -> Path:
    """A package `pkg` under root from {relative path: source}; every folder gets an __init__."""
    pkg = root / "pkg"
    for rel, text in {"__init__.py": "", **files}.items():
        path = pkg / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        for parent in path.relative_to(pkg).parents:
            (pkg / parent / "__init__.py").touch()
        path.write_text(text)
    return pkg


def test_cycle_through_a_lazy_import_is_found_with_its_lines(tmp_path):
    pkg = make_package(
        tmp_path,
        {
            "base/a.py": "from pkg.base.b import helper\n",
            "base/b.py": "def helper():\n    from pkg.base import a\n    return a\n",
        },
    )
    problems = ig.report(pkg, "pkg", FLOORS)
    assert problems == [
        "module cycle among pkg.base.a, pkg.base.b: pkg.base.a (top, line 1) -> pkg.base.b (lazy, line 2) -> pkg.base.a"
    ]


def test_type_checking_imports_count_as_edges(tmp_path):
    pkg = make_package(
        tmp_path,
        {
            "base/a.py": "import pkg.base.b\n",
            "base/b.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.base.a import X\n",
        },
    )
    edges = ig.import_edges(pkg, "pkg")
    assert ig.Edge("pkg.base.b", "pkg.base.a", 3, "type-checking") in edges
    assert any(line.startswith("module cycle among pkg.base.a, pkg.base.b") for line in ig.report(pkg, "pkg", FLOORS))


def test_relative_imports_resolve_to_modules_or_their_package(tmp_path):
    pkg = make_package(
        tmp_path,
        {
            "mid/__init__.py": "from .core import thing\n",
            "mid/core.py": "from . import util\nfrom ..base import name\nthing = 1\n",
            "mid/util.py": "",
            "base/__init__.py": "name = 2\n",
        },
    )
    pairs = {(e.source, e.target) for e in ig.import_edges(pkg, "pkg")}
    assert pairs == {("pkg.mid", "pkg.mid.core"), ("pkg.mid.core", "pkg.mid.util"), ("pkg.mid.core", "pkg.base")}
    assert ig.report(pkg, "pkg", FLOORS) == []


def test_upward_import_and_floor_cycle_are_reported(tmp_path):
    pkg = make_package(
        tmp_path,
        {
            "base/low.py": "def f():\n    from pkg.top.high import g\n",
            "top/high.py": "from pkg.base.low import f\ndef g(): pass\n",
        },
    )
    problems = ig.report(pkg, "pkg", FLOORS)
    assert "upward import: pkg.base.low -> pkg.top.high (lazy, line 2): base (rank 0) imports top (rank 2)" in problems
    assert any(p.startswith("floor cycle among base, top") for p in problems)


def test_undeclared_floor_is_a_problem(tmp_path):
    pkg = make_package(tmp_path, {"extra.py": "from pkg.base import x\n", "base/__init__.py": "x = 1\n"})
    assert ig.report(pkg, "pkg", FLOORS) == [
        "upward import: pkg.extra -> pkg.base (top, line 1): floor 'extra' is not declared in FLOORS"
    ]


def test_main_prints_the_cycle_and_exits_1(tmp_path, capsys):
    pkg = make_package(tmp_path, {"a.py": "import pkg.b\n", "b.py": "import pkg.a\n"})
    assert ig.main(["--root", str(pkg)]) == 1
    assert "module cycle among pkg.a, pkg.b" in capsys.readouterr().out


def test_main_refuses_a_folder_that_is_not_a_package(tmp_path, capsys):
    assert ig.main(["--root", str(tmp_path)]) == 2
    assert "not a package folder" in capsys.readouterr().err


def test_galaxalign_floors_point_one_way():
    problems = ig.report(ROOT / "src" / "galaxalign", "galaxalign")
    assert [p for p in problems if not p.startswith("module cycle")] == []


def test_galaxalign_has_no_module_cycles():
    assert ig.report(ROOT / "src" / "galaxalign", "galaxalign") == []
