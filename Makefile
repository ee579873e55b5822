# Everyday tasks (a thin layer over the scripts and tools; `make help` lists them).
# The virtualenv is the one the scripts use (scripts/venv.sh): run ./scripts/test once first.
VENV ?= $(shell TIMEDB_VENV_LOOKUP=1 . scripts/venv.sh >/dev/null 2>&1; echo $$venv)
PY := $(VENV)/bin/python
SOURCES := timedb tests contract-tests bench conftest.py

.PHONY: help serve test-fast test-all lint format bench bench-smoke docs-check lock

help:  ## this list
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

serve:  ## install (first time) and start the server on the embedded PostgreSQL
	./scripts/serve

test-fast:  ## the fast tier: unit, data-layer and in-process API tests (what a bare `pytest` runs)
	$(PY) -m pytest -q

test-all:  ## everything CI runs: lint, types, every test, the PgBouncer pass
	./scripts/test

lint:  ## ruff (lint and format check) and mypy
	$(VENV)/bin/ruff check $(SOURCES)
	$(VENV)/bin/ruff format --check $(SOURCES)
	$(VENV)/bin/mypy

format:  ## apply ruff's formatting and fixes
	$(VENV)/bin/ruff format $(SOURCES)
	$(VENV)/bin/ruff check --fix $(SOURCES)

bench:  ## the full benchmark against raw PostgreSQL (bench/README.md; tens of minutes)
	$(PY) bench/run.py --json bench/results.json

bench-smoke:  ## the benchmark at tiny sizes, checking every reply
	$(PY) bench/run.py --smoke

docs-check:  ## the spec's linters, the doc pages and the web UI in headless Chromium, the README's examples
	$(PY) -m pytest -q contract-tests/test_spec_lint.py tests/test_docs_pages.py tests/test_docs_csp.py \
		tests/test_ui_page.py tests/api/test_ui_files.py \
		tests/test_readme_examples.py tests/test_readme_bulk.py tests/test_deploy_files.py

# the lock files (requirements/*.txt) that scripts/serve, scripts/test, CI and the Dockerfile
# install from: every platform and Python >= 3.11, resolved from pyproject.toml by uv
UV_VERSION := 0.9.30

lock:  ## re-resolve requirements/*.txt from pyproject.toml (after changing a dependency)
	$(PY) -m pip install -q uv==$(UV_VERSION)
	$(PY) -m uv pip compile pyproject.toml -q --universal --python-version 3.11 \
		--custom-compile-command "make lock" -o requirements/server.txt
	for extra in embedded test; do \
		$(PY) -m uv pip compile pyproject.toml -q --universal --python-version 3.11 \
			--custom-compile-command "make lock" --extra $$extra -o requirements/$$extra.txt || exit 1; \
	done
