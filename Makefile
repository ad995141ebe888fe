# ddb-bridge developer entry points. Everything runs from a project-local virtual environment.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv lint typecheck test test-unit demo demo-down clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check operator lambdas devtools tests
	$(BIN)/ruff format --check operator lambdas devtools tests

typecheck: $(STAMP)
	$(BIN)/mypy operator/ddbbridge lambdas/ddbbridge_lambdas devtools/ddbbridge_dev

test: lint typecheck
	$(BIN)/pytest

test-unit: $(STAMP)
	$(BIN)/pytest tests/unit

demo: $(STAMP)
	$(BIN)/python -m ddbbridge_dev.demo

demo-down: $(STAMP)
	DDBBRIDGE_DEV_DIR=$(CURDIR)/.ddbbridge/demo $(BIN)/ddbbridge dev down

clean:
	rm -rf $(VENV) .ddbbridge .pytest_cache .mypy_cache .ruff_cache

# Our pipeline vs the naive per-item design over a 150 ms simulated WAN (about ten minutes; never part
# of `make test`). Writes bench-results/ and refreshes docs/bench/ and the README table from that run.
.PHONY: bench
bench: $(STAMP)
	$(BIN)/ddbbridge bench --publish $(BENCH_ARGS)
