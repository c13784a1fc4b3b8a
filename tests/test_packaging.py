"""`pip install galaxalign` is enough to classify and search: the renderer and the web server are extras."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXTRAS = {"synth": {"galsim"}, "web": {"fastapi", "uvicorn", "python-multipart"}}
# Import names of what the extras bring (pydantic and starlette come with fastapi).
EXTRA_MODULES = ("galsim", "fastapi", "starlette", "pydantic", "uvicorn", "python_multipart")


def _name(requirement: str) -> str:
    """The normalised project name of a requirement or a pin (PEP 503: case and _ . - alike)."""
    return re.sub(r"[-_.]+", "-", re.split(r"[\s\[<>=!~;]", requirement.strip(), maxsplit=1)[0]).lower()


def _project() -> dict:
    tomllib = pytest.importorskip("tomllib")
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_core_dependencies_leave_the_renderer_and_the_web_server_to_extras():
    project = _project()
    core = {_name(r) for r in project["dependencies"]}
    extras = project["optional-dependencies"]
    for extra, names in EXTRAS.items():
        assert not core & names, f"{sorted(core & names)} belong in [{extra}], not the core"
        assert {_name(r) for r in extras[extra]} >= names
    assert "scipy" in core  # evaluation.metrics uses scipy.special
    assert "galaxalign[synth]" in extras["studies"]


def test_every_dependency_is_pinned_in_constraints():
    """`make setup` installs every extra with constraints.txt: each requirement needs its pin."""
    project = _project()
    pinned = {_name(line) for line in (ROOT / "constraints.txt").read_text().splitlines() if "==" in line}
    requirements = [*project["dependencies"], *(r for rs in project["optional-dependencies"].values() for r in rs)]
    unpinned = {_name(r) for r in requirements} - pinned - {"galaxalign"}
    assert not unpinned, f"not pinned in constraints.txt: {sorted(unpinned)}"


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180)


def test_classification_and_search_import_no_extra():
    """The library's classify, evaluate, index and search paths and their CLI parsers."""
    code = (
        "import sys\n"
        "import galaxalign, galaxalign.runs, galaxalign.search, galaxalign.evaluation, galaxalign.cli\n"
        "import galaxalign.training, galaxalign.jobs.embed, galaxalign.search.survey\n"
        "for command in ('train', 'classify', 'evaluate', 'index', 'search', 'embed'):\n"
        "    galaxalign.cli.build_parser(only=command)\n"
        f"print(sorted(m for m in {EXTRA_MODULES!r} if m in sys.modules))\n"
    )
    done = _python(code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]", f"imported: {done.stdout.strip()}"


# Each module in sys.modules as None is what an environment without it looks like to `import`.
WITHOUT = "import sys\nfor name in {names!r}:\n    sys.modules[name] = None\n"


@pytest.mark.parametrize(
    ("extra", "blocked", "code"),
    [
        ("web", ("fastapi",), "import galaxalign.web"),
        ("web", ("fastapi",), "from galaxalign.web.app import create_app"),
        ("synth", ("galsim",), "from galaxalign.synth import write_synth"),
        ("synth", ("galsim",), "from galaxalign.synth import render_galaxy"),
    ],
)
def test_a_missing_extra_is_named_on_import(extra, blocked, code):
    done = _python(WITHOUT.format(names=blocked) + code)
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("galaxalign.errors.MissingExtraError: ") and f"pip install 'galaxalign[{extra}]'" in last


@pytest.mark.parametrize(
    ("extra", "blocked", "argv"),
    [
        ("web", ("fastapi",), ["serve", "--index", "{tmp}/index"]),
        ("web", ("uvicorn",), ["serve", "--index", "{tmp}/missing"]),
        ("synth", ("galsim",), ["synth", "--out", "{tmp}/sim.h5", "--per-class", "1", "--size", "16"]),
        ("synth", ("galsim",), ["demo", "--quick", "--out", "{tmp}/demo"]),
    ],
)
def test_a_command_without_its_extra_is_a_one_line_error_that_writes_nothing(tmp_path, extra, blocked, argv):
    argv = [a.format(tmp=tmp_path) for a in argv]
    code = WITHOUT.format(names=blocked) + f"from galaxalign.cli import main\nsys.exit(main({argv!r}))\n"
    done = _python(code)
    assert done.returncode == 2, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert f"pip install 'galaxalign[{extra}]'" in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_the_command_list_needs_no_extra():
    """`galaxalign --help` lists every command, those whose extra is missing included."""
    code = WITHOUT.format(names=("galsim", "fastapi", "uvicorn")) + (
        "from galaxalign.cli import COMMANDS, build_parser\n"
        "parser = build_parser()\n"
        "sub = next(a for a in parser._actions if a.dest == 'command')\n"
        "assert sorted(sub.choices) == sorted(COMMANDS)\n"
        "assert 'serve' in parser.format_help() and 'synth' in parser.format_help()\n"
    )
    done = _python(code)
    assert done.returncode == 0, done.stderr
