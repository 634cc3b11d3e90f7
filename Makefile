# `make run` starts the site with its workers; `make test` runs every test.
# Both create or refresh the virtual environment in .venv/ first.

PYTHON ?= python3
VENV := .venv
VENV_PYTHON := $(VENV)/bin/python
# Touched after a successful install; older than requirements.txt means stale.
INSTALLED := $(VENV)/.requirements-installed
PORT ?= 8000

.PHONY: run test lint benchmark compose-config clean-var

$(VENV_PYTHON):
	$(PYTHON) -m venv $(VENV)

$(INSTALLED): requirements.txt | $(VENV_PYTHON)
	$(VENV_PYTHON) -m pip install torch==2.14.1 torchvision==0.29.1
	$(VENV_PYTHON) -m pip install -r requirements.txt
	touch $(INSTALLED)

run: $(INSTALLED)
	PORT=$(PORT) $(VENV_PYTHON) scripts/run_local.py

test: $(INSTALLED)
	$(VENV_PYTHON) -m pytest

lint: $(INSTALLED)
	$(VENV_PYTHON) -m ruff check heritage_site classifier training_jobs ml scripts benchmarks tests conftest.py manage.py
	$(VENV_PYTHON) -m ruff format --check heritage_site classifier training_jobs ml scripts benchmarks tests conftest.py manage.py

# Extra options for the upload benchmark, for example BENCHMARK_ARGS="--uploads 50".
BENCHMARK_ARGS ?=

benchmark: $(INSTALLED)
	$(VENV_PYTHON) benchmarks/upload_latency.py --url http://127.0.0.1:$(PORT) $(BENCHMARK_ARGS)

compose-config:
	docker-compose -f docker-compose.yml config --quiet

clean-var:
	rm -rf var/
