# The two commands a new user needs: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY_SOURCES := tasks.py nself_ops library module_utils doc_fragments sample_api tests benchmarks scripts

.PHONY: setup system-packages venv demo test lint unit integration bench clean

## setup: install the Debian packages and the pinned Python packages (.venv).
setup: system-packages venv

system-packages:
	@bash scripts/install-system-packages.sh

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet --upgrade pip
	@$(BIN)/python -m pip install --quiet -r requirements.txt
	@$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	@touch $@

## demo: bring the local stack up and show it answering through nginx.
demo: setup
	@bash scripts/demo.sh

## test: set everything up, lint, and run the whole suite against real services.
test: setup
	@bash scripts/docker-engine.sh || echo "docker engine: not available; docker tests will say why they skip"
	@$(MAKE) --no-print-directory lint
	@$(BIN)/pytest

lint:
	@$(BIN)/ruff format --check $(wildcard $(PY_SOURCES))
	@$(BIN)/ruff check $(wildcard $(PY_SOURCES))
	@$(BIN)/ansible-lint --offline -q playbooks roles

## bench: the benchmarks; their figures go to results/.
bench: setup
	@for script in benchmarks/*.py; do $(BIN)/python "$$script" || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
