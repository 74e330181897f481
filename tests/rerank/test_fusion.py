"""Score fusion: z-normalised interpolation with the first-stage scores."""

from __future__ import annotations

import pytest

from reasonrank.errors import UserError
from reasonrank.rerank.base import ScoringReranker
from reasonrank.rerank.fusion import ScoreFusion, z_scores
from reasonrank.rerank.registry import load_reranker
from reasonrank.types import Candidate, ExplanationFrom, Judgment, Query, Request


class Reverse(ScoringReranker):
    """Scores the reverse of the first-stage order and explains each judgment."""

    name = "reverse"

    def judge(self, requests):
        return [[Judgment(float(i), f"why {c.docid}", 1, ExplanationFrom.POINTWISE) for i, c in enumerate(r.candidates)]
                for r in requests]


REQUEST = Request(Query("q", "query"), tuple(Candidate(f"d{i}", "text", 10.0 - i) for i in range(5)))


def test_weights_interpolate_between_the_two_orders():
    assert ScoreFusion(Reverse(), 1.0).rerank_request(REQUEST).docids == ["d4", "d3", "d2", "d1", "d0"]
    assert ScoreFusion(Reverse(), 0.0).rerank_request(REQUEST).docids == ["d0", "d1", "d2", "d3", "d4"]
    fused = ScoreFusion(Reverse(), 0.5).rerank_request(REQUEST)
    assert [item.score for item in fused] == pytest.approx([0.0] * 5)  # exactly opposed evidence cancels out
    assert fused.docids == ["d0", "d1", "d2", "d3", "d4"]  # ties keep the first-stage order
    assert fused[0].explanation == "why d0" and fused[0].label == 1
    assert fused[0].explanation_from is ExplanationFrom.POINTWISE  # the inner reranker's source goes with its text


def test_z_scores_and_bad_weight():
    assert z_scores({"a": 1.0, "b": 3.0}) == {"a": -1.0, "b": 1.0}
    assert z_scores({"a": 2.0}) == {"a": 0.0}
    with pytest.raises(UserError, match="fusion weight"):
        ScoreFusion(Reverse(), 1.5)


def test_default_is_registered_as_a_fusion_of_the_bi_encoder():
    reranker = load_reranker("minilm-hybrid")
    assert isinstance(reranker, ScoreFusion) and reranker.weight == 0.8
    # The registry keeps the name fusion derives from its parts (it used to overwrite it with "minilm-hybrid").
    assert reranker.name == "minilm-bi+first-stage@0.8" and reranker.inner.name == "minilm-bi"
