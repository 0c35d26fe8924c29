# Set-up and everyday commands. `make demo` and `make test` work on a fresh machine:
# each creates the Python 3.12 virtual environment on first use.

PYTHON ?= $(shell for py in $$HOME/.pyenv/versions/3.12*/bin/python python3.12; do $$py -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null && { echo $$py; break; }; done)
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: venv demo test lint benchmarks clean

$(BIN)/torchgeo-ext: pyproject.toml
	@test -n "$(PYTHON)" || { echo "Python 3.12 not found: install it or pass PYTHON=/path/to/python3.12" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

venv: $(BIN)/torchgeo-ext

demo: venv
	$(BIN)/torchgeo-ext demo --output demo_output

test: venv
	$(BIN)/python -m pytest -q -n 2

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

benchmarks: venv
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) demo_output .mypy_cache .ruff_cache .pytest_cache
