# derflex — the commands the README names. Each target sets up the virtual environment first.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PG_URL ?= postgresql://postgres@127.0.0.1:5432/test
STAMP  := $(VENV)/.installed

# The suite on three pytest-xdist workers, even on two cores: the e2e tests mostly wait on real
# sockets and clocks (the demo alone about 2.5 minutes), so the other workers fill their waits
# (measured on 2 cores: make test 3m42s with -n 2, 2m57s with -n 3). --dist loadscope keeps a
# module on one worker (an e2e module shares one real server run between its tests), and
# --no-loadscope-reorder keeps tests/conftest.py's longest-first order. WORKERS=0 runs in one process.
WORKERS ?= 3
PYTEST  := $(BIN)/pytest -n $(WORKERS)

.PHONY: setup demo serve test test-slow test-postgres lint bench conformance clean browser haproxy

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

browser:  ## Debian's chromium + chromedriver for the dashboard's browser tests (tests/ui; skipped without them)
	bash .ci/install-browser

haproxy:  ## Debian's haproxy for the multi-host failover test (tests/e2e/test_multihost.py, make test-slow; skipped without it)
	bash .ci/install-haproxy

test: $(STAMP)  ## the test suite on SQLite (e2e included), plus the layer contracts; the sweeps' long tails: make test-slow
	$(PYTEST) --dist loadscope --no-loadscope-reorder -m "not slow"

test-slow: $(STAMP)  ## the long tests (random sweeps' tails, the live browser window, the v2 demo, multi-host failover; CI runs them)
	$(PYTEST) --dist loadscope --no-loadscope-reorder -m slow  # a module per worker, longest first: the long ones never queue behind each other

test-postgres: $(STAMP)  ## the tests that use a database, against PostgreSQL (PG_URL)
	DERFLEX_TEST_DATABASE_URL=$(PG_URL) $(PYTEST) --dist loadscope --no-loadscope-reorder -m "not e2e"

bench: $(STAMP)  ## serving benchmark; results in bench/results, figures in docs/benchmarks.md
	$(BIN)/python bench/bench_serve.py

# The CSIP-AUS harness (cactus-client, Python 3.12 in .venv-conformance/) against a fresh derflex per
# procedure; PROCEDURES=S-ALL-01,S-ALL-02 runs some; results in conformance-results/. Options:
# $(BIN)/python -m server.conformance.driver --help (CONFORMANCE_ARGS passes more).
conformance: $(STAMP)  ## the CSIP-AUS conformance harness against derflex (docs/interop.md)
	$(BIN)/python -m server.conformance.driver $(if $(PROCEDURES),--procedures $(PROCEDURES)) $(CONFORMANCE_ARGS)

clean:  ## remove the virtual environment and local state (keeps certs/README.md)
	rm -rf $(VENV) var .pytest_cache demo-delivery.png
