# Two commands on a fresh machine with Python 3.11+:
#   make run    install into .venv and start the visualiser on http://127.0.0.1:8000
#   make test   install into .venv (with test tools, and Debian's chromium where we may) and run every test
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test install install-test lint bench clean

$(VENV)/bin/python:
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "cnn-visualiser needs Python 3.11 or newer"'
	$(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); echo "could not create a virtual environment: on Debian or Ubuntu, apt-get install python3-venv"; exit 1; }
	$(PY) -m pip install --quiet --upgrade pip

$(VENV)/.installed: $(VENV)/bin/python pyproject.toml
	$(PY) -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/bin/python pyproject.toml
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test
	bash scripts/install-test-packages.sh

run: install
	$(VENV)/bin/cnn-visualiser serve --host $(HOST) --port $(PORT)

test: install-test
	$(PY) -m ruff check .
	$(PY) -m pytest -q -n 2 --dist loadgroup

lint: install-test
	$(PY) -m ruff check .

bench: install-test
	$(PY) scripts/bench_engine.py --threads 1
	$(PY) scripts/bench_engine.py --threads 2

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
