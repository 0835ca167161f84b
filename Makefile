# glacierkit: the two commands.
#   make run    set up .venv, register the kernel, run the notebook pipeline on the sample data
#   make test   set up .venv (if needed) and run the test suite
# Both use the local mirror of the sample data when it exists (../shared/data), else the
# user cache, else download from the pinned public sources.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
NAME ?= sample
PIPELINE ?= pipelines/sample.yml

ifeq ($(origin GLACIERKIT_DATA_DIR), undefined)
  ifneq ($(wildcard ../shared/data/SHA256SUMS),)
    export GLACIERKIT_DATA_DIR := $(abspath ../shared/data)
  endif
endif

.PHONY: setup run test lint bench clean-runs

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	$(BIN)/python -m ipykernel install --sys-prefix --name glacierkit --display-name "Python (glacierkit)"
	touch $@

run: setup
	$(BIN)/glacierkit run $(PIPELINE) --name $(NAME)

test: setup
	$(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check glacierkit tests bench

bench: setup
	for b in ndsi_sweep train_input predict scale runner; do $(BIN)/python bench/$$b.py || exit 1; done

clean-runs:
	rm -rf runs/
