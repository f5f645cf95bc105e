# `make run` and `make test` work on a machine with only Python 3.11 (any 3.11.x, Debian 12's
# /usr/bin/python3 included): they install pipenv into .tools/ when it is not on PATH, then the
# locked environment into .venv/, both with $(PYTHON) (`PYTHON=/usr/bin/python3 make run`).

PYTHON ?= $(shell command -v python3.11 2>/dev/null || echo python3)
PORT ?= 5555
PIPENV := $(shell command -v pipenv 2>/dev/null || echo .tools/bin/pipenv)
export PIPENV_VENV_IN_PROJECT := 1
export PIPENV_VERBOSITY := -1
export PIPENV_IGNORE_VIRTUALENVS := 1
PG_TEST_URL ?= postgresql://postgres@127.0.0.1:5432/test
REDIS_TEST_URL ?= redis://127.0.0.1:6379/0
FLASK := $(PIPENV) run flask --app server/app.py
# An environment the app cannot import is not installed: the marker is touched only after this.
IMPORT_APP := APP_ENV=testing $(PIPENV) run python -c 'import sys; sys.path.insert(0, "server"); import app'

.PHONY: run client test test-pg lint install install-dev clean bench bench-pages \
	bench-enumeration bench-bounds FORCE

run: .venv/.installed
	$(FLASK) db upgrade
	@echo "API: http://localhost:$(PORT)  (React dev server: make client)"
	$(FLASK) run --host 127.0.0.1 --port $(PORT)

# The React dev server (client/, Vite) on http://localhost:5173; it forwards /api/... to the API.
client: client/node_modules/.package-lock.json
	cd client && API_URL=http://127.0.0.1:$(PORT) npm run dev

client/node_modules/.package-lock.json: client/package-lock.json
	cd client && npm ci

test: .venv/.installed-dev
	$(PIPENV) run pytest $(PYTEST_ARGS)

test-pg: .venv/.installed-dev
	TEST_DATABASE_URL=$(PG_TEST_URL) TEST_REDIS_URL=$(REDIS_TEST_URL) $(PIPENV) run pytest $(PYTEST_ARGS)

lint: .venv/.installed-dev
	$(PIPENV) verify
	$(PIPENV) run ruff check server tests
	$(PIPENV) run ruff format --check server tests
	$(PIPENV) run mypy  # strict, on server/ ([tool.mypy] in pyproject.toml)
	$(PIPENV) run mypy --strict server/gunicorn.conf.py  # not a module name: checked as a file

install: .venv/.installed
install-dev: .venv/.installed-dev

# The interpreter .venv is built with (its path and version); rewritten only when PYTHON names
# another one, which then rebuilds .venv with it.
.tools/.python: FORCE
	@v=$$($(PYTHON) -c 'import sys; print(sys.executable, sys.version.split()[0])') \
	  || { echo "make: PYTHON=$(PYTHON) does not run" >&2; exit 1; }; \
	case "$${v#* }" in 3.11.*) ;; *) echo "make: PYTHON=$(PYTHON) is Python $${v#* }; the Pipfile wants 3.11" >&2; exit 1;; esac; \
	mkdir -p .tools; [ "$$(cat $@ 2>/dev/null)" = "$$v" ] || echo "$$v" > $@

# pipenv's own virtualenv (for .venv) needs nothing more than Python; this venv needs ensurepip,
# which Debian ships apart from python3.
.tools/bin/pipenv: | .tools/.python
	@$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null \
	  || { echo "make: $(PYTHON) cannot create a venv (Debian: apt-get install python3-venv)" >&2; exit 1; }
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet pipenv

.venv/.installed: Pipfile.lock .tools/.python | $(PIPENV)
	$(PIPENV) sync --python "$$(cut -d' ' -f1 .tools/.python)"
	$(IMPORT_APP)
	touch $@

.venv/.installed-dev: Pipfile.lock .tools/.python | $(PIPENV)
	$(PIPENV) sync --dev --python "$$(cut -d' ' -f1 .tools/.python)"
	$(IMPORT_APP)
	touch $@ .venv/.installed

clean:
	rm -rf .venv .tools .pytest_cache .ruff_cache .mypy_cache

# The load benchmark needs wrk (Debian: apt-get install wrk).
bench: .venv/.installed-dev
	$(PIPENV) run python tests/bench/bench.py $(BENCH_ARGS)

bench-pages: .venv/.installed-dev
	$(PIPENV) run python tests/bench/pagination.py

# Does an answer's timing tell who has an account? (429 pairs; dormant accounts' bcrypt cost)
bench-enumeration: .venv/.installed-dev
	$(PIPENV) run python tests/bench/enumeration.py $(BENCH_ARGS)

# The worst-case body of each route against a normal 422.
bench-bounds: .venv/.installed-dev
	$(PIPENV) run python tests/bench/bounds.py
