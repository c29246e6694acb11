# The dev loop. `make up` runs the bot on embedded defaults; `make test` runs the suite.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

.PHONY: install up test lint docs fmt check bench
install: $(STAMP)

up: $(STAMP)
	$(VENV)/bin/bot up

test: $(STAMP)
	$(VENV)/bin/pytest -q -n 3

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports --no-cache

docs: $(STAMP)
	$(VENV)/bin/mkdocs build --strict --quiet -d $(or $(TMPDIR),/tmp)/cs-bot-site

fmt: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

check: lint docs test

bench: $(STAMP)
	$(PY) -m benchmarks.webhook_throughput
	$(PY) -m benchmarks.worker_inflight
