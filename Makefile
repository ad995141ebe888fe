# ddb-bridge developer entry points. Everything runs from a project-local virtual environment.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# checkov pins an old boto3: it lives in its own virtual environment, never in the project's.
CHECKOV_VENV := .venv-checkov
CHECKOV_VERSION := 3.3.30
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed-$(CHECKOV_VERSION)
# Every kustomization under manifests/ is rendered and linted (a new overlay is covered by itself).
RENDERED := build/manifests
KUSTOMIZATIONS := $(patsubst %/kustomization.yaml,%,$(shell find manifests -name kustomization.yaml | sort))

.PHONY: venv lint typecheck lint-deploy render-manifests test test-unit demo demo-down clean

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

$(CHECKOV_STAMP):
	rm -rf $(CHECKOV_VENV)
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet --upgrade pip
	$(CHECKOV_VENV)/bin/pip install --quiet 'checkov==$(CHECKOV_VERSION)'
	touch $@

render-manifests:
	rm -rf $(RENDERED) && mkdir -p $(RENDERED)
	for dir in $(KUSTOMIZATIONS); do \
		kubectl kustomize "$$dir" > "$(RENDERED)/$$(echo "$${dir#manifests/}" | tr / -).yaml" || exit 1; \
	done

# Dockerfile and deployment manifests: hadolint, then checkov over the Dockerfile and what kustomize
# renders (suppressions are annotations/comments in place, each with its reason).
lint-deploy: $(STAMP) $(CHECKOV_STAMP) render-manifests
	$(BIN)/hadolint Dockerfile
	CKV_SKIP_PACKAGE_UPDATE_CHECK=true $(CHECKOV_VENV)/bin/checkov --quiet --compact --skip-download \
		--framework dockerfile kubernetes -f Dockerfile $(addprefix -f ,$(wildcard $(RENDERED)/*.yaml))

test: lint typecheck lint-deploy
	$(BIN)/pytest

test-unit: $(STAMP)
	$(BIN)/pytest tests/unit

# The operator on a local control plane replicating two emulated regions at 150 ms RTT, start to finish
# (devtools/ddbbridge_dev/demo.py). KEEP=1 leaves it running; `make demo-down` stops all of it.
demo: $(STAMP)
	$(BIN)/python -m ddbbridge_dev.demo $(if $(KEEP),--keep) $(DEMO_ARGS)

demo-down: $(STAMP)
	DDBBRIDGE_DEV_DIR=$(CURDIR)/.ddbbridge/demo $(BIN)/ddbbridge dev down

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) $(RENDERED) .ddbbridge .pytest_cache .mypy_cache .ruff_cache

# Our pipeline vs the naive per-item design over a 150 ms simulated WAN (about ten minutes; never part
# of `make test`). Writes bench-results/ and refreshes docs/bench/ and the README table from that run.
.PHONY: bench
bench: $(STAMP)
	$(BIN)/ddbbridge bench --publish $(BENCH_ARGS)

# The real operator reconciling PAIRS pairs to Ready on the local control plane and emulated regions:
# time to Ready, peak RSS, AWS calls per health interval per pair (minutes; never part of `make test`).
# Writes bench-results/operator-scale-N-*.{json,md} and docs/bench/operator-scale-N.{json,md}.
PAIRS ?= 100
.PHONY: bench-operator
bench-operator: $(STAMP)
	$(BIN)/python -m ddbbridge_dev.bench.operator_scale --pairs $(PAIRS) --publish $(BENCH_OPERATOR_ARGS)
