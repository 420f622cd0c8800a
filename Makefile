# Two commands: `make run` and `make test`. Both create the virtualenv, install
# stepstream, start the local services (reusing running ones) and then do their job.
PYTHON_BIN ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STEPSTREAM := $(VENV)/bin/stepstream
INSTALLED := $(VENV)/.installed
SERVICES_ENV := $(VENV)/services.env
PYTEST_ARGS ?=

.PHONY: run test chaos lint services services-down venv browser bench-peers

venv: $(INSTALLED)

$(INSTALLED): pyproject.toml
	@$(PYTHON_BIN) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "stepstream needs Python >= 3.11 ($(PYTHON_BIN) is older)"; exit 1; }
	test -x $(PY) || $(PYTHON_BIN) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

services: $(INSTALLED)
	$(STEPSTREAM) services up > $(SERVICES_ENV)
	@cat $(SERVICES_ENV)
	set -a && . ./$(SERVICES_ENV) && set +a && $(STEPSTREAM) db migrate

services-down: $(INSTALLED)
	$(STEPSTREAM) services down

run: services
	set -a && . ./$(SERVICES_ENV) && set +a && $(STEPSTREAM) run

# The console's tests need a browser (chromium and chromedriver, from apt).
browser:
	bash infra/local/services.sh browser

test: services browser
	set -a && . ./$(SERVICES_ENV) && set +a && $(VENV)/bin/pytest $(PYTEST_ARGS)

# The full chaos scenario (workers killed and restarted under load); `make test` runs a
# shorter one. Prints a one-line verdict with the kill count.
chaos: services
	set -a && . ./$(SERVICES_ENV) && set +a && STEPSTREAM_CHAOS=full $(VENV)/bin/pytest tests/chaos -s $(PYTEST_ARGS)

lint: $(INSTALLED)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# The engines bench/peers.py compares with (Celery, Temporal, DBOS), in a virtualenv of
# their own, and the Temporal CLI built from its Go module. Then:
#   .venv/bin/python bench/peers.py
bench-peers: services
	bash infra/local/peers.sh
