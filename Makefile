# `make run` and `make test` each install whatever is missing into .venv/, then do their job.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench-request-path system-run system-test clean

run: system-run $(STAMP)
	$(BIN)/aigw serve

test: system-test $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy src

bench-request-path: $(STAMP)
	$(BIN)/python bench/request_path.py

system-run:
	@scripts/system-packages.sh run

system-test:
	@scripts/system-packages.sh test

$(BIN)/python:
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "aigw needs Python 3.11+"'
	$(PYTHON) -m venv $(VENV)

# Exact versions of everything, direct and transitive, come from constraints.txt.
$(STAMP): $(BIN)/python pyproject.toml constraints.txt
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

clean:
	rm -rf $(VENV) build src/*.egg-info
