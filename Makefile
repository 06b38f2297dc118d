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

.PHONY: help install browser lint typecheck scan test demo bench soak clean

help:
	@echo "make demo   run the demo (installs only what it needs, then starts it)"
	@echo "make test   install, then ruff, mypy and pytest"
	@echo "make bench  run the benchmarks in bench/ and refresh bench/README.md"
	@echo "make soak   run the long reliability run (10 minutes, 30 % provider chaos)"

$(BIN)/python:
	@echo "creating $(VENV) with $(PYTHON) …"
	$(PYTHON) -m venv $(VENV)

# pip's own lines are the progress (one per package); "already satisfied" lines and warnings about index
# locations that do not exist (a machine-wide pip configuration) are left out.
PIP_INSTALL = set -o pipefail; $(BIN)/python -m pip install --progress-bar off --disable-pip-version-check
PIP_PROGRESS = grep -v --line-buffered -e '^Requirement already satisfied' -e 'is ignored: it is neither a file nor a directory' || true

# The demo's needs only: the runtime, the CLI and the local stack (moto). `make test` adds the checks.
$(VENV)/.installed-runtime: pyproject.toml layers/refund_core/requirements.txt | $(BIN)/python
	@echo "installing what the demo needs (runtime, CLI, local stack) into $(VENV) …"
	$(PIP_INSTALL) -e '.[demo]' 2>&1 | { $(PIP_PROGRESS); }
	touch $@

$(VENV)/.installed: pyproject.toml layers/refund_core/requirements.txt package-lock.json $(VENV)/.installed-runtime
	@echo "installing the development tools (checks, SAM CLI, stubs, asl-validator) into $(VENV) …"
	$(PIP_INSTALL) --upgrade pip 2>&1 | { $(PIP_PROGRESS); }
	$(PIP_INSTALL) -e '.[dev]' 2>&1 | { $(PIP_PROGRESS); }
	npm ci --no-audit --no-fund
	touch $@

install: $(VENV)/.installed

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy $(wildcard layers/refund_core devtools functions tests bench)

# Security scanners (checkov, bandit, pip-audit) live in their own venv: their pins clash with the project's.
SCAN_VENV := .venv-scan
SCAN_BIN := $(SCAN_VENV)/bin

$(SCAN_VENV)/.installed: Makefile
	$(PYTHON) -m venv $(SCAN_VENV)
	$(SCAN_BIN)/python -m pip install --quiet --upgrade pip 2>/dev/null
	$(SCAN_BIN)/python -m pip install --quiet 'checkov>=3.2' 'bandit[toml]>=1.8' 'pip-audit>=2.7' 2>/dev/null
	touch $@

# checkov on the template as CloudFormation deploys it (SAM-expanded offline; suppressions justified in .checkov.yaml),
# bandit on all Python we ship or run (skips justified in pyproject.toml [tool.bandit]), pip-audit on what the Lambda
# layer installs. pip-audit asks PyPI's vulnerability data over the network: a requirement it could not audit fails
# the scan only with PIP_AUDIT_UNREACHABLE=fail: this workplace reaches PyPI's package index but not its
# vulnerability data, so the default here is warn (loudly). A known vulnerability always fails.
scan: install $(SCAN_VENV)/.installed
	$(BIN)/python -m tests.reliability.expand_template build/scan/template.json
	$(SCAN_BIN)/checkov --config-file .checkov.yaml -f build/scan/template.json
	$(SCAN_BIN)/bandit -c pyproject.toml -r layers functions devtools -q 2> >(grep -v 'no failed test' >&2)
	PIP_AUDIT_UNREACHABLE=$${PIP_AUDIT_UNREACHABLE:-warn} \
		$(BIN)/python -m tests.reliability.pip_audit_check $(SCAN_BIN)/pip-audit layers/refund_core/requirements.txt

# The console's browser tests (tests/e2e/test_console.py) drive Debian's chromium through Debian's chromedriver:
# installed here when missing (root, as on CI), never a browser downloaded by a test tool.
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
		echo "installing chromium and chromium-driver (Debian) for the console's browser tests"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
	else \
		echo "make browser: chromium and chromium-driver are missing and this is not root:" \
			"sudo apt-get install chromium chromium-driver (the console's browser tests skip without them)" >&2; \
	fi

# The official Antom SDK's venv too: tests/integration/test_official_sdk.py runs its client against the sandbox.
test: lint typecheck scan browser bench/.venv-sdk/.installed
	$(BIN)/pytest

demo: $(VENV)/.installed-runtime
	$(BIN)/refund-poller demo

# The official Antom SDK, for comparison (bench) and compatibility (test_official_sdk.py) only, in its own venv:
# its declared dependency enum34 breaks Python 3, so it is installed without dependencies, plus what it imports
# (and the cryptography version it pins).
bench/.venv-sdk/.installed:
	$(PYTHON) -m venv bench/.venv-sdk
	bench/.venv-sdk/bin/python -m pip install --quiet --no-deps global-open-sdk-python==1.7.1
	bench/.venv-sdk/bin/python -m pip install --quiet cryptography==44.0.3 rsa pycryptodome pytz
	touch $@

bench: install bench/.venv-sdk/.installed
	$(BIN)/python -m bench.run

# 10 minutes of load under 30 % provider chaos plus Inquire crashes and DynamoDB throttling; loses nothing.
# SOAK_SECONDS=60 make soak for a short run. Figures: build/soak/report.json and docs/RELIABILITY.md.
soak: install
	RELIABILITY_SOAK_SECONDS=$${SOAK_SECONDS:-600} $(BIN)/pytest -p no:cacheprovider -s -q tests/reliability/soak.py

clean:
	rm -rf $(VENV) .aws-sam .mypy_cache .ruff_cache .pytest_cache
