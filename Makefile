# derflex — the commands the README names. Each target sets up the virtual environment first.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PG_URL ?= postgresql://postgres@127.0.0.1:5432/test
STAMP  := $(VENV)/.installed

.PHONY: setup demo serve test test-slow test-postgres lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

setup: $(STAMP)  ## create .venv and install derflex with its test extras

demo: $(STAMP)  ## the main job end to end on the embedded default (about five minutes; see derflex demo --help)
	$(BIN)/derflex demo

serve: $(STAMP)  ## serve 2030.5 (and the Beckn BPP) with two pre-registered demo devices
	$(BIN)/derflex serve --demo-devices 2

test: $(STAMP)  ## the test suite on SQLite (e2e included), plus the layer contracts; the sweeps' long tails: make test-slow
	$(BIN)/pytest -m "not slow"

test-slow: $(STAMP)  ## the long tails of the random sweeps (marked slow; CI runs them)
	$(BIN)/pytest -m slow

test-postgres: $(STAMP)  ## the tests that use a database, against PostgreSQL (PG_URL)
	DERFLEX_TEST_DATABASE_URL=$(PG_URL) $(BIN)/pytest -m "not e2e"

bench: $(STAMP)  ## serving benchmark; results in bench/results, figures in docs/benchmarks.md
	$(BIN)/python bench/bench_serve.py

clean:  ## remove the virtual environment and local state (keeps certs/README.md)
	rm -rf $(VENV) var .pytest_cache demo-delivery.png
