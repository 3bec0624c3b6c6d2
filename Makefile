# `make demo` and `make test` are the README's two commands; both set everything up first.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin

.PHONY: setup browser demo space test lint bench

$(BIN)/.installed: pyproject.toml requirements-towers.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/pip install --quiet -e ".[dev,space]"
	$(BIN)/pip install --quiet --no-deps -r requirements-towers.txt
	touch $@

setup: $(BIN)/.installed

# Debian's headless Chromium and its driver, for the Space's browser test (installed only when missing; needs root)
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
			chromium chromium-driver; }

demo: setup
	$(BIN)/accelerate launch train.py

space: setup
	PYTHONPATH=. $(BIN)/python space/app.py

test: setup browser
	HF_HUB_OFFLINE=1 $(BIN)/ruff check .
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

bench: setup
	$(BIN)/python bench/bench_image_processor.py
	$(BIN)/python bench/bench_generator.py
	$(BIN)/python bench/bench_streaming.py
	$(BIN)/python bench/bench_training.py
	$(BIN)/python bench/bench_eval.py
	$(BIN)/python bench/bench_precision.py
