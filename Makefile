# Two commands on a fresh machine: `make run` (dev gateway + embedded broker + demo plan)
# and `make test` (lint, type-check, full test suite against the real broker).
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin

JS = tests/js

.PHONY: install run test lint test-deps bench

$(BIN)/gateway: pyproject.toml
	$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "Python >= 3.11 is required")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(BIN)/gateway

install: $(BIN)/gateway

run: install
	$(BIN)/gateway dev

lint: install
	$(BIN)/ruff check gateway tests bench
	$(BIN)/ruff format --check gateway tests bench
	$(BIN)/mypy

# What the SDK tests need besides Python: the JavaScript SDKs pinned in tests/js (npm), and
# Debian's Chromium with its chromedriver for the browser SDKs, and promtool.
$(JS)/node_modules/.package-lock.json: $(JS)/package.json $(JS)/package-lock.json
	cd $(JS) && npm ci --no-audit --no-fund --ignore-scripts

/usr/bin/chromedriver:
	apt-get install -y -q chromium chromium-driver \
		|| (apt-get update -q && apt-get install -y -q chromium chromium-driver)

# promtool checks and unit-tests the shipped alerting rules (deploy/prometheus).
/usr/bin/promtool:
	apt-get install -y -q --no-install-recommends prometheus \
		|| (apt-get update -q && apt-get install -y -q --no-install-recommends prometheus)

test-deps: $(JS)/node_modules/.package-lock.json /usr/bin/chromedriver /usr/bin/promtool

test: lint test-deps
	$(BIN)/pytest

# The benchmarks (README: Benchmarks), with wrk as the load generator: the Python fallback
# takes CPU from the two cores the gateway and the broker share.
/usr/bin/wrk:
	apt-get install -y -q wrk || (apt-get update -q && apt-get install -y -q wrk)

bench: install /usr/bin/wrk
	$(BIN)/python -m bench $(SCENARIOS)
