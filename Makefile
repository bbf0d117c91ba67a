# Every target creates .venv and installs the project into it when needed, so a fresh clone
# needs nothing but python3 (3.11+).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run tour reset test lint typecheck bench bench-original original-deps clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The example application keeps its data in ./donations.db (DATABASE=path or
# DATABASE_URL=sqlite:///path to choose another file) and its JWT secret beside it;
# DATABASE_URL=postgresql://user@host:port/database keeps it on PostgreSQL; there WORKERS=n
# serves it from n processes on the one port (the parent binds it and runs the fake providers;
# SQLite refuses WORKERS > 1).
run: $(STAMP)
	$(BIN)/python -m examples.donations

# A short tour of the engine alone (prints what happens; its database is a temporary file).
tour: $(STAMP)
	$(BIN)/python -m examples.tour

# Remove the example application's database and JWT secret (the same DATABASE as `make run`).
reset: $(STAMP)
	$(BIN)/python -m examples.donations reset

lint: $(STAMP)
	$(BIN)/ruff check storage reactive integrations tests benchmarks examples
	$(BIN)/ruff format --check storage reactive integrations tests benchmarks examples

typecheck: $(STAMP)
	$(BIN)/mypy storage reactive integrations tests benchmarks examples

# The PostgreSQL half of the suites runs when INTERAQT_TEST_PG (default
# postgresql://postgres@127.0.0.1:5432/test) answers, else it is skipped with one line saying
# why; INTERAQT_REQUIRE_PG=1 (set by .ci/run) makes an unreachable server fail the run.
test: lint typecheck
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python -m benchmarks.storage_floor
	$(BIN)/python -m benchmarks.chain
	$(BIN)/python -m benchmarks.integrations_chain
	$(BIN)/python -m benchmarks.login_flood
	$(BIN)/python -m benchmarks.lock_latency
	$(BIN)/python -m benchmarks.migration_backfill
	$(BIN)/python -m benchmarks.filtered_count
	$(BIN)/python -m benchmarks.data_deps
	$(BIN)/python -m benchmarks.pg_driver
	$(BIN)/python -m benchmarks.pg_chain
	$(BIN)/python -m benchmarks.cluster_chain
	@# Beside the original interaqt, installed here when npm is on the PATH (one skip line
	@# without node or npm).
	@if command -v npm >/dev/null; then $(MAKE) --no-print-directory original-deps; fi
	$(BIN)/python -m benchmarks.original_side_by_side
	@# SEAM_BASE=path/to/another/checkout (with its own .venv): the SQLite chain, count and
	@# summation of both, in CPU time, in turns (issue 11: the seam must not cost SQLite).
	@if [ -n "$(SEAM_BASE)" ]; then $(BIN)/python -m benchmarks.seam_cost "$(SEAM_BASE)"; fi

# Our PostgreSQL chain, count and summation beside the original interaqt framework's (npm,
# pinned in benchmarks/original/package-lock.json; needs node and npm), in turns, with ratios.
# Not part of `make test`; `make bench` runs the comparison only once this has installed it.
# --ignore-scripts: interaqt's drivers bundle imports better-sqlite3, PGlite and mysql2 at load
# time, but only pg is used, so better-sqlite3 needs no native build.
bench-original: $(STAMP) original-deps
	$(BIN)/python -m benchmarks.original_side_by_side

original-deps:
	npm ci --prefix benchmarks/original --ignore-scripts --no-audit --no-fund

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
