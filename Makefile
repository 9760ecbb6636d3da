# Every target sets up what it needs: .venv (Python deps) and node_modules (asl-validator).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
NODE_STAMP := node_modules/.installed
PYTEST_ARGS ?=

.PHONY: help venv test lint typecheck pytest demo bench docs layer clean

help:
	@echo "make demo   - run the example workflow locally on the embedded local store"
	@echo "make test   - lint, strict mypy, docs build and the whole test suite"
	@echo "make bench  - benchmarks (ratios against baselines measured in the same run)"
	@echo "make docs   - build the documentation site (mkdocs --strict)"
	@echo "make layer  - build the Lambda layer zips"

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,docs]'
	touch $@

venv: $(STAMP)

$(NODE_STAMP): package.json
	npm install --no-audit --no-fund --silent
	touch $@

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP) $(NODE_STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test: lint typecheck docs pytest

demo: $(STAMP)
	$(BIN)/ceap-stage run examples/engagement/workflow.py --store file://.ceap

bench: $(STAMP)
	$(BIN)/python -m bench

docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

layer: $(STAMP)
	$(BIN)/python layer/build.py

clean:
	rm -rf $(VENV) node_modules site build dist .ceap layer/dist
