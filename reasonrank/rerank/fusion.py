"""Score fusion with the previous stage: ``w·z(reranker) + (1 − w)·z(first stage)`` per query.

Lexical and neural evidence fail on different queries; interpolating z-normalised scores keeps what BM25
gets right (exact terms, rare entities: SciFact's claims) while the encoder fixes vocabulary mismatch.
Explanations and labels of the inner reranker are kept.

A fusion's evidence is the same fusion of its parts' sentence scores: the inner reranker's evidence scorer and the
first stage's score of each sentence (``TextScorer``; BM25 of the sentence with the index's statistics), each
z-normalised over the query's sentences, with the same weight (docs/evidence.md).
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from reasonrank.errors import UserError
from reasonrank.rerank.base import Reranker
from reasonrank.types import Judgment, Ranking, Request

if TYPE_CHECKING:
    from reasonrank.retrieval.base import TextScorer


def z_scores(scores: Mapping[str, float]) -> dict[str, float]:
    """Per-query standardisation; a constant list (or a single candidate) maps to zeros."""
    if not scores:
        return {}
    mean = statistics.fmean(scores.values())
    spread = statistics.pstdev(scores.values())
    return {key: (value - mean) / spread if spread > 0 else 0.0 for key, value in scores.items()}


class ScoreFusion(Reranker):
    """The inner reranker's scores fused with the first stage's; named after both (``minilm-bi+first-stage@0.8``).

    The first stage's scores are the candidates' own, or, given ``first_stage``, its scores of the candidates'
    texts (sentences, when the fusion explains a ranking: :meth:`evidence_scorer`).
    """

    names_itself = True

    def __init__(self, inner: Reranker, weight: float, first_stage: TextScorer | None = None):
        if not 0.0 <= weight <= 1.0:
            raise UserError(f"fusion weight must lie in [0, 1], got {weight}")
        self.inner, self.weight, self.first_stage = inner, weight, first_stage
        self.name = f"{inner.name}+{first_stage.name if first_stage else 'first-stage'}@{weight:g}"

    @property
    def score_name(self) -> str:
        first_stage = self.first_stage.name if self.first_stage else "first stage"
        return f"score {self.weight:g}·z({self.inner.name}) + {1 - self.weight:g}·z({first_stage})"

    def rerank_request(self, request: Request) -> Ranking:
        return self.rerank_many([request])[0]

    def rerank_many(self, requests: Sequence[Request]) -> list[Ranking]:
        fused = []
        for request, ranking in zip(requests, self.inner.rerank_many(requests), strict=True):
            model = z_scores({item.docid: item.score for item in ranking.items})
            if self.first_stage is None:
                previous = z_scores({c.docid: c.score for c in request.candidates})
            else:
                texts = [c.text for c in request.candidates]
                found = self.first_stage.score(request.query.text, texts)
                previous = z_scores(dict(zip((c.docid for c in request.candidates), found, strict=True)))
            by_docid = {item.docid: item for item in ranking.items}
            judgments = [
                Judgment(self.weight * model[c.docid] + (1 - self.weight) * previous[c.docid])
                for c in request.candidates
            ]
            scored = Ranking.from_judgments(request.query, request.candidates, judgments, self.name, ranking.stats)
            # The inner reranker's explanations, labels and their sources, item for item.
            fused.append(replace(scored, items=tuple(item.explained_as(by_docid[item.docid]) for item in scored.items)))
        return fused

    @property
    def independent_queries(self) -> bool:
        return self.inner.independent_queries  # z-scores are per query

    @property
    def queries_per_step(self) -> int:
        return self.inner.queries_per_step

    def evidence_scorer(self, first_stage: TextScorer | None = None) -> Reranker | None:
        """This fusion over the inner reranker's evidence scorer and ``first_stage``'s sentence scores; without a
        first stage that scores sentences, the inner reranker's evidence scorer alone (it is named in the
        explanation)."""
        inner = self.inner.evidence_scorer(first_stage)
        return inner if inner is None or first_stage is None else ScoreFusion(inner, self.weight, first_stage)

    def close(self) -> None:
        self.inner.close()


def build_fusion(model: str, weight: float = 0.8, **options: Any) -> ScoreFusion:
    """Fuse the reranker named ``model`` (a registry name, hub id or folder) with the first-stage scores."""
    from reasonrank.rerank.registry import load_reranker

    return ScoreFusion(load_reranker(model, **options), float(weight))
