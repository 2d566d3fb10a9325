# Two entry points, both self-contained on a fresh machine (no network beyond PyPI, no GPU needed):
#   make demo   create .venv, install, train a class-conditional DDPM on the bundled split digits (5 tasks)
#   make test   create .venv, install with dev extras, run the default (fast, offline) test suite
#   make test-slow   the slow tests: kill/resume harness, 2-process consistency, memory growth, long MCMC checks
PYTHON ?= python3
VENV ?= .venv
# torch is pinned in the same pip command: on CPU machines it selects the local CPU build instead of a CUDA wheel.
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin

.PHONY: demo test test-slow install install-dev lint

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

install: $(BIN)/python
	$(BIN)/pip install -q "$(TORCH_SPEC)" -e .

install-dev: $(BIN)/python
	$(BIN)/pip install -q "$(TORCH_SPEC)" -e ".[dev]"

# The demo budget (≈200 optimizer steps per task at batch 64) trains in ~5 minutes on 2 CPU cores and gives
# recognisable digits; docs/getting-started.md says what it writes.
DEMO_FLAGS ?= --train_batch_size 64 --num_epochs 40 --learning_rate 1e-3 --lr_warmup_steps 50 --use_ema \
              --eval_every_task --eval_num_samples 50

demo: install
	HF_HUB_OFFLINE=1 $(BIN)/python main_ddpm.py --output_dir outputs/demo $(DEMO_FLAGS)

test: install-dev
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q

# ≈ 20 min on 2 CPU cores (the kill/resume harness starts ~30 training processes); see docs/reliability-and-threat-model.md.
test-slow: install-dev
	HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -m "slow and not gpu"

lint: install-dev
	$(BIN)/ruff check . && $(BIN)/ruff format --check .
