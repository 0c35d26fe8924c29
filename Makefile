# Set-up and everyday commands. `make demo` and `make test` work on a fresh machine:
# each creates the Python 3.12 virtual environment on first use, installing the exact versions
# of requirements/lock.txt (pyproject.toml keeps the ranges users install into; the lock is
# this repository's set-up, CI and benchmarks). `make lock` regenerates the lock from the
# newest versions pyproject.toml allows; `make test-latest` runs the suite on those without it.

SHELL := /bin/bash

PYTHON ?= $(shell for py in $$HOME/.pyenv/versions/3.12*/bin/python python3.12; do $$py -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null && { echo $$py; break; }; done)
VENV ?= .venv
BIN := $(VENV)/bin
LOCK := requirements/lock.txt
# The extras the development environment installs (and the lock covers).
EXTRAS := dev,docs,federated
PYTEST_ARGS := -q -n 2 --nbmake --nbmake-timeout=600 tests docs/tutorials

.PHONY: venv demo test test-latest lock lint docs benchmarks clean check-python

check-python:
	@test -n "$(PYTHON)" || { echo "Python 3.12 not found: install it or pass PYTHON=/path/to/python3.12" >&2; exit 1; }

# The lock is a pip constraints file: packages it lists are installed at exactly that version,
# whatever pulls them in; packages of other platforms in it are ignored.
$(BIN)/torchgeo-ext: pyproject.toml $(LOCK) | check-python
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade --constraint $(LOCK) pip
	$(BIN)/python -m pip install --quiet --constraint $(LOCK) -e '.[$(EXTRAS)]'
	@touch $@

venv: $(BIN)/torchgeo-ext

demo: venv
	$(BIN)/torchgeo-ext demo --output demo_output

# The unit tests and the tutorial notebooks (executed by nbmake; the per-cell limit leaves room
# for a loaded machine, a notebook takes about a minute on 2 idle cores).
test: venv
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Regenerate the lock: a throw-away venv with the newest versions pyproject.toml allows, frozen.
# Commit the new lock together with whatever the new versions needed (docs/contributing.md).
lock: check-python
	rm -rf .venv-lock
	$(PYTHON) -m venv .venv-lock
	.venv-lock/bin/python -m pip install --quiet --upgrade pip
	.venv-lock/bin/python -m pip install --quiet -e '.[$(EXTRAS)]'
	mkdir -p $(dir $(LOCK))
	{ echo '# Exact versions of the development environment (pip constraints), made by `make lock`'; \
	  echo "# on $$(date -u +%Y-%m-%d) with $$(.venv-lock/bin/python --version), Linux x86_64, from pyproject.toml [$(EXTRAS)]."; \
	  .venv-lock/bin/python -m pip freeze --all --exclude-editable; } > $(LOCK).tmp
	mv $(LOCK).tmp $(LOCK)
	rm -rf .venv-lock

# The suite on the newest versions pyproject.toml allows (no lock), in its own venv: drift in
# torch & co. is found here on purpose, not by CI. Rebuilt from scratch each time.
test-latest: check-python
	rm -rf .venv-latest
	$(PYTHON) -m venv .venv-latest
	.venv-latest/bin/python -m pip install --quiet --upgrade pip
	.venv-latest/bin/python -m pip install --quiet --upgrade --upgrade-strategy eager -e '.[$(EXTRAS)]'
	.venv-latest/bin/python -m pip freeze --exclude-editable > .venv-latest/versions.txt
	@echo "newest versions: .venv-latest/versions.txt; differences from the lock:"
	@diff <(grep -v '^#' $(LOCK) | sort) <(sort .venv-latest/versions.txt) || true
	.venv-latest/bin/python -m pytest $(PYTEST_ARGS)

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
	rm -rf $(VENV) .venv-lock .venv-latest demo_output .mypy_cache .ruff_cache .pytest_cache docs/_build docs/api/generated
