# Two commands do all the set-up: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CLIS := $(VENV)/clis/.installed
CONFIG ?=

.PHONY: run test lint bench bench-suite clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

# The real coding CLIs the end-to-end tests drive (Claude Code), pinned in tests/clis, from the npm registry.
$(CLIS): tests/clis/package.json tests/clis/package-lock.json | $(STAMP)
	@if command -v npm >/dev/null 2>&1; then \
		mkdir -p $(VENV)/clis && cp tests/clis/package.json tests/clis/package-lock.json $(VENV)/clis/ && \
		(cd $(VENV)/clis && npm ci --no-audit --no-fund --loglevel=error) && touch $@; \
	else echo "npm not found: the tests that drive Claude Code will say so and skip"; fi

run: $(STAMP)
	$(BIN)/extproc up $(if $(CONFIG),--config $(CONFIG),)

test: $(STAMP) $(CLIS)
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check extproc tests bench
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python bench/run.py

bench-suite: $(STAMP)
	$(BIN)/python bench/suite.py

clean:
	rm -rf $(VENV) build *.egg-info
