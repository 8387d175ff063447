# The two commands of the README:
#   make run    set up .venv and start the service (embedded default: API, worker, scheduler)
#   make test   set up .venv and run the whole test suite (lint, types, tests, shared scenarios)
# and a first look:
#   make demo   the service with the example timeline moved to today (var/demo, wiped each start)
# run and demo listen on HOST:PORT: make run PORT=8001 HOST=0.0.0.0
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run demo screenshots test bench clean

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python >= 3.11 is required, found " + sys.version.split()[0] + ": run make PYTHON=python3.11 ...")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

run: $(VENV)/.installed
	$(BIN)/python -m monitor serve --host $(HOST) --port $(PORT)

demo: $(VENV)/.installed
	$(BIN)/python -m monitor demo --host $(HOST) --port $(PORT)

# the README's screenshots (docs/*.png), made from the demo in Debian's chromium
screenshots: $(VENV)/.installed
	$(BIN)/python scripts/screenshots.py

test: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python -m pytest

bench: $(VENV)/.installed
	$(BIN)/python -m monitor bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
