# One entry point. `make demo` sets up .venv from the runtime's lock file (requirements.lock)
# only; `make test` and the other targets add the development tools (requirements-dev.lock).
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
RUNTIME_STAMP := $(VENV)/.runtime-installed
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck imports unit browser infra docs docs-lock interop bench lock clean

$(RUNTIME_STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $@

$(STAMP): $(RUNTIME_STAMP) requirements-dev.lock
	$(BIN)/python -m pip install --quiet -r requirements.lock -r requirements-dev.lock
	touch $@

demo: $(RUNTIME_STAMP)
	$(BIN)/tq-aws demo

lint: $(STAMP)
	$(BIN)/ruff check tq_aws tests bench
	$(BIN)/ruff format --check tq_aws tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

# Layers import downward only, no circles (contracts in pyproject.toml).
imports: $(STAMP)
	$(BIN)/lint-imports

unit: $(STAMP) browser
	$(BIN)/python -m pytest --ignore=tests/interop

# The status page tests drive Debian's chromium through Playwright for Python (pinned in
# requirements-dev.lock); Playwright's own browser download is never used (it needs the internet).
CHROMIUM ?= /usr/bin/chromium
browser:
	test -x $(CHROMIUM) || (apt-get update && apt-get install -y chromium)

test: lint typecheck imports unit infra docs interop

# Deploy templates and CDK app: linters, policy checks, drift and the offline rehearsal. The
# tools live in their own environments (aws-sam-cli and checkov pin packages of their own);
# .venv-infra is the runtime's lock plus aws-cdk-lib, cdk-nag and cfn-lint-serverless.
INFRA_STAMP   := .venv-infra/.installed
SAM_STAMP     := .venv-sam/.installed
CHECKOV_STAMP := .venv-checkov/.installed
CDK_CLI_STAMP := infra/node_modules/.installed

$(INFRA_STAMP): pyproject.toml requirements.lock requirements-dev.lock infra/requirements.lock
	test -x .venv-infra/bin/python || $(PYTHON) -m venv .venv-infra
	.venv-infra/bin/python -m pip install --quiet --upgrade pip
	.venv-infra/bin/python -m pip install --quiet -r requirements.lock -r requirements-dev.lock \
	  -r infra/requirements.lock
	.venv-infra/bin/python -m pip install --quiet --no-deps -e .
	touch $@

$(SAM_STAMP): infra/requirements-sam.lock
	test -x .venv-sam/bin/python || $(PYTHON) -m venv .venv-sam
	.venv-sam/bin/python -m pip install --quiet --upgrade pip
	.venv-sam/bin/python -m pip install --quiet -r infra/requirements-sam.lock
	touch $@

$(CHECKOV_STAMP): infra/requirements-checkov.lock
	test -x .venv-checkov/bin/python || $(PYTHON) -m venv .venv-checkov
	.venv-checkov/bin/python -m pip install --quiet --upgrade pip
	.venv-checkov/bin/python -m pip install --quiet -r infra/requirements-checkov.lock
	touch $@

$(CDK_CLI_STAMP): infra/package.json infra/package-lock.json
	cd infra && npm ci --no-audit --no-fund --loglevel=error
	touch $@

infra: $(STAMP) $(INFRA_STAMP) $(SAM_STAMP) $(CHECKOV_STAMP) $(CDK_CLI_STAMP)
	$(BIN)/ruff check lambdas infra tests/infra
	$(BIN)/ruff format --check lambdas infra tests/infra
	.venv-infra/bin/python -m pytest tests/infra

# The docs site: mkdocs-material + mkdocstrings in .venv-docs (docs/requirements.lock, nothing
# else: the API reference reads tq_aws from the source tree), built offline and strictly.
DOCS_STAMP := .venv-docs/.installed

$(DOCS_STAMP): docs/requirements.lock
	test -x .venv-docs/bin/python || $(PYTHON) -m venv .venv-docs
	.venv-docs/bin/python -m pip install --quiet --upgrade pip
	.venv-docs/bin/python -m pip install --quiet -r docs/requirements.lock
	touch $@

docs: $(DOCS_STAMP)
	NO_MKDOCS_2_WARNING=1 .venv-docs/bin/mkdocs build --strict --quiet

# Re-resolve docs/requirements.lock from docs/requirements.in (needs the registry).
docs-lock:
	rm -rf .venv-docs-lock && $(PYTHON) -m venv .venv-docs-lock
	.venv-docs-lock/bin/python -m pip install --quiet --upgrade pip
	.venv-docs-lock/bin/python -m pip install --quiet -r docs/requirements.in
	{ echo "# .venv-docs: resolved from docs/requirements.in (make docs-lock); installed alone."; \
	  .venv-docs-lock/bin/python -m pip freeze; } > docs/requirements.lock
	rm -rf .venv-docs-lock

# Producers in other languages: a Node.js script on the AWS SDK for JavaScript v3 puts records
# on a moto server, tq-aws consumers run them (tests/interop; npm ci from the lock file).
INTEROP_STAMP := tests/interop/node/node_modules/.installed

$(INTEROP_STAMP): tests/interop/node/package.json tests/interop/node/package-lock.json
	cd tests/interop/node && npm ci --no-audit --no-fund --loglevel=error
	touch $@

interop: $(STAMP) $(INTEROP_STAMP)
	$(BIN)/python -m pytest tests/interop

bench: $(STAMP)
	$(BIN)/python -m bench

# Re-resolve the pinned sets (needs the registry); commit the result. The whole set is resolved
# once with the dev extra; requirements.lock is what `pip install .` takes of it, and
# requirements-dev.lock the rest, so the two always install together.
LOCK_HEAD     := \# The runtime: what pip install . brings, pinned (make demo installs it alone).
DEV_LOCK_HEAD := \# The development tools, pinned to install beside requirements.lock (make test).
lock:
	rm -rf .venv-lock && $(PYTHON) -m venv .venv-lock
	.venv-lock/bin/python -m pip install --quiet --upgrade pip
	.venv-lock/bin/python -m pip install --quiet -e '.[dev]'
	.venv-lock/bin/python -m pip freeze --exclude-editable | grep -v '^-e' > .venv-lock.all
	rm -rf .venv-lock && $(PYTHON) -m venv .venv-lock
	.venv-lock/bin/python -m pip install --quiet --constraint .venv-lock.all -e .
	{ echo "$(LOCK_HEAD)"; .venv-lock/bin/python -m pip freeze --exclude-editable \
	  | grep -v '^-e'; } > requirements.lock
	{ echo "$(DEV_LOCK_HEAD)"; grep -vxFf requirements.lock .venv-lock.all; } > requirements-dev.lock
	rm -rf .venv-lock .venv-lock.all

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
