# One entry point for people and CI. Every target installs first when needed.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test unit integration lint typecheck format bench clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/cxpulse demo

test: install
	$(BIN)/pytest -q tests

unit: install
	$(BIN)/pytest -q tests/unit tests/agents

integration: install
	$(BIN)/pytest -q tests/integration

lint: install
	$(BIN)/ruff check streams tests
	$(BIN)/ruff format --check streams tests

format: install
	$(BIN)/ruff format streams tests
	$(BIN)/ruff check --fix streams tests

typecheck: install
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
