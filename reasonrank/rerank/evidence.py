"""Evidence: the sentences of a passage that carry its score, found by the model that scored the passage.

A passage is split into sentences (``sentencex``, with character offsets into the passage text) and the
reranker's evidence scorer (``Reranker.evidence_scorer``: the encoder itself; for a fusion with the first stage,
the same fusion of the encoder's and the first stage's sentence scores) reranks the sentences as it reranks
passages, so evidence uses the same weights, truncation, caching and batching as the ranking. Three ways of asking
are implemented and were compared on SciFact's human rationales (``benchmarks/rationales.py``, docs/evidence.md):

- ``sentence``: each sentence alone, scored as if it were the passage;
- ``window``: each sentence with its neighbours (one on each side), scored as a passage, credited to the middle;
- ``leave-one-out``: the score lost when the sentence is removed from the passage.

Generative rerankers write their own explanations; ``reasonrank.prompts.readers.quoted_spans`` checks which of
their quotes really occur in the passage.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from reasonrank.errors import UserError
from reasonrank.rerank.base import Reranker, ScoringReranker
from reasonrank.retrieval.base import TextScorer
from reasonrank.types import Candidate, Evidence, ExplanationFrom, Judgment, Query, Ranking, Request

METHODS = ("sentence", "window", "leave-one-out")
DEFAULT_METHOD = "sentence"


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """``(start, end)`` character offsets of the sentences of ``text``, surrounding whitespace excluded.

    A text with no sentence boundary is one sentence; an empty or blank text has none.
    """
    from sentencex import get_sentence_boundaries

    spans = []
    for boundary in get_sentence_boundaries("en", text):
        start, end = int(boundary["start_index"]), int(boundary["end_index"])
        piece = text[start:end]
        stripped = piece.strip()
        if stripped:
            start += len(piece) - len(piece.lstrip())
            spans.append((start, start + len(stripped)))
    return spans


def _probes(text: str, spans: Sequence[tuple[int, int]], method: str) -> list[str]:
    """The texts the model scores for each sentence under ``method``."""
    if method == "sentence":
        return [text[start:end] for start, end in spans]
    if method == "window":
        last = len(spans) - 1
        return [text[spans[max(i - 1, 0)][0] : spans[min(i + 1, last)][1]] for i in range(len(spans))]
    # leave-one-out: the passage without the sentence (the whole passage is scored alongside, for the drop)
    return [text[:start] + text[end:] for start, end in spans]


class EvidenceFinder:
    """Scores every sentence of a query's passages with ``scorer`` (an evidence scorer, see
    ``Reranker.evidence_scorer``); see the module docstring for ``method``."""

    def __init__(self, scorer: Reranker, method: str = DEFAULT_METHOD) -> None:
        if method not in METHODS:
            raise UserError(f"evidence method {method!r} is not one of {', '.join(METHODS)}")
        self.scorer, self.method = scorer, method

    def score(self, query: Query, candidates: Sequence[Candidate]) -> list[list[Evidence]]:
        """Every sentence of every candidate with its score, in text order (one list per candidate).

        All probes of one query go to the scorer as one request, so it batches them as it batches passages (and a
        fusion normalises over them as over a query's passages).
        """
        spans = [sentence_spans(candidate.text) for candidate in candidates]
        probes: list[Candidate] = []
        for number, (candidate, sentences) in enumerate(zip(candidates, spans, strict=True)):
            if self.method == "leave-one-out" and sentences:
                probes.append(Candidate(f"{number}", candidate.text, title=candidate.title))  # scored as ranked
            texts = _probes(candidate.text, sentences, self.method)
            probes.extend(Candidate(f"{number}:{i}", text) for i, text in enumerate(texts))
        if not probes:
            return [[] for _ in candidates]
        (ranking,) = self.scorer.rerank_many([Request(query, tuple(probes))])
        by_probe = {item.docid: item.score for item in ranking.items}
        scores = iter(by_probe[probe.docid] for probe in probes)
        found = []
        for sentences in spans:
            whole = next(scores) if self.method == "leave-one-out" and sentences else 0.0
            found.append([
                Evidence(start, end, whole - next(scores) if self.method == "leave-one-out" else next(scores))
                for start, end in sentences
            ])
        return found


def best(evidence: Sequence[Evidence], count: int) -> list[Evidence]:
    """The ``count`` highest-scoring spans, best first (ties: the earlier span)."""
    return sorted(evidence, key=lambda span: (-span.score, span.start))[:count]


def describe(text: str, evidence: Sequence[Evidence], scorer: Reranker) -> str:
    """The explanation a scoring reranker gets: its best sentences, quoted, with the scores ``scorer`` gave them."""
    if not evidence:
        return f"{scorer.name}: the passage has no sentence to quote"
    quotes = "; ".join(f'"{text[span.start : span.end]}" ({span.score:.3f})' for span in evidence)
    return f"Evidence by {scorer.name} (sentence {scorer.score_name}): {quotes}"


class EvidenceReranker(Reranker):
    """``inner``'s ranking with evidence for its top ``depth`` documents: the best ``sentences`` spans each,
    scored by the model that scored the passages, quoted in the explanation. ``first_stage`` scores sentences as
    the first stage scored the passages (a fusion with the first stage needs it to fuse sentence scores too).

    A document that already has an explanation (a generative stage wrote one) keeps it and gets no evidence.
    """

    def __init__(
        self, inner: Reranker, depth: int = 10, method: str = DEFAULT_METHOD, sentences: int = 1,
        first_stage: TextScorer | None = None,
    ) -> None:
        scorer = inner.evidence_scorer(first_stage)
        if scorer is None:
            raise UserError(f"{inner.name} has no model that scores single passages, so it cannot find evidence: "
                            "pass --explanations-depth 0 or another reranker")
        if depth < 1 or sentences < 1:
            raise UserError(f"evidence needs depth and sentences of at least 1, got {depth} and {sentences}")
        self.inner, self.depth, self.sentences = inner, depth, sentences
        self.finder = EvidenceFinder(scorer, method)
        self.name = inner.name

    @property
    def text_depth(self) -> int | None:
        return self.inner.text_depth

    def rerank_request(self, request: Request) -> Ranking:
        return self.rerank_many([request])[0]

    def rerank_many(self, requests: Sequence[Request]) -> list[Ranking]:
        return [self.explain(ranking) for ranking in self.inner.rerank_many(requests)]

    def explain(self, ranking: Ranking) -> Ranking:
        head = [item for item in ranking.items[: self.depth] if not item.explanation]
        found = self.finder.score(ranking.query, [item.candidate for item in head])
        chosen = {item.docid: best(spans, self.sentences) for item, spans in zip(head, found, strict=True)}
        items = tuple(
            replace(item, evidence=tuple(spans), explanation=describe(item.text, spans, self.finder.scorer),
                    explanation_from=ExplanationFrom.EVIDENCE, explanation_pair=None)
            if (spans := chosen.get(item.docid)) is not None else item
            for item in ranking.items
        )
        return replace(ranking, items=items)

    @property
    def independent_queries(self) -> bool:
        return self.inner.independent_queries  # sentences are scored one query per call

    @property
    def queries_per_step(self) -> int:
        return self.inner.queries_per_step

    def evidence_scorer(self, first_stage: TextScorer | None = None) -> Reranker | None:
        return self.finder.scorer

    def close(self) -> None:
        self.inner.close()


class MaxPReranker(ScoringReranker):
    """Evidence-aware scores: ``(1 − w)·passage + w·best sentence``, both from ``inner`` (MaxP, Dai & Callan 2019,
    interpolated with the whole passage's score)."""

    def __init__(self, inner: ScoringReranker, weight: float = 0.5, method: str = DEFAULT_METHOD) -> None:
        if not 0.0 <= weight <= 1.0:
            raise UserError(f"maxp weight must lie in [0, 1], got {weight}")
        self.inner, self.weight = inner, weight
        self.finder = EvidenceFinder(inner, method)
        self.name = f"{inner.name}+maxp@{weight:g}"

    def judge(self, requests: Sequence[Request]) -> list[list[Judgment]]:
        judged = []
        for request, judgments in zip(requests, self.inner.judge(requests), strict=True):
            found = self.finder.score(request.query, request.candidates)
            judged.append([
                replace(judgment, score=(1 - self.weight) * judgment.score
                        + self.weight * max((span.score for span in spans), default=judgment.score))
                for judgment, spans in zip(judgments, found, strict=True)
            ])
        return judged

    @property
    def independent_queries(self) -> bool:
        return self.inner.independent_queries  # sentences are scored one query per call

    @property
    def queries_per_step(self) -> int:
        return self.inner.queries_per_step

    def evidence_scorer(self, first_stage: TextScorer | None = None) -> ScoringReranker:
        return self.inner

    def close(self) -> None:
        self.inner.close()


def build_maxp(model: str, weight: float = 0.5, method: str = DEFAULT_METHOD, **options: Any) -> MaxPReranker:
    """MaxP over the scoring reranker named ``model`` (a registry name, hub id or folder)."""
    from reasonrank.rerank.registry import load_reranker

    inner = load_reranker(model, **options)
    if not isinstance(inner, ScoringReranker) or inner.evidence_scorer() is not inner:
        raise UserError(f"maxp needs an encoder reranker that scores passages one by one, not {model!r}")
    return MaxPReranker(inner, float(weight), method)
