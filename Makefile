# Two entry points, both self-contained on a fresh machine (no network beyond PyPI, no GPU needed):
#   make demo   create .venv, install, train a class-conditional DDPM on the bundled split digits (5 tasks)
#   make test   create .venv, install with dev extras, run the default (fast, offline) test suite
PYTHON ?= python3
VENV ?= .venv
# torch is pinned in the same pip command: on CPU machines it selects the local CPU build instead of a CUDA wheel.
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin

.PHONY: demo test install install-dev lint

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

install: $(BIN)/python
	$(BIN)/pip install -q "$(TORCH_SPEC)" -e .

install-dev: $(BIN)/python
	$(BIN)/pip install -q "$(TORCH_SPEC)" -e ".[dev]"

demo: install
	HF_HUB_OFFLINE=1 $(BIN)/python main_ddpm.py --output_dir outputs/demo

test: install-dev
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q

lint: install-dev
	$(BIN)/ruff check . && $(BIN)/ruff format --check .
