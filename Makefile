# `make run` starts the site with its workers; `make test` runs every test.
# Both create or refresh the virtual environment in .venv/ first.

PYTHON ?= python3
VENV := .venv
VENV_PYTHON := $(VENV)/bin/python
# Holds the SHA-256 of the requirements.txt last installed. When it is older
# than requirements.txt (a fresh clone, a git pull), the rule below installs
# again only if the hash differs, and otherwise just touches it.
INSTALLED := $(VENV)/.requirements-installed
REQUIREMENTS_SHA256 = $(shell sha256sum requirements.txt | cut -c1-64)
PORT ?= 8000

.PHONY: run test lint benchmark compose-config clean-var

$(VENV_PYTHON):
	$(PYTHON) -m venv $(VENV)

$(INSTALLED): requirements.txt | $(VENV_PYTHON)
	@if [ "$$(cat $(INSTALLED) 2>/dev/null)" = "$(REQUIREMENTS_SHA256)" ]; then \
		touch $(INSTALLED); \
	else \
		$(VENV_PYTHON) -m pip install torch==2.14.1 torchvision==0.29.1 && \
		$(VENV_PYTHON) -m pip install -r requirements.txt && \
		echo "$(REQUIREMENTS_SHA256)" > $(INSTALLED); \
	fi

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
