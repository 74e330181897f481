"""Shared by the generative rerankers (pointwise, rank1, listwise, pairwise): a backend built on first use, whole
calls to it, and the checks and generation settings they all apply."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from reasonrank.backends.base import Backend, ChatPrompt, Generation, GenerationParams
from reasonrank.errors import UserError
from reasonrank.prompts import Template
from reasonrank.rerank.base import MEMORY_BOUNDED_QUERIES_PER_STEP

logger = logging.getLogger(__name__)

# Queries per reranking step on engines that schedule every sequence they are handed themselves (vLLM's continuous
# batching; a server behind the HTTP backend, which sends all prompts of a call concurrently). 256 queries keep
# them fed: a pointwise, pairwise or rank1 step is 256 x depth prompts (25,600 at depth 100), a listwise window
# step 256 sequences, and a DL19/DL20 topic set (43/54 queries) or any BRIGHT task (under 200 queries) goes in
# one step. The bound keeps checkpoints on larger topic sets: a killed run redoes at most one step.
ENGINE_QUERIES_PER_STEP = {"vllm": 256, "openai": 256}


class LazyBackend:
    """A backend given as an instance, or built from a kind string on first use.

    Building a reranker (e.g. while listing the registry) must not load a model; the first prompt does.
    """

    def __init__(self, backend: Backend | str, model: str, options: dict[str, Any]):
        if not isinstance(backend, Backend | str):
            raise UserError(
                f"backend must be a Backend or one of transformers/vllm/openai, got {type(backend).__name__}"
            )
        self._backend = backend if isinstance(backend, Backend) else None
        self._kind = backend if isinstance(backend, str) else None
        self._model = model
        self._options = options

    @property
    def kind(self) -> str:
        """The backend kind (``transformers``, ``vllm``, ``openai``), known without loading anything."""
        return self._kind if self._backend is None else self._backend.name

    @property
    def queries_per_step(self) -> int:
        """Queries per reranking step that suit this kind of backend (``ENGINE_QUERIES_PER_STEP``)."""
        return ENGINE_QUERIES_PER_STEP.get(self.kind, MEMORY_BOUNDED_QUERIES_PER_STEP)

    def get(self) -> Backend:
        if self._backend is None:
            from reasonrank.backends import load_backend  # imported late: engines are heavy optional dependencies

            self._backend = load_backend(self._kind, self._model, **self._options)
        return self._backend

    def generate(self, prompts: Sequence[ChatPrompt], params: GenerationParams, desc: str) -> list[Generation]:
        """Every prompt in one call: vLLM schedules them all at once and shows its own progress (a call cut into
        chunks waits for each chunk's longest generation while the engine idles); the transformers backend batches
        by memory and shows progress with ``progress=true``."""
        logger.info("%s: %d prompts in one call", desc, len(prompts))
        return self.get().generate(prompts, params)

    def close(self) -> None:
        if self._backend is not None:
            self._backend.close()


def positive(name: str, value: int) -> int:
    if not isinstance(value, int) or value < 1:
        raise UserError(f"{name} must be a positive integer, got {value!r}")
    return value


def marker_params(template: Template, max_new_tokens: int, top_logprobs: int, temperature: float = 0.0):
    """Generation settings for an answer read at a marker (label, verdict): the template's stops, with logprobs."""
    return GenerationParams(
        max_new_tokens=positive("max_new_tokens", max_new_tokens),
        temperature=temperature,
        stop=tuple(template.setting("stop", ())),
        top_logprobs=positive("top_logprobs", top_logprobs),
        skip_special_tokens=template.setting("skip_special_tokens", True),
    )
