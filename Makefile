# retail-pipeline: `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

# Every dependency comes from the hashed lock files in requirements/ (docs: README, "Supply
# chain"): first the installer and build backend (build.lock), then everything `.[dev]` needs
# (dev.lock; pip refuses a file whose SHA-256 is not listed, or a dependency the lock misses), then
# the project itself, built by the locked setuptools without fetching anything.
LOCKS := requirements/build.lock requirements/dev.lock

$(STAMP): pyproject.toml $(LOCKS)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --require-hashes -r requirements/build.lock
	$(BIN)/python -m pip install -q --require-hashes -r requirements/dev.lock
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation --no-index -e .
	$(BIN)/python -m pip check
	touch $(STAMP)

install: $(STAMP) ## Create .venv and install the package with its dev extras, from the hashed lock

# `make lock` re-resolves requirements/*.lock from pyproject.toml and requirements/*.in with uv
# (run from a throwaway venv, never the project's), keeping every pin that still fits;
# `make lock UPGRADE=1` moves each to the newest version the bounds allow. The image locks are
# constrained to dev.lock, so all locks agree; their extras are the Dockerfile's EXTRAS.
LOCK_VENV ?= .venv-lock
, := ,
LOCK_TARGET := --python-version 3.11 --python-platform x86_64-manylinux_2_36
IMAGE_EXTRAS := $(foreach e,$(subst $(,), ,$(shell sed -n 's/^ARG EXTRAS=//p' Dockerfile)),--extra $(e))
UV_COMPILE = $(LOCK_VENV)/bin/uv pip compile --quiet --generate-hashes $(LOCK_TARGET) $(if $(UPGRADE),--upgrade)

lock: ## Re-resolve the hashed lock files in requirements/ (UPGRADE=1: newest allowed versions)
	$(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -m pip install -q --require-hashes -r requirements/tools.lock
	$(UV_COMPILE) requirements/tools.in -o requirements/tools.lock
	$(UV_COMPILE) requirements/build.in -o requirements/build.lock
	$(UV_COMPILE) pyproject.toml --extra dev -c requirements/build.lock -o requirements/dev.lock
	$(UV_COMPILE) pyproject.toml $(IMAGE_EXTRAS) -c requirements/dev.lock -o requirements/image.lock
	$(UV_COMPILE) pyproject.toml $(IMAGE_EXTRAS) --extra airflow -c requirements/dev.lock \
		-o requirements/image-airflow.lock

demo: $(STAMP) ## Run the end-to-end demo in data/demo/, with its own warehouse (no services needed)
	$(BIN)/retail-pipeline demo

lint: $(STAMP) ## ruff (lint + format check), mypy and sqlfluff (dbt models, duckdb dialect)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/mypy --strict docker/stack.py docker/bases.py
	cd dbt && ../$(BIN)/sqlfluff lint models tests

# The tests that need no service, browser, dbt build or Terraform provider, and are not slow:
# tests/markers.py marks the others from what they use. `make test` (CI) still runs them all.
FAST_TESTS := not (kafka or postgres or browser or airflow or emulator or dbt or terraform or docker or slow)

# The fast tier runs on every core (pytest-xdist, FAST_WORKERS=auto). `make test` runs it the
# same way first, then the service tier on SERVICE_WORKERS workers (default 2), a test file at
# a time per worker (--dist loadfile): each worker is a pytest session with its own Kafka
# broker, PostgreSQL, emulator and dbt target folder, shared by every file it runs; most of
# that tier waits on services, builds and containers, not on a core. SERVICE_WORKERS=0 runs
# it in one session. Its `timing` tests (SIGKILL and Ctrl-C at chosen moments, the Kafka chaos)
# run last, alone: a busy second worker moved their moments (a kill before the first commit, a
# broker restart past a consumer's start-up). Each pytest run fails make on its own (exit 5 too).
FAST_WORKERS ?= auto
SERVICE_WORKERS ?= 2

test: lint ## Lint, type-check and run every test (starts its own services)
	$(BIN)/pytest -m "$(FAST_TESTS)" -n $(FAST_WORKERS) --durations=10
	$(BIN)/pytest -m "not ($(FAST_TESTS)) and not timing" -n $(SERVICE_WORKERS) --dist loadfile --durations=30
	$(BIN)/pytest -m "not ($(FAST_TESTS)) and timing" --durations=10
test-fast: $(STAMP) ## ruff, mypy and the tests that need no service or dbt build (~2 min on 2 cores)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/mypy --strict docker/stack.py docker/bases.py
	$(BIN)/pytest -m "$(FAST_TESTS)" -n $(FAST_WORKERS) --durations=10

bench: $(STAMP) ## File-ingest benchmark (prints figures; nothing is asserted)
	$(BIN)/python bench/ingest_files.py

bench-memory: $(STAMP) ## Peak RSS of the loaders on huge and hostile inputs (prints figures)
	$(BIN)/python bench/memory.py

bench-dbt: $(STAMP) ## dbt full and incremental build on simulated events (prints figures)
	$(BIN)/python bench/dbt_build.py --events 1000000

transform: $(STAMP) ## dbt build of Silver and Gold on data/warehouse.duckdb
	$(BIN)/retail-pipeline transform

answers: $(STAMP) ## Print the six answers from Gold
	$(BIN)/retail-pipeline answers

dashboard: $(STAMP) ## Serve the dashboard of the six answers on http://127.0.0.1:8050/ (Gold, read-only)
	$(BIN)/retail-pipeline dashboard

api-server: $(STAMP) ## Serve the reference customers/products API on http://127.0.0.1:8765/
	$(BIN)/retail-pipeline api-server

powerbi: $(STAMP) ## Regenerate the Power BI project (powerbi/) from the Gold models and check it
	$(BIN)/python -m retail_pipeline.dashboard.powerbi powerbi
	$(BIN)/python -m retail_pipeline.dashboard.powerbi_check powerbi

bench-kafka: $(STAMP) ## Kafka -> Bronze benchmark with its own broker (prints figures)
	$(BIN)/python bench/kafka_ingest.py

kafka-up: $(STAMP) ## Start the local Kafka broker (127.0.0.1:9092) and create the topics
	$(BIN)/retail-pipeline kafka up

kafka-down: $(STAMP) ## Stop the local Kafka broker
	$(BIN)/retail-pipeline kafka down

postgres-up: $(STAMP) ## Start the local PostgreSQL source (127.0.0.1:5433), seeded with the demo shop
	$(BIN)/retail-pipeline postgres up

postgres-down: $(STAMP) ## Stop the local PostgreSQL source
	$(BIN)/retail-pipeline postgres down

airflow: $(STAMP) ## Start a local Airflow 3 (127.0.0.1:8080) with the three DAGs; prints the login
	$(BIN)/retail-pipeline airflow up

airflow-down: $(STAMP) ## Stop the local Airflow
	$(BIN)/retail-pipeline airflow down

docker-up: $(STAMP) ## Build and start the whole stack: Docker, or podman where no daemon is (needs .env; docs/docker.md)
	$(BIN)/python docker/stack.py up

docker-down: $(STAMP) ## Stop the stack, Docker or podman (its volumes stay)
	$(BIN)/python docker/stack.py down

docker-e2e: $(STAMP) ## The whole story inside containers, checked against the truth, then all torn down
	$(BIN)/python docker/stack.py e2e

bench-batch: $(STAMP) ## Customers from the reference API and a local PostgreSQL into Bronze (prints figures)
	$(BIN)/python bench/batch_sources.py

bench-airflow: $(STAMP) ## dbt DAG under the scheduler (build task, Cosmos per model) against transform (prints figures)
	$(BIN)/python bench/airflow_dbt.py

bench-freshness: $(STAMP) ## retail-pipeline run: event produced -> counted in Gold, p50/p99, at 2,000 events/s for 10 minutes
	$(BIN)/python bench/freshness.py --rate 2000 --minutes 10

schemas: $(STAMP) ## Regenerate the JSON Schema files of the event contract
	$(BIN)/retail-pipeline schemas --out schemas

tf-columns: $(STAMP) ## Regenerate the Bronze table columns Terraform creates, from the contract
	$(BIN)/python -m retail_pipeline.warehouse.terraform_columns

tf-validate: $(STAMP) ## Terraform fmt -check, init, validate and mock-plan tests of dev and prod, offline
	$(BIN)/python scripts/tf_validate.py

clean: ## Remove generated data (keeps .venv)
	rm -rf data .pytest_cache .mypy_cache .ruff_cache

.PHONY: help install lock demo lint test test-fast bench bench-memory bench-dbt transform answers dashboard api-server powerbi bench-kafka bench-batch kafka-up kafka-down postgres-up postgres-down airflow airflow-down docker-up docker-down docker-e2e bench-airflow bench-freshness schemas tf-columns tf-validate clean
