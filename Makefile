# emwatch developer tasks. `make demo` runs the service with local servers; `make test` is what CI runs.

VENV ?= .venv
PY = $(VENV)/bin/python
# The first Python >= 3.11 on PATH; override with `make PYTHON=/path/to/python3.12`.
PYTHON ?= $(shell for p in python3 python3.13 python3.12 python3.11; do \
	$$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null && { echo $$p; break; }; done)
STAMP = $(VENV)/.installed
LINT_PATHS = $(wildcard src tests device_sim benchmarks)

.PHONY: venv demo test lint bench clean

venv: $(STAMP)

# Reinstalls only when pyproject.toml changes.
$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "emwatch needs Python >= 3.11 (none found; set PYTHON=...)" >&2; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[dev]"
	touch $@

demo: venv
	$(VENV)/bin/emwatch demo

test: venv lint
	$(VENV)/bin/pytest -x -q $(PYTEST_ARGS)

lint: venv
	$(VENV)/bin/ruff check $(LINT_PATHS)
	$(VENV)/bin/mypy

bench: venv
	@if [ -f benchmarks/run.py ]; then $(PY) benchmarks/run.py $(BENCH_ARGS); \
	else $(PY) benchmarks/bench_geo.py $(BENCH_ARGS); fi

# Leaves .venv and the demo's data in .emwatch/ alone: `rm -rf .venv .emwatch` resets those.
clean:
	rm -rf build dist test-artifacts .pytest_cache .mypy_cache .ruff_cache src/*.egg-info *.egg-info
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +
