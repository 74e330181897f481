"""Listwise reranking: sliding windows × a prompt template × a generative backend.

Each window shows the model up to ``window_size`` passages numbered [1]..[n]; the model answers with a permutation
(optionally after ``<think>`` reasoning), which is repaired if needed and applied to that slice. Windows run back to
front (see :func:`reasonrank.rerank.schedule.sliding_windows`); all queries' k-th windows go to the backend together.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from reasonrank.backends.base import Backend, ChatPrompt, GenerationParams
from reasonrank.errors import UserError
from reasonrank.prompts import Template, load_template
from reasonrank.prompts.builders import window_prompt
from reasonrank.prompts.readers import parse_permutation, passage_parts, split_reasoning
from reasonrank.rerank.base import Reranker
from reasonrank.rerank.generation import LazyBackend, positive
from reasonrank.rerank.schedule import sliding_windows
from reasonrank.types import Candidate, ExplanationFrom, Ranking, Request
from reasonrank.weights import check_adapter_template


class ListwiseReranker(Reranker):
    """Sliding-window permutation reranking; a passage's explanation is what its window's reasoning says about it."""

    def __init__(
        self,
        backend: LazyBackend,
        template: Template,
        window_size: int = 20,
        stride: int = 10,
        depth: int = 100,
        max_new_tokens: int = 4096,
        temperature: float = 0.0,
        seed: int | None = None,
        max_passage_words: int | None = None,
    ):
        if template.kind != "listwise":
            raise UserError(f"template {template.id} is a {template.kind} template: use a listwise/ one")
        if template.has("prefix_reply") != template.has("passage_reply"):
            raise UserError(f"template {template.id} needs both prefix_reply and passage_reply, or neither")
        sliding_windows(0, window_size, stride, depth)  # checks the settings now rather than mid-run
        self.backend = backend
        self.template = template
        self.window_size, self.stride, self.depth = window_size, stride, depth
        self.max_passage_words = max_passage_words
        self.params = GenerationParams(
            max_new_tokens=positive("max_new_tokens", max_new_tokens),
            temperature=temperature,
            top_p=template.setting("top_p", 1.0),
            top_k=template.setting("top_k", 0),
            seed=seed,
        )

    def prompt(self, query: str, candidates: Sequence[Candidate]) -> ChatPrompt:
        tokenizer = None
        if self.template.setting("max_passage_tokens"):  # passages cut by the model's own tokens (ReasonRank)
            tokenizer = getattr(self.backend.get(), "tokenizer", None)
        return window_prompt(self.template, query, [c.text for c in candidates], self.max_passage_words, tokenizer)

    @property
    def queries_per_step(self) -> int:
        return self.backend.queries_per_step

    def rerank_request(self, request: Request) -> Ranking:
        return self.rerank_many([request])[0]

    def rerank_many(self, requests: Sequence[Request]) -> list[Ranking]:
        orders = [list(r.candidates) for r in requests]
        windows = [sliding_windows(len(r.candidates), self.window_size, self.stride, self.depth) for r in requests]
        steps = max((len(query_windows) for query_windows in windows), default=0)
        stats = [Counter() for _ in requests]
        explanations: list[dict[str, str]] = [{} for _ in requests]
        for step in range(steps):
            active = [(i, *query_windows[step]) for i, query_windows in enumerate(windows) if step < len(query_windows)]
            prompts = [self.prompt(requests[i].query.text, orders[i][start:end]) for i, start, end in active]
            desc = f"{self.name} window {step + 1}/{steps}"
            generations = self.backend.generate(prompts, self.params, desc)
            for (i, start, end), prompt, generation in zip(active, prompts, generations, strict=True):
                window = orders[i][start:end]
                # The answer begins in the template's assistant prefix (a "<think>" the model continues) when it
                # has one: read them together, or the reasoning it opens is taken for the answer.
                text = prompt.assistant_prefix + generation.text
                permutation = parse_permutation(text, len(window))
                orders[i][start:end] = [window[k] for k in permutation.order]
                stats[i].update(
                    windows=1,
                    repair_missing=permutation.missing,
                    repair_duplicate=permutation.duplicate,
                    repair_out_of_range=permutation.out_of_range,
                )
                reasoning, _ = split_reasoning(text)
                # The last window that speaks of a passage explains it, with what it says about that passage alone.
                parts = passage_parts(reasoning, len(window))
                explanations[i].update({window[k].docid: part for k, part in parts.items()})
        return [
            Ranking.from_order(r.query, order, self.name, explanations[i], {k: v for k, v in stats[i].items() if v},
                               explanation_from=ExplanationFrom.LISTWISE_WINDOW)
            for i, (r, order) in enumerate(zip(requests, orders, strict=True))
        ]

    def close(self) -> None:
        self.backend.close()


def build_listwise(
    model: str,
    backend: Backend | str = "transformers",
    template: str | Template = "listwise/rankzephyr-v1",
    window_size: int = 20,
    stride: int = 10,
    depth: int = 100,
    max_new_tokens: int | None = None,
    temperature: float = 0.0,
    seed: int | None = None,
    max_passage_words: int | None = None,
    **backend_options: Any,
) -> ListwiseReranker:
    """A listwise reranker; ``max_new_tokens`` defaults to 4096 for reasoning templates, else 200 (20 ids)."""
    loaded = load_template(template)
    check_adapter_template(backend_options.get("adapter"), loaded.id)
    if max_new_tokens is None:
        max_new_tokens = 4096 if loaded.setting("reasoning", False) else 200
    return ListwiseReranker(
        LazyBackend(backend, model, backend_options),
        loaded,
        window_size=window_size,
        stride=stride,
        depth=depth,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        seed=seed,
        max_passage_words=max_passage_words,
    )
