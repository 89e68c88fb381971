# The README's two commands: `make quickstart` and `make test`. Each creates or refreshes .venv itself.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.mm1-installed

.PHONY: quickstart test venv lessons clean

# open_clip_torch without its dependencies: only its loss.py is read, by the stage-0 loss parity tests (the package
# itself needs torchvision and is never imported). The rule depends on this file so that existing venvs refresh.
$(STAMP): pyproject.toml constraints.txt Makefile
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test]'
	$(BIN)/python -m pip install --quiet --no-deps open_clip_torch==3.3.0
	@touch $(STAMP)

venv: $(STAMP)

quickstart: $(STAMP)
	$(BIN)/mm1 sweep run sweeps/quickstart.yaml

# The tests that start no Ray run on two processes (pytest-xdist); the slow tests of tests/orchestrator (Ray, MLflow,
# the CLI end to end; marked serial by tests/conftest.py) run alone after them. Both parts always run; the command fails if either fails or collects nothing.
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	@a=0; b=0; \
	$(BIN)/python -m pytest -n 2 -m 'not serial' tests || a=$$?; \
	$(BIN)/python -m pytest -m serial tests || b=$$?; \
	if [ $$a -eq 5 ] || [ $$b -eq 5 ]; then echo "pytest collected no tests" >&2; exit 5; fi; \
	exit $$(( a > b ? a : b ))

# Every lesson sweep of the README's "Lessons" into ./mlflow.db (about 2 h on 2 cores; finished trials are skipped
# on a re-run), then the verdict table and the lesson plots.
LESSON_SWEEPS = encoder connector data-mixture data-text data-synthetic highres moe lr-scaling
lessons: $(STAMP)
	for sweep in $(LESSON_SWEEPS); do $(BIN)/mm1 sweep run sweeps/$$sweep.yaml || exit $$?; done
	$(BIN)/mm1 lessons --experiment mm1-ablations
	$(BIN)/mm1 plots --experiment mm1-ablations

clean:
	rm -rf $(VENV) .mm1 mlflow.db mlartifacts
