# glacierkit: three commands.
#   make run    set up .venv, register the kernel, run the notebook pipeline on the sample data;
#               ends with the path of the run's index.html (HTML reports of every notebook)
#   make test   set up .venv (if needed) and run the test suite (what CI runs; two
#               processes, then the browser test alone)
#   make lab    set up .venv (if needed) and open JupyterLab on notebooks/ with the kernel
#               "Python (glacierkit)"
# All use the local mirror of the sample data when it exists (../shared/data), else the
# user cache, else download from the pinned public sources.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
NAME ?= sample
PIPELINE ?= pipelines/sample.yml
PIP := $(BIN)/python -m pip --quiet --quiet --disable-pip-version-check

ifeq ($(origin GLACIERKIT_DATA_DIR), undefined)
  ifneq ($(wildcard ../shared/data/SHA256SUMS),)
    export GLACIERKIT_DATA_DIR := $(abspath ../shared/data)
  endif
endif

.PHONY: setup run test lab lint bench clean-runs

setup: $(VENV)/.installed

# The set-up needs about 4 GB in $(VENV) (TensorFlow alone 1.9 GB) and about 1 GB more
# while pip unpacks; tools/free_space.py checks first, so that a full disk gives one clear
# line and no half-made environment. MIN_FREE_GB=0 skips the check.
MIN_FREE_GB ?= 5

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) tools/free_space.py "$(VENV)" "$(MIN_FREE_GB)"
	@echo "Setting up $(VENV) (pip; a few minutes the first time) ..."
	@$(PYTHON) -m venv $(VENV)
	@$(PIP) install --upgrade pip
	@$(PIP) install -e ".[test]"
	@$(BIN)/python -m ipykernel install --sys-prefix --name glacierkit --display-name "Python (glacierkit)" >/dev/null
	@touch $@

run: setup
	@$(BIN)/glacierkit run $(PIPELINE) --name $(NAME)

# The suite in TEST_WORKERS processes (pytest-xdist; a test module stays in one process, so
# its fixtures are built once), then the browser test alone: JupyterLab and Chromium get
# the machine to themselves, as a person's browser would.
TEST_WORKERS ?= 2
test: setup
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadscope -m "not browser"
	$(BIN)/python -m pytest -m browser

lab: setup
	$(BIN)/jupyter lab --ServerApp.root_dir=notebooks $(if $(filter 0,$(shell id -u)),--allow-root)

lint: setup
	$(BIN)/ruff check glacierkit tests bench

bench: setup
	for b in ndsi_sweep train_input predict scale runner; do $(BIN)/python bench/$$b.py || exit 1; done

clean-runs:
	rm -rf runs/
