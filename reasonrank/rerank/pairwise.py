"""Pairwise comparative reasoning (Reason-to-Rank style) on the head of a ranking.

For every ordered pair of the top ``head`` candidates (both orders, which cancels the bias towards the passage
shown first) the model explains which passage is more relevant and ends with ``More Relevant Passage: 1|2``. The
preference is p(1) over the label tokens after the marker (the parsed digit as fallback); each candidate's score is
its expected number of wins. The head is reordered by wins, ties keeping the previous order; the tail follows as
it was. k·(k-1) calls per query: 90 for the default head of 10.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

from reasonrank.backends.base import Backend, ChatPrompt, Generation
from reasonrank.errors import UserError
from reasonrank.prompts import Template, load_template
from reasonrank.prompts.builders import cut_passage
from reasonrank.prompts.readers import answer_token, explanation_before, option_distribution, passage_parts
from reasonrank.rerank.base import Reranker
from reasonrank.rerank.generation import LazyBackend, marker_params, positive
from reasonrank.types import ExplanationFrom, Ranking, Request

logger = logging.getLogger(__name__)
VERDICTS = ("1", "2")


def aggregate_wins(k: int, preferences: dict[tuple[int, int], float]) -> tuple[list[int], list[float]]:
    """The head order from ``preferences[(a, b)]`` = p(the passage at a beats the one at b), shown a first.

    Each comparison gives ``p`` to a and ``1 - p`` to b. Returns the new order (positions in the old head) and
    the wins per old position. Ties keep the previous order.
    """
    wins = [0.0] * k
    for (a, b), p in preferences.items():
        wins[a] += p
        wins[b] += 1.0 - p
    return sorted(range(k), key=lambda i: (-wins[i], i)), wins


class PairwiseReranker(Reranker):
    def __init__(
        self,
        backend: LazyBackend,
        template: Template,
        head: int = 10,
        max_new_tokens: int = 512,
        top_logprobs: int = 5,
        temperature: float = 0.0,
    ):
        if template.kind != "pairwise" or not template.setting("marker"):
            raise UserError(f"template {template.id} is not a pairwise template with a marker")
        self.backend = backend
        self.template = template
        self.head = positive("head", head)
        self.marker: str = template.setting("marker")
        self.params = marker_params(template, max_new_tokens, top_logprobs, temperature)
        self._verdict = re.compile(re.escape(self.marker) + r"\s*\**\s*\[?([12])\b", re.IGNORECASE)

    def prompt(self, query: str, passage_a: str, passage_b: str) -> ChatPrompt:
        system = self.template.render("system") if self.template.has("system") else None
        user = self.template.render(
            "user",
            query=query,
            passage_a=cut_passage(passage_a, self.template),
            passage_b=cut_passage(passage_b, self.template),
        )
        return ChatPrompt.of(user, system=system)

    def preference(self, generation: Generation) -> float | None:
        """p(passage 1 is more relevant), from the verdict token's alternatives or else the written digit."""
        distribution = option_distribution(answer_token(generation.tokens, self.marker, VERDICTS), VERDICTS)
        if distribution is not None:
            return distribution["1"]
        verdicts = self._verdict.findall(generation.text)
        return None if not verdicts else float(verdicts[-1] == "1")

    @property
    def queries_per_step(self) -> int:
        return self.backend.queries_per_step

    def rerank_request(self, request: Request) -> Ranking:
        return self.rerank_many([request])[0]

    def rerank_many(self, requests: Sequence[Request]) -> list[Ranking]:
        jobs = [
            (r, a, b)
            for r, request in enumerate(requests)
            for a in range(min(self.head, len(request.candidates)))
            for b in range(min(self.head, len(request.candidates)))
            if a != b
        ]
        prompts = [
            self.prompt(requests[r].query.text, requests[r].candidates[a].text, requests[r].candidates[b].text)
            for r, a, b in jobs
        ]
        generations = self.backend.generate(prompts, self.params, desc=f"{self.name} pairs")
        preferences: list[dict[tuple[int, int], float]] = [{} for _ in requests]
        reasons: list[dict[tuple[int, int], str]] = [{} for _ in requests]
        stats = [Counter() for _ in requests]
        for (r, a, b), generation in zip(jobs, generations, strict=True):
            p = self.preference(generation)
            stats[r]["pairs"] += 1
            if p is None:
                stats[r]["pairs_unparsed"] += 1
                logger.warning(
                    "%s: no verdict for query %s, pair (%d, %d); counting a tie",
                    self.name,
                    requests[r].query.qid,
                    a + 1,
                    b + 1,
                )
                p = 0.5
            preferences[r][(a, b)] = p
            reasons[r][(a, b)] = explanation_before(generation.text, self.marker)
        return [
            self._ranking(request, preferences[r], reasons[r], dict(stats[r])) for r, request in enumerate(requests)
        ]

    def _ranking(
        self,
        request: Request,
        preferences: dict[tuple[int, int], float],
        reasons: dict[tuple[int, int], str],
        stats: dict[str, int],
    ) -> Ranking:
        k = min(self.head, len(request.candidates))
        order, _ = aggregate_wins(k, preferences)
        explanations, pairs = {}, {}
        for position, old in enumerate(order):
            # Why this passage sits where it does: what its comparison with its neighbour below (or above), shown
            # first, says about it as "Passage 1".
            neighbour = order[position + 1] if position + 1 < k else order[position - 1] if k > 1 else None
            part = passage_parts(reasons.get((old, neighbour), ""), 2).get(0) if neighbour is not None else None
            if part:
                docid = request.candidates[old].docid
                explanations[docid] = part
                pairs[docid] = (docid, request.candidates[neighbour].docid)
        ordered = [request.candidates[i] for i in order] + list(request.candidates[k:])
        return Ranking.from_order(request.query, ordered, self.name, explanations, stats,
                                  explanation_from=ExplanationFrom.PAIRWISE_COMPARISON, explanation_pairs=pairs)

    def close(self) -> None:
        self.backend.close()


def build_pairwise(
    model: str,
    backend: Backend | str = "transformers",
    template: str | Template = "pairwise/r2r-v1",
    head: int = 10,
    max_new_tokens: int = 512,
    top_logprobs: int = 5,
    temperature: float = 0.0,
    **backend_options: Any,
) -> PairwiseReranker:
    """Comparative reasoning on the top ``head`` candidates, every pair in both orders."""
    return PairwiseReranker(
        LazyBackend(backend, model, backend_options),
        load_template(template),
        head,
        max_new_tokens,
        top_logprobs,
        temperature,
    )
