"""Head reranking and cascades with deterministic rerankers."""

from __future__ import annotations

import pytest

from reasonrank.errors import UserError
from reasonrank.rerank.base import ScoringReranker
from reasonrank.rerank.cascade import Cascade, HeadReranker, parse_cascade
from reasonrank.types import Candidate, Judgment, Query, Request


class ByNumber(ScoringReranker):
    """Scores a candidate by the number in its text; records what it was shown."""

    def __init__(self, name: str, explain: bool = False):
        self.name, self.explain, self.seen = name, explain, []

    def judge(self, requests):
        self.seen.extend(len(r.candidates) for r in requests)
        return [[Judgment(float(c.text), f"{self.name} saw {c.text}" if self.explain else None) for c in r.candidates]
                for r in requests]


def request(numbers: list[int]) -> Request:
    cands = tuple(Candidate(f"d{n}", str(n), 100.0 - i) for i, n in enumerate(numbers))
    return Request(Query("q1", "query"), cands)


def test_head_reranker_keeps_tail_below_and_scores_sorted():
    ranking = HeadReranker(ByNumber("num"), depth=3).rerank_request(request([1, 3, 2, 9, 8]))
    assert ranking.docids == ["d3", "d2", "d1", "d9", "d8"]
    scores = [item.score for item in ranking]
    assert scores == sorted(scores, reverse=True)
    assert [item.rank for item in ranking] == [1, 2, 3, 4, 5]


def test_cascade_bounds_each_stage_and_keeps_explanations():
    cheap, reasoner = ByNumber("cheap", explain=True), ByNumber("reasoner")
    ranking = Cascade([(cheap, 4), (reasoner, 2)]).rerank_request(request([5, 1, 7, 3, 9]))
    assert cheap.seen == [4] and reasoner.seen == [2]
    assert ranking.docids == ["d7", "d5", "d3", "d1", "d9"]
    assert ranking.model == "cheap+reasoner"
    assert ranking[0].explanation == "cheap saw 7"


def test_cascade_spec_parsing():
    assert parse_cascade("minilm-bi:100, smollm2-pointwise:20") == [("minilm-bi", 100), ("smollm2-pointwise", 20)]
    for bad in ["minilm-bi", "minilm-bi:x", ":10", "a:0"]:
        with pytest.raises(UserError, match="NAME:DEPTH"):
            parse_cascade(bad)
    with pytest.raises(UserError, match="must not grow"):
        Cascade([(ByNumber("a"), 10), (ByNumber("b"), 20)])
