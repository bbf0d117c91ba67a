# Every target creates .venv and installs the project into it when needed, so a fresh clone
# needs nothing but python3 (3.11+).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/python -m examples.donations

lint: $(STAMP)
	$(BIN)/ruff check storage reactive integrations tests benchmarks examples
	$(BIN)/ruff format --check storage reactive integrations tests benchmarks examples

typecheck: $(STAMP)
	$(BIN)/mypy storage reactive integrations

test: lint typecheck
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python -m benchmarks.storage_floor
	$(BIN)/python -m benchmarks.chain
	$(BIN)/python -m benchmarks.integrations_chain
	$(BIN)/python -m benchmarks.migration_backfill

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
