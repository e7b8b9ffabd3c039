# Two commands do all the set-up: `make run` and `make test`. Both install exactly what uv.lock names.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CLIS := $(VENV)/clis/.installed
# uv itself, pinned with its hashes in .ci/uv.txt, in a virtualenv of its own (uv sync owns .venv).
UV_HOME := .uv
UV := $(UV_HOME)/bin/uv
export UV_PYTHON := $(PYTHON)
export UV_PROJECT_ENVIRONMENT := $(VENV)
export UV_LINK_MODE := copy
CONFIG ?=

.PHONY: run test test-unit lint lock lock-upgrade bench bench-suite clean

$(UV): .ci/uv.txt
	$(PYTHON) -m venv $(UV_HOME)
	$(UV_HOME)/bin/pip install --quiet --disable-pip-version-check --require-hashes --no-deps -r .ci/uv.txt
	touch $(UV)

# xds-protos carries an older copy of opentelemetry-proto's modules; which of the two is written last depends on the
# install order, so opentelemetry-proto is written again: its own modules win (the OTLP exporters import them).
$(STAMP): pyproject.toml uv.lock $(UV)
	$(UV) sync --frozen --extra test --quiet
	$(UV) sync --frozen --extra test --quiet --reinstall-package opentelemetry-proto
	touch $(STAMP)

# The real coding CLIs the end-to-end tests drive (Claude Code, Codex), pinned in tests/clis, from the npm registry.
$(CLIS): tests/clis/package.json tests/clis/package-lock.json | $(STAMP)
	@if command -v npm >/dev/null 2>&1; then \
		mkdir -p $(VENV)/clis && cp tests/clis/package.json tests/clis/package-lock.json $(VENV)/clis/ && \
		(cd $(VENV)/clis && npm ci --no-audit --no-fund --loglevel=error) && touch $@; \
	else echo "npm not found: install Node.js and npm, or the tests that drive Claude Code fail (.ci/run installs them)"; fi

run: $(STAMP)
	$(BIN)/extproc up $(if $(CONFIG),--config $(CONFIG),)

# One pytest-xdist worker per core, each taking whole files (docs/testing.md).
test: $(STAMP) $(CLIS)
	$(BIN)/pytest -q -n auto --dist loadfile

# The pure unit tests alone: no process, socket or Redis; seconds.
test-unit: $(STAMP)
	$(BIN)/pytest -q tests/unit

lint: $(STAMP)
	$(BIN)/ruff check extproc tests bench
	$(BIN)/mypy

# Change dependencies only through the lock: after editing pyproject.toml, `make lock` resolves what changed and
# keeps every other pin; `make lock-upgrade` takes the newest releases pyproject.toml allows. Commit uv.lock.
lock: $(UV)
	$(UV) lock

lock-upgrade: $(UV)
	$(UV) lock --upgrade

bench: $(STAMP)
	$(BIN)/python bench/run.py

bench-suite: $(STAMP)
	$(BIN)/python bench/suite.py

clean:
	rm -rf $(VENV) $(UV_HOME) build *.egg-info
