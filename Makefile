# postroom: `make run` starts the platform, `make test` runs the tests. Both set themselves up.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: run test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@ $(VENV)/.installed

# The web UI (web/): installed from the lock file, built into web/dist, served by the gateway.
WEB_SOURCES := $(shell find web/src web/public -type f 2>/dev/null) web/index.html web/package.json \
	web/tsconfig.json web/vite.config.ts

web/node_modules/.installed: web/package-lock.json
	@command -v npm >/dev/null || { echo "make: the web UI needs Node.js 18+ and npm (Debian: apt-get install nodejs npm)" >&2; exit 1; }
	cd web && npm ci --no-audit --no-fund
	touch $@

web/dist: web/node_modules/.installed $(WEB_SOURCES)
	cd web && npm run build
	touch $@

run: $(VENV)/.installed web/dist
	$(BIN)/postroom migrate
	$(BIN)/postroom up

# Two workers (tests mostly wait on sockets and fsyncs); tests marked serial run alone after.
test: $(VENV)/.installed-test web/dist
	cd web && npm test --silent
	$(BIN)/pytest -n 2 --dist loadfile -m "not serial" $(PYTEST_ARGS)
	$(BIN)/pytest -m serial $(PYTEST_ARGS)

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: $(VENV)/.installed-test web/dist
	$(BIN)/python -m bench.run_all

clean:
	rm -rf $(VENV) data .pytest_cache .mypy_cache .ruff_cache web/dist web/node_modules
