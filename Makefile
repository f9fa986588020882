# Two commands on a fresh clone: `make run` (the example machine app) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev
HOST ?= 127.0.0.1
PORT ?= 8000
# The nova extra (wandelbots-nova, about 300 MB) is part of the dev install so that `make test`
# runs the NOVA runner tests against the fake NOVA server; EXTRAS=dev skips it.
EXTRAS ?= dev,nova

.PHONY: install run test lint bench bench-http bench-cells bench-live clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev,nova]"
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/python -m examples.machine_app --host $(HOST) --port $(PORT)

test: $(STAMP)
	$(BIN)/python -m pytest --cov --cov-report=term

lint: $(STAMP)
	$(BIN)/ruff check src tests examples bench
	$(BIN)/mypy src

bench: $(STAMP)
	$(BIN)/python bench/accessor.py

# HTTP throughput and server memory under uvicorn (uses wrk when installed; ~3-5 minutes).
bench-http: $(STAMP)
	$(BIN)/python bench/http.py

# Starts, stops and output across two servers on SQLite and PostgreSQL (~1 minute).
bench-cells: $(STAMP)
	$(BIN)/python bench/cells.py

# Change-feed delivery latency, 200 streaming clients' cost, writes with them (~1.5 minutes).
bench-live: $(STAMP)
	$(BIN)/python bench/live.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .coverage
