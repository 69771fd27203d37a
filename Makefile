# streamapp: the two README commands are `make run` and `make test`.
# Everything else is a building block of those two. `make help` lists the targets.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
VENV_STAMP := $(VENV)/.streamapp-installed
CONSTRAINTS := $(wildcard constraints.txt)
PIP_CONSTRAINTS := $(if $(CONSTRAINTS),-c $(CONSTRAINTS))
JARS_STAMP := stack/lib/.resolved
MVN ?= mvn
STACK := $(PY) -m devstack
PYTEST_ARGS ?=

.PHONY: help venv jars browser up down status run test lint clean distclean \
	notebook notebook-run backfill bench bench-quick chaos wheelhouse standins docker-engine docker-test

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | \
		awk 'BEGIN {FS = ":.*## "} {printf "  make %-10s %s\n", $$1, $$2}'

# ---------------------------------------------------------------- bootstrap
venv: $(VENV_STAMP) ## create .venv (python3.11) and install the package with [dev]

$(VENV_STAMP): setup.cfg pyproject.toml $(CONSTRAINTS)
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found: install Python 3.11"; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q $(PIP_CONSTRAINTS) -e '.[dev,notebook]'
	@touch $@

jars: $(JARS_STAMP) ## resolve the Kafka + ZooKeeper jars from Maven Central into stack/lib

# Without a stamp the jars are only completed (never removed: a running stack uses
# them); when pom.xml changed since the last resolution the old jars are replaced.
$(JARS_STAMP): stack/pom.xml
	@command -v $(MVN) >/dev/null || { echo "mvn not found: install Maven (apt-get install maven)"; exit 1; }
	@if [ -f $@ ]; then rm -f stack/lib/*.jar; fi
	$(MVN) -q -B -f stack/pom.xml dependency:copy-dependencies
	@touch $@

# Debian's Chromium drives the dashboard's browser test (Playwright, no download).
CHROMIUM ?= /usr/bin/chromium
browser: ## install Debian's chromium for the browser test when it is missing
	@if [ ! -x $(CHROMIUM) ]; then \
		if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium >/dev/null; \
		elif command -v sudo >/dev/null; then sudo apt-get update -qq && sudo apt-get install -y -qq chromium >/dev/null; \
		else echo "chromium missing: apt-get install chromium (as root)"; exit 1; fi; \
	fi

# ---------------------------------------------------------------- the stack
# KAFKA_MODE=kraft (or any setting of .env.example) can be given on the command line.
up: venv jars ## start ZooKeeper/KRaft, Kafka and PostgreSQL; wait until they answer
	$(STACK) up

down: venv ## stop the processes `make up` started
	$(STACK) down

status: venv ## show what runs (pid, port, answering)
	$(STACK) status

# ---------------------------------------------------------------- README commands
run: venv up ## bootstrap, bring the stack up, run the Faust worker in the foreground
	$(VENV)/bin/faust -A streamapp worker -l info

# The KRaft round trip runs inside the suite (tests/integration/test_stack.py) on its
# own ports and state dir, so the shared stack keeps running in the default mode.
test: venv jars browser up ## bootstrap, bring the stack up, run the whole test suite
	@rc=0; $(PY) -m pytest $(PYTEST_ARGS) || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests (exit 5): that is a failure"; fi; \
	exit $$rc

# e.g. make backfill SINCE=2024-01-01 UNTIL=2024-02-01 ARGS="--min-magnitude 4.5"
backfill: venv up ## load past events from the USGS event service: SINCE=... UNTIL=... [ARGS=...]
	@if [ -z "$${SINCE:-}" ] || [ -z "$${UNTIL:-}" ]; then \
		echo "make backfill needs SINCE and UNTIL, e.g. make backfill SINCE=2024-01-01 UNTIL=2024-02-01"; exit 2; fi
	$(VENV)/bin/faust -A streamapp backfill --since "$(SINCE)" --until "$(UNTIL)" $(ARGS)

notebook: venv up ## open the EDA notebook in JupyterLab (run a worker for live data)
	$(VENV)/bin/jupyter lab notebooks/eda.ipynb

notebook-run: venv up ## execute the EDA notebook headless into /tmp/eda.executed.ipynb
	$(VENV)/bin/jupyter nbconvert --to notebook --execute notebooks/eda.ipynb \
		--output-dir /tmp --output eda.executed.ipynb

chaos: venv jars up ## fault-injection suite, full profile (>= 20,000 events a scenario); writes docs/reliability.md
	CHAOS_PROFILE=full $(PY) -m pytest -m chaos tests/chaos $(PYTEST_ARGS)

BENCH_ARGS ?=
BENCH_STAMP := $(VENV)/.streamapp-bench-installed

$(BENCH_STAMP): $(VENV_STAMP) setup.cfg
	$(PY) -m pip install -q $(PIP_CONSTRAINTS) -e '.[dev,notebook,bench]'
	@touch $@

bench: $(BENCH_STAMP) up ## full benchmark (N=200,000 + latency); writes docs/benchmarks.md/.png
	$(PY) -m bench.run $(BENCH_ARGS)

bench-quick: $(BENCH_STAMP) up ## quick benchmark (N=20,000, best of 4 streamapp/peer pairs, < 3 min); JSON in bench/results/
	$(PY) -m bench.run --quick $(BENCH_ARGS)

# ---------------------------------------------------------------- docker
# `make docker-test` needs a Docker engine with the Compose v2 plugin; it never
# installs or starts one (.ci/run does, in CI). STANDINS=1 swaps the third-party
# images for local builds (docker/build-standins.sh) so nothing is pulled.
STANDINS ?=

wheelhouse: venv ## every wheel the image installs, in ./wheelhouse (docker build --build-arg OFFLINE=1)
	docker/wheelhouse.sh $(PY)

docker-engine:
	@docker/engine.sh check

standins: docker-engine jars ## build the stand-in images (Debian packages + stack/lib jars) CI uses instead of pulls
	docker/build-standins.sh

docker-test: docker-engine venv wheelhouse $(if $(filter 1,$(STANDINS)),standins) ## build the image, run the compose files for real (STANDINS=1: no pulls)
	STREAMAPP_DOCKER_TEST=1 STREAMAPP_DOCKER_STANDINS=$(STANDINS) $(PY) -m pytest tests/docker $(PYTEST_ARGS)

lint: venv ## ruff check, ruff format --check, mypy
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# ---------------------------------------------------------------- housekeeping
clean: ## stop the stack and delete its state (.stack) and the caches
	@if [ -x $(PY) ]; then $(STACK) purge; else rm -rf .stack; fi
	rm -rf .pytest_cache .mypy_cache .ruff_cache .hypothesis build dist
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean ## clean, and delete .venv and the jars too
	rm -rf $(VENV) stack/lib *.egg-info
