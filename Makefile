# Quick start: `make demo` (set up .venv, run the quickstart study, write its report)
# and `make test`. PYTHON must be 3.10+ with venv and pip.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
# runs at a time for make demo, each with an equal share of the CPU threads
JOBS ?= 2

.PHONY: setup demo test lint clean-venv

setup: $(INSTALLED)

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

demo: $(INSTALLED)
	$(BIN)/bnstudy run configs/quickstart.yaml --jobs $(JOBS)
	$(BIN)/bnstudy report results/quickstart

test: $(INSTALLED)
	$(BIN)/python -m pytest -q

lint: $(INSTALLED)
	$(BIN)/ruff check bnstudy tests scripts examples
	$(BIN)/ruff format --check bnstudy tests scripts examples

clean-venv:
	rm -rf $(VENV)
