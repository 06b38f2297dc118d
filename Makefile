# refund-poller: the two commands a newcomer needs are `make demo` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV := .venv
BIN := $(VENV)/bin
# The Lambda runtime is python3.13; use it for the venv where it exists (pyenv keeps it off PATH), else python3.
PYTHON313 := $(shell for p in python3.13 $$(ls -d $${PYENV_ROOT:-$$HOME/.pyenv}/versions/3.13*/bin/python3.13 2>/dev/null | sort -V | tail -n 1); do \
	"$$p" -c 'import sys' >/dev/null 2>&1 && { echo "$$p"; break; }; done)
PYTHON ?= $(if $(PYTHON313),$(PYTHON313),python3)
# `sam build` looks for python3.13 on PATH.
export PATH := $(if $(PYTHON313),$(dir $(PYTHON313)):,)$(CURDIR)/$(BIN):$(PATH)

.PHONY: help install lint typecheck test demo bench clean

help:
	@echo "make demo   run the demo (starts what it needs)"
	@echo "make test   install, then ruff, mypy and pytest"
	@echo "make bench  run the benchmarks in bench/"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml layers/refund_core/requirements.txt package-lock.json | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	npm ci --silent --no-audit --no-fund
	touch $@

install: $(VENV)/.installed

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy $(wildcard layers/refund_core devtools functions tests bench)

test: lint typecheck
	$(BIN)/pytest

demo: install
	$(BIN)/python -m refund_poller.cli.demo

bench: install
	$(BIN)/python bench/inquiry_overhead.py

clean:
	rm -rf $(VENV) .aws-sam .mypy_cache .ruff_cache .pytest_cache
