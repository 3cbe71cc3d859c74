# `make run` and `make test` each install whatever is missing into .venv/, then do their job.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# llama.cpp is compiled for AVX2, not for the building CPU (-march=native): on CPUs with AMX (Xeon Sapphire Rapids
# and later) a native build runs AMX tile instructions the kernel has not enabled for the process, and the first
# prompt of more than a few tokens dies with a general-protection fault in libggml-cpu. AVX2 also keeps the build
# portable to any x86-64 from the last decade. The wheel is kept per version and flags, outside pip's cache (which
# would hand back a wheel built with other flags).
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON
LLAMA_VERSION := $(shell grep -i '^llama-cpp-python==' constraints.txt | cut -d= -f3)
LLAMA_WHEELS := $(HOME)/.cache/aigw/llama-cpp-python-$(LLAMA_VERSION)-avx2

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
	ls $(LLAMA_WHEELS)/llama_cpp_python-$(LLAMA_VERSION)-*.whl >/dev/null 2>&1 || \
	  CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(BIN)/python -m pip wheel --quiet --no-cache-dir --no-deps \
	    -c constraints.txt -w $(LLAMA_WHEELS) llama-cpp-python
	$(BIN)/python -m pip install --quiet --find-links $(LLAMA_WHEELS) -c constraints.txt -e '.[dev]'
	touch $(STAMP)

clean:
	rm -rf $(VENV) build src/*.egg-info
