"""Score fusion with the previous stage: ``w·z(reranker) + (1 − w)·z(first stage)`` per query.

Lexical and neural evidence fail on different queries; interpolating z-normalised scores keeps what BM25
gets right (exact terms, rare entities: SciFact's claims) while the encoder fixes vocabulary mismatch.
Explanations and labels of the inner reranker are kept.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from reasonrank.errors import UserError
from reasonrank.rerank.base import Reranker, ScoringReranker
from reasonrank.types import Judgment, Ranking, Request


def z_scores(scores: Mapping[str, float]) -> dict[str, float]:
    """Per-query standardisation; a constant list (or a single candidate) maps to zeros."""
    if not scores:
        return {}
    mean = statistics.fmean(scores.values())
    spread = statistics.pstdev(scores.values())
    return {key: (value - mean) / spread if spread > 0 else 0.0 for key, value in scores.items()}


class ScoreFusion(Reranker):
    """The inner reranker's scores fused with the first stage's; named after both (``minilm-bi+first-stage@0.8``)."""

    names_itself = True

    def __init__(self, inner: Reranker, weight: float):
        if not 0.0 <= weight <= 1.0:
            raise UserError(f"fusion weight must lie in [0, 1], got {weight}")
        self.inner, self.weight = inner, weight
        self.name = f"{inner.name}+first-stage@{weight:g}"

    def rerank_request(self, request: Request) -> Ranking:
        return self.rerank_many([request])[0]

    def rerank_many(self, requests: Sequence[Request]) -> list[Ranking]:
        fused = []
        for request, ranking in zip(requests, self.inner.rerank_many(requests), strict=True):
            model = z_scores({item.docid: item.score for item in ranking.items})
            previous = z_scores({c.docid: c.score for c in request.candidates})
            by_docid = {item.docid: item for item in ranking.items}
            judgments = [
                Judgment(
                    self.weight * model[c.docid] + (1 - self.weight) * previous[c.docid],
                    by_docid[c.docid].explanation,
                    by_docid[c.docid].label,
                )
                for c in request.candidates
            ]
            fused.append(Ranking.from_judgments(request.query, request.candidates, judgments, self.name, ranking.stats))
        return fused

    @property
    def independent_queries(self) -> bool:
        return self.inner.independent_queries  # z-scores are per query

    def evidence_scorer(self) -> ScoringReranker | None:
        return self.inner.evidence_scorer()

    def close(self) -> None:
        self.inner.close()


def build_fusion(model: str, weight: float = 0.8, **options: Any) -> ScoreFusion:
    """Fuse the reranker named ``model`` (a registry name, hub id or folder) with the first-stage scores."""
    from reasonrank.rerank.registry import load_reranker

    return ScoreFusion(load_reranker(model, **options), float(weight))
