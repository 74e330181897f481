"""Rerank only the head of a list, and chain rerankers: a cheap one over the whole depth, a reasoning one
on its head (``--cascade minilm-bi:100,smollm2-pointwise:20``). Cost is bounded by each stage's depth.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from reasonrank.errors import UserError
from reasonrank.rerank.base import Reranker
from reasonrank.types import RankedCandidate, Ranking, Request

if TYPE_CHECKING:
    from reasonrank.retrieval.base import TextScorer


def attach_tail(head: Ranking, request: Request, depth: int) -> Ranking:
    """Put the candidates beyond ``depth`` back under the reranked head, in their previous order.

    Tail scores are shifted below the head's lowest score so that the run stays sorted by score
    (trec_eval orders by score, not by rank); the tail's own order and gaps are kept.
    """
    tail = request.candidates[depth:]
    if not tail:
        return head
    floor = min((item.score for item in head.items), default=0.0)
    shift = min(0.0, floor - max(c.score for c in tail) - 1.0)
    start = len(head.items)
    items = head.items + tuple(
        RankedCandidate(c, c.score + shift, start + i) for i, c in enumerate(tail, start=1)
    )
    return replace(head, items=items)


class HeadReranker(Reranker):
    """Applies ``inner`` to the first ``depth`` candidates only."""

    names_itself = True

    def __init__(self, inner: Reranker, depth: int):
        if depth < 1:
            raise UserError(f"rerank depth must be at least 1, got {depth}")
        self.inner, self.depth = inner, depth
        self.name = inner.name

    @property
    def text_depth(self) -> int:
        return self.depth

    def rerank_request(self, request: Request) -> Ranking:
        return self.rerank_many([request])[0]

    def rerank_many(self, requests: Sequence[Request]) -> list[Ranking]:
        heads = self.inner.rerank_many([replace(r, candidates=r.candidates[: self.depth]) for r in requests])
        return [attach_tail(head, r, self.depth) for head, r in zip(heads, requests, strict=True)]

    @property
    def independent_queries(self) -> bool:
        return self.inner.independent_queries

    @property
    def queries_per_step(self) -> int:
        return self.inner.queries_per_step

    def evidence_scorer(self, first_stage: TextScorer | None = None) -> Reranker | None:
        return self.inner.evidence_scorer(first_stage)

    def close(self) -> None:
        self.inner.close()


class Cascade(Reranker):
    """Stages run in order; each reranks the head of the previous stage's output.

    Explanations and labels from earlier stages survive for documents a later stage does not touch.
    """

    names_itself = True

    def __init__(self, stages: Sequence[tuple[Reranker, int]]):
        if not stages:
            raise UserError("a cascade needs at least one stage")
        depths = [depth for _, depth in stages]
        if depths != sorted(depths, reverse=True):
            raise UserError(f"cascade depths must not grow from stage to stage, got {depths}")
        self.stages = [HeadReranker(reranker, depth) for reranker, depth in stages]
        self.name = "+".join(stage.name for stage in self.stages)

    @property
    def text_depth(self) -> int:
        return max(stage.depth for stage in self.stages)

    def rerank_request(self, request: Request) -> Ranking:
        return self.rerank_many([request])[0]

    def rerank_many(self, requests: Sequence[Request]) -> list[Ranking]:
        current = list(requests)
        rankings: list[Ranking] = []
        notes: list[dict[str, RankedCandidate]] = [{} for _ in requests]
        stats: list[dict[str, int]] = [{} for _ in requests]
        for stage in self.stages:
            rankings = stage.rerank_many(current)
            for note, counts, ranking in zip(notes, stats, rankings, strict=True):
                note.update({i.docid: i for i in ranking.items[: stage.depth] if i.explanation or i.label is not None})
                for key, value in ranking.stats.items():
                    counts[key] = counts.get(key, 0) + value
            current = [replace(r, candidates=k.as_candidates()) for r, k in zip(requests, rankings, strict=True)]
        merged = []
        for ranking, note, counts in zip(rankings, notes, stats, strict=True):
            items = tuple(
                item if item.explanation or item.docid not in note
                else item.explained_as(note[item.docid])
                for item in ranking.items
            )
            merged.append(replace(ranking, items=items, model=self.name, stats=counts))
        return merged

    @property
    def independent_queries(self) -> bool:
        return all(stage.independent_queries for stage in self.stages)

    @property
    def queries_per_step(self) -> int:
        return min(stage.queries_per_step for stage in self.stages)  # the stage bounded by memory bounds the step

    def evidence_scorer(self, first_stage: TextScorer | None = None) -> Reranker | None:
        """The last stage's model that has one: it ordered the head, which is what evidence explains."""
        return next(filter(None, (stage.evidence_scorer(first_stage) for stage in reversed(self.stages))), None)

    def close(self) -> None:
        for stage in self.stages:
            stage.close()


def parse_cascade(spec: str) -> list[tuple[str, int]]:
    """``"minilm-bi:100,smollm2-pointwise:20"`` → ``[("minilm-bi", 100), ("smollm2-pointwise", 20)]``."""
    stages = []
    for part in spec.split(","):
        name, sep, depth = part.strip().rpartition(":")
        if not sep or not name or not depth.isdigit() or int(depth) < 1:
            raise UserError(
                f"--cascade stage {part.strip()!r} is not NAME:DEPTH (e.g. minilm-bi:100,smollm2-pointwise:20)"
            )
        stages.append((name, int(depth)))
    return stages
