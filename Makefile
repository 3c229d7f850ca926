# RSafe Gateway. Two commands do all the set-up on a fresh machine:
#   make serve   install into .venv and serve the gateway on 127.0.0.1:8080 (embedded CPU guard)
#   make test    install into .venv (+ .venv-vllm for the real vLLM test) and run the whole suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# torch is pinned to the CPU build in pyproject.toml; these must not be installed beside it.
BROKEN_WITH_TORCH := torchvision torchaudio torchcodec

.PHONY: serve test test-fast vllm-env browser-env compose-env train-demo train-embedded bench bench-embedded bench-logs eval clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip setuptools wheel

$(VENV)/.serve-installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[eval]'
	-$(BIN)/python -m pip uninstall --quiet -y $(BROKEN_WITH_TORCH) 2>/dev/null
	touch $@

$(VENV)/.test-installed: pyproject.toml $(VENV)/.serve-installed
	$(BIN)/python -m pip install --quiet -e '.[eval,test,train]'
	-$(BIN)/python -m pip uninstall --quiet -y $(BROKEN_WITH_TORCH) 2>/dev/null
	touch $@

serve: $(VENV)/.serve-installed
	$(BIN)/rsafe serve

vllm-env:
	bash scripts/vllm_env.sh

browser-env: $(VENV)/.test-installed
	bash scripts/browser_env.sh

compose-env:
	bash scripts/compose_env.sh

test: $(VENV)/.test-installed vllm-env browser-env compose-env
	$(BIN)/python -m pytest -ra

# Everything but the slow integration tests (real vLLM server, training smoke).
test-fast: $(VENV)/.test-installed
	$(BIN)/python -m pytest -ra -m "not slow"

train-demo: $(VENV)/.test-installed
	$(BIN)/python -m training.demo

# Fine-tunes the embedded guard's top encoder layer + head, then fits the examples term
# (about 55 min on the 2-core VM: docs/models/embedded.md); writes guard/embedded/weights_issue15/ (opt-in,
# not the default weights: see docs/models/embedded.md for why).
train-embedded: $(VENV)/.test-installed
	$(BIN)/python -m training.embedded --data ../shared/data/train --policies training/configs/embedded_issue15_policies.yaml --out guard/embedded/weights_issue15 --seed 0
	$(BIN)/python -m training.embedded_examples --data ../shared/data/train --weights guard/embedded/weights_issue15 --seed 0

# The bench files ship in data/bench/ (licences and row counts: data/bench/README.md).
eval: $(VENV)/.serve-installed
	$(BIN)/rsafe eval --guard embedded --data data/bench --out reports/embedded --concurrency 16

bench: $(VENV)/.test-installed
	$(BIN)/python benchmarks/gateway_overhead.py
	$(BIN)/python benchmarks/streaming.py

bench-embedded: $(VENV)/.test-installed
	$(BIN)/python benchmarks/embedded_latency.py

bench-logs: $(VENV)/.test-installed
	$(BIN)/python benchmarks/logs_stats.py

clean:
	rm -rf $(VENV) .venv-vllm .pytest_cache reports
