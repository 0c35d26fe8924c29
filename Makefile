# Set-up and everyday commands. `make demo` and `make test` work on a fresh machine:
# each creates the Python 3.12 virtual environment on first use.

PYTHON ?= $(shell for py in $$HOME/.pyenv/versions/3.12*/bin/python python3.12; do $$py -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null && { echo $$py; break; }; done)
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: venv demo test lint docs benchmarks clean

$(BIN)/torchgeo-ext: pyproject.toml
	@test -n "$(PYTHON)" || { echo "Python 3.12 not found: install it or pass PYTHON=/path/to/python3.12" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,docs]'
	@touch $@

venv: $(BIN)/torchgeo-ext

demo: venv
	$(BIN)/torchgeo-ext demo --output demo_output

# The unit tests and the tutorial notebooks (executed by nbmake; the per-cell limit leaves room
# for a loaded machine, a notebook takes about a minute on 2 idle cores).
test: venv
	$(BIN)/python -m pytest -q -n 2 --nbmake --nbmake-timeout=600 tests docs/tutorials

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The documentation site (Sphinx, warnings are errors; executes the tutorial notebooks).
# Offline by default; TORCHGEO_EXT_DOCS_ONLINE=1 adds intersphinx links (needs the network).
docs: venv
	$(BIN)/python -m sphinx -W --keep-going -b html docs docs/_build/html

benchmarks: venv
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) demo_output .mypy_cache .ruff_cache .pytest_cache docs/_build docs/api/generated
