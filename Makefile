# Two entry points for a fresh clone: `make demo` and `make test`.
# Everything is installed into .venv from the committed lock files.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
VENV_DBT := .venv-dbt
UV     := $(BIN)/uv
UV_VERSION := 0.13.9

DEMO_ARGS ?=

.PHONY: demo test lint typecheck unit bench lock clean browser

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet uv==$(UV_VERSION)

# Bytecode compiled at install: a process that may not write it (PYTHONDONTWRITEBYTECODE, a
# read-only venv) would otherwise compile every module it imports, seconds per start. The
# project's own sources are compiled before each demo and test run for the same reason.
$(VENV)/.runtime: $(BIN)/python requirements.lock pyproject.toml
	$(UV) pip install --quiet --compile-bytecode --python $(BIN)/python -r requirements.lock
	$(UV) pip install --quiet --python $(BIN)/python --no-deps -e .
	touch $@

# lifetimes is test data only: its wheel carries CDNOW's purchase log (CDNOW_master.txt and
# its 1/10 sample), which tests/cdnow.py reads as files; nothing imports the package. It is
# installed --no-deps because its declared dependencies (pandas, autograd, dill) are never
# used here, and a lock file cannot hold a --no-deps install (uv pip compile resolves and pins
# every dependency of what it lists), so the exact pin lives here instead.
LIFETIMES_VERSION := 0.11.3

$(VENV)/.dev: $(VENV)/.runtime requirements-dev.lock Makefile $(VENV_DBT)/.installed
	$(UV) pip install --quiet --compile-bytecode --python $(BIN)/python -r requirements-dev.lock
	$(UV) pip install --quiet --python $(BIN)/python --no-deps lifetimes==$(LIFETIMES_VERSION)
	touch $@

# dbt in an environment of its own (the dbt export's test runs `.venv-dbt/bin/dbt build`):
# dbt-core 1.11 pins pathspec<0.13, which would downgrade the dev tools beside it. Its
# duckdb is pinned to ours (`make lock`), so productlens reads the file dbt writes.
$(VENV_DBT)/.installed: $(BIN)/python requirements-dbt.lock
	$(PYTHON) -m venv --without-pip $(VENV_DBT)
	$(UV) pip install --quiet --compile-bytecode --python $(VENV_DBT)/bin/python -r requirements-dbt.lock
	touch $@

## demo: simulate -> ingest -> build -> check -> report on the embedded DuckDB engine
demo: $(VENV)/.runtime
	$(BIN)/python -m compileall -q src
	$(BIN)/productlens --project demo demo $(DEMO_ARGS)

## test: lint, format check, type check and the whole test suite
test: $(VENV)/.dev lint typecheck unit

PY_DIRS := src tests $(wildcard bench)

lint: $(VENV)/.dev
	$(BIN)/ruff check $(PY_DIRS)
	$(BIN)/ruff format --check $(PY_DIRS)
	$(BIN)/sqlfluff lint --disable-progress-bar src/productlens/models

typecheck: $(VENV)/.dev
	$(BIN)/mypy

unit: $(VENV)/.dev browser
	$(BIN)/python -m compileall -q src
	$(BIN)/pytest -n 2 --dist loadgroup --durations=25

## browser: Debian's chromium for the dashboard's browser test (Playwright drives it;
## it never downloads a browser of its own). Installed when missing and we are root.
CHROMIUM := /usr/bin/chromium
browser:
	@if [ ! -x $(CHROMIUM) ]; then \
		if [ "$$(id -u)" = 0 ]; then \
			echo "installing Debian's chromium for the dashboard's browser test"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
		else \
			echo "the dashboard's browser test needs Debian's chromium at $(CHROMIUM):" \
				"run 'sudo apt-get install chromium', then make test again" >&2; \
			exit 1; \
		fi; \
	fi

## bench: performance benchmarks, printed as tables (BENCH_ARGS="ingest --sizes 1M")
BENCH_ARGS ?=
bench: $(VENV)/.dev
	$(BIN)/python -m bench $(BENCH_ARGS)

## lock: re-resolve the pinned dependency sets after editing pyproject.toml
lock: $(BIN)/python
	$(UV) pip compile --quiet --python-version 3.11 pyproject.toml -o requirements.lock
	$(UV) pip compile --quiet --python-version 3.11 pyproject.toml --extra dev -o requirements-dev.lock
	grep '^duckdb==' requirements.lock > $(VENV)/dbt-constraints.txt
	$(UV) pip compile --quiet --python-version 3.11 requirements-dbt.in \
		-c $(VENV)/dbt-constraints.txt -o requirements-dbt.lock

clean:
	rm -rf $(VENV) $(VENV_DBT) .pytest_cache .mypy_cache .ruff_cache demo
