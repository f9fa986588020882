# Two commands on a fresh clone: `make run` (the example machine app) and `make test`.
#
# Both use one virtualenv, $(VENV), made with $(PYTHON) on first use:
#   make run     installs the package with the diagram extra (wheels of about 15 MB, no OS
#                package: the example's schema diagram), and serves the example app on SQLite
#   make test    installs the test set, the extras in EXTRAS, and runs the whole suite
# EXTRAS (default dev,nova) is what `make test`, `make install`, `make lint` and the benchmarks
# install. The nova extra (wandelbots-nova with numpy and scipy, about 300 MB) lets `make test`
# run the NOVA runner tests against the fake NOVA server; `make test EXTRAS=dev` skips them.
# Another interpreter needs a venv of its own: make test PYTHON=python3.13 VENV=.venv-3.13
PYTHON ?= python3
VENV ?= .venv
EXTRAS ?= dev,nova
HOST ?= 127.0.0.1
PORT ?= 8000
BIN := $(VENV)/bin
# The test set contains the run set, so installing it stamps both: `make test` then `make run`
# installs nothing more; `make run` then `make test` adds the extras.
RUN_STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-$(EXTRAS)

.PHONY: install run test lint bench bench-http bench-cells bench-live clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(RUN_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[diagram]"
	touch $@

$(TEST_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[$(EXTRAS)]"
	touch $@ $(RUN_STAMP)

install: $(TEST_STAMP)

run: $(RUN_STAMP)
	$(BIN)/python -m examples.machine_app --host $(HOST) --port $(PORT)

# One test process per core (pytest-xdist); TEST_ARGS adds pytest options, e.g. TEST_ARGS=-n0
# to run in one process, or TEST_ARGS='tests/storage -x'.
TEST_ARGS ?=
test: $(TEST_STAMP)
	$(BIN)/python -m pytest -n auto --cov --cov-report=term $(TEST_ARGS)

lint: $(TEST_STAMP)
	$(BIN)/ruff check src tests examples bench
	$(BIN)/mypy src

bench: $(TEST_STAMP)
	$(BIN)/python bench/accessor.py

# HTTP throughput and server memory under uvicorn (uses wrk when installed; ~3-5 minutes).
bench-http: $(TEST_STAMP)
	$(BIN)/python bench/http.py

# Starts, stops and output across two servers on SQLite and PostgreSQL (~1 minute).
bench-cells: $(TEST_STAMP)
	$(BIN)/python bench/cells.py

# Change-feed delivery latency, 200 streaming clients' cost, writes with them (~1.5 minutes).
bench-live: $(TEST_STAMP)
	$(BIN)/python bench/live.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .coverage
