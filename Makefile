# Every target sets up what it needs: .venv (Python deps) and node_modules (asl-validator).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
NODE_STAMP := node_modules/.installed
# checkov pins its own boto3 (and more): it gets a virtualenv of its own.
CHECKOV_VENV  := .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed
CHECKOV_VERSION := 3.3.30
PYTEST_ARGS ?=
# pytest-xdist workers for `make pytest` (auto: one per core; 0: no workers, one process).
PYTEST_WORKERS ?= auto

.PHONY: help venv test lint typecheck pytest doctest demo bench docs layer clean

help:
	@echo "make demo   - run the example workflow locally on the embedded local store"
	@echo "make test   - lint, strict mypy, docs build, doctests and the whole test suite (parallel)"
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

$(CHECKOV_STAMP): Makefile
	test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet 'checkov==$(CHECKOV_VERSION)'
	touch $@

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

# Tests that share an expensive session fixture (Spark, the layer build) form one xdist group
# each (tests/conftest.py); --dist loadgroup keeps a group on one worker. pytest's exit status
# is make's: 5 ("no tests ran") fails the build like a failing test.
pytest: $(STAMP) $(NODE_STAMP) $(CHECKOV_STAMP)
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

# The examples in the package's docstrings (only the package: examples/ and tests/ are
# collected as tests, under their own module names).
doctest: $(STAMP)
	$(BIN)/python -m pytest --doctest-modules ceap_stage

test: lint typecheck docs doctest pytest

demo: $(STAMP)
	$(BIN)/ceap-stage run examples/engagement/workflow.py --store file://.ceap

bench: $(STAMP)
	$(BIN)/python -m bench

docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

layer: $(STAMP)
	$(BIN)/python layer/build.py

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) node_modules site build dist .ceap layer/dist
