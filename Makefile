# `make run` and `make test` work on a machine with only Python 3.11: they install pipenv into
# .tools/ when it is not on PATH, then the locked environment into .venv/.

PYTHON ?= python3
PORT ?= 5555
PIPENV := $(shell command -v pipenv 2>/dev/null || echo .tools/bin/pipenv)
export PIPENV_VENV_IN_PROJECT := 1
export PIPENV_VERBOSITY := -1
export PIPENV_IGNORE_VIRTUALENVS := 1
PG_TEST_URL ?= postgresql://postgres@127.0.0.1:5432/test
REDIS_TEST_URL ?= redis://127.0.0.1:6379/0
FLASK := $(PIPENV) run flask --app server/app.py

.PHONY: run test test-pg lint install install-dev clean bench bench-pages

run: .venv/.installed
	$(FLASK) db upgrade
	$(FLASK) run --host 127.0.0.1 --port $(PORT)

test: .venv/.installed-dev
	$(PIPENV) run pytest $(PYTEST_ARGS)

test-pg: .venv/.installed-dev
	TEST_DATABASE_URL=$(PG_TEST_URL) TEST_REDIS_URL=$(REDIS_TEST_URL) $(PIPENV) run pytest $(PYTEST_ARGS)

lint: .venv/.installed-dev
	$(PIPENV) verify
	$(PIPENV) run ruff check server tests
	$(PIPENV) run ruff format --check server tests

install: .venv/.installed
install-dev: .venv/.installed-dev

.tools/bin/pipenv:
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet pipenv

.venv/.installed: Pipfile.lock | $(PIPENV)
	$(PIPENV) sync
	touch $@

.venv/.installed-dev: Pipfile.lock | $(PIPENV)
	$(PIPENV) sync --dev
	touch $@ .venv/.installed

clean:
	rm -rf .venv .tools .pytest_cache .ruff_cache

# The load benchmark needs wrk (Debian: apt-get install wrk).
bench: .venv/.installed-dev
	$(PIPENV) run python tests/bench/bench.py $(BENCH_ARGS)

bench-pages: .venv/.installed-dev
	$(PIPENV) run python tests/bench/pagination.py
