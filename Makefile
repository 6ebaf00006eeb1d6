# reprolab: `make repro` runs the pipeline, `make test` runs the tests.
# Both create .venv and install the pinned lock on first use; later runs skip set-up.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PATH := $(abspath $(BIN)):$(PATH)
export PYTHONUNBUFFERED := 1
# the suite runs on pytest-xdist workers, one per core; a file's tests stay on one worker so
# its module fixtures (a built pipeline, a served model) are built once
PYTEST_WORKERS ?= auto
XDIST := -n $(PYTEST_WORKERS) --dist loadfile

.PHONY: repro test test-fast reliability lint ui plots dashboard mlflow-server serve tune-worker bench dag clean-outputs setup

setup: $(STAMP)

$(STAMP): pyproject.toml requirements/constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install -q --disable-pip-version-check \
		-c requirements/constraints.txt -e '.[dev]'
	@touch $@

# the stages fork from one interpreter that imported torch, Lightning, MLflow and sklearn
# once (stages/runtime/warm.py); `make repro WARM=0` runs each stage as a fresh process
WARM ?= 1
repro: $(STAMP)
	REPROLAB_WARM=$(WARM) $(BIN)/python -m stages.runtime.warm -- $(BIN)/dvc repro

test: $(STAMP)
	$(BIN)/python -m pytest $(XDIST) --durations=25 $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(BIN)/python -m pytest $(XDIST) -m "not integration" $(PYTEST_ARGS)

reliability: $(STAMP)  ## run the fault/load/bad-input/security tests, regenerate docs/reliability.md
	$(BIN)/python scripts/reliability_doc.py --run

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	BIN=$(BIN) scripts/audit.sh

# Browse the local store: one uvicorn worker and no job runner (huey consumers serve GenAI
# scorer jobs this project never submits). MLflow 3.17's defaults started 9+ processes and
# 1.6 GB RSS on this 2-core machine; this is 3 processes, 0.55 GB (benchmarks/RESULTS.md).
ui: $(STAMP)
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false $(BIN)/mlflow ui --workers 1 \
		--backend-store-uri sqlite:///mlflow.db --host 127.0.0.1 --port $${PORT:-5000}

# Every DVC plot on one page that renders offline (dvc-render's own page loads Vega from a
# CDN): dvc_plots/index.html; any `dvc plots show` option can follow in ARGS.
plots: $(STAMP)
	$(BIN)/python scripts/plots_html.py $(ARGS)

# Team tracking server: PostgreSQL (or any SQLAlchemy URL) backend, artifacts proxied by the
# server into MLFLOW_ARTIFACTS_DESTINATION. Both reach `mlflow server` through the
# environment (it reads them itself), so a database password shows in neither the echoed
# command nor `ps`. Loopback only unless HOST=0.0.0.0 is given explicitly; it has no
# authentication by default (README, "Team mode").
ifneq ($(origin HOST),command line)  # a HOST in the environment must not expose it
HOST := 127.0.0.1
endif
PORT ?= 5000
mlflow-server: $(STAMP)
	MLFLOW_BACKEND_STORE_URI="$${MLFLOW_BACKEND_STORE_URI:-sqlite:///mlflow.db}" \
	MLFLOW_ARTIFACTS_DESTINATION="$${MLFLOW_ARTIFACTS_DESTINATION:-./mlartifacts}" \
		$(BIN)/mlflow server --host $(HOST) --port $(PORT) $(MLFLOW_SERVER_ARGS)

# The registry's champion over HTTP (POST /invocations; README, "Serving"). MODEL overrides the
# URI (e.g. MODEL=models/serving); the registered name comes from metrics/package.json.
# Loopback only unless HOST is given on the command line, as for mlflow-server.
SERVE_PORT ?= 5001
serve: $(STAMP)
	@test -f metrics/package.json || { echo "no metrics/package.json: run 'make repro' first" >&2; exit 2; }
	MLFLOW_TRACKING_URI="$${MLFLOW_TRACKING_URI:-sqlite:///mlflow.db}" \
		$(BIN)/mlflow models serve --env-manager local --host $(HOST) --port $(SERVE_PORT) \
		-m "$${MODEL:-models:/$$($(BIN)/python -c 'import json; print(json.load(open("metrics/package.json"))["registered_model"])')@champion}"

# One more tuning worker for the running study (same params.yaml; PostgreSQL storage for
# workers on other machines: tune.storage or REPROLAB_OPTUNA_STORAGE). See docs/scaling.md.
tune-worker: $(STAMP)
	$(BIN)/python -m stages.tune --worker --params $${PARAMS:-params.yaml}

dashboard: $(STAMP)
	$(BIN)/optuna-dashboard --host 127.0.0.1 --port $${DASHBOARD_PORT:-8080} \
		"$${REPROLAB_OPTUNA_STORAGE:-tuning/study/journal.log}"

dag: $(STAMP)
	$(BIN)/dvc dag

bench: $(STAMP)
	$(BIN)/python benchmarks/prepare_scaling.py
