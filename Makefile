# Quick start: `make demo` runs the two-agency demo, `make test` runs the tests;
# `make serve` keeps the two demo gateways and their workspaces running until Ctrl-C
# (`gateway demo --serve`, docs/workspace.md).
# Each creates .venv and installs the project into it on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo serve test typecheck bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/gateway demo

serve: $(STAMP)
	$(BIN)/gateway demo --serve

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# mypy over the shipped code; its settings are [tool.mypy] in pyproject.toml.
typecheck: $(STAMP)
	$(BIN)/python -m mypy gateway adapters

bench: $(STAMP)
	$(BIN)/python bench/envelope_bench.py
	$(BIN)/python bench/throughput_bench.py
	$(BIN)/python bench/audit_bench.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis .mypy_cache
