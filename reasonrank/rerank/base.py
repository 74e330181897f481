"""What every reranker is: ``rerank(query, candidates) -> Ranking``."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from reasonrank.retrieval.documents import as_request
from reasonrank.types import Judgment, Query, Ranking, Request

if TYPE_CHECKING:
    from reasonrank.retrieval.base import TextScorer


# Queries per reranking step (one checkpoint each) unless the reranker's backend schedules more itself: a
# transformers batch is padded in memory, and the step bounds what a killed run redoes.
MEMORY_BOUNDED_QUERIES_PER_STEP = 8


class Reranker(ABC):
    """Reorders the candidates of one query.

    Subclasses implement :meth:`rerank_request`; :meth:`rerank_many` may be overridden to batch
    across queries.
    """

    name: str = "reranker"
    # True where the name is derived from the reranker's parts (fusion, cascade): the registry then keeps it.
    names_itself: ClassVar[bool] = False

    @property
    def text_depth(self) -> int | None:
        """How many leading candidates this reranker reads (only those need their passage text); None: all."""
        return None

    @property
    def independent_queries(self) -> bool:
        """True where :meth:`rerank_many` gives every query the ranking it gives that query alone, bit for bit,
        whatever other queries share the call (the server batches only such rerankers unless told otherwise).
        False unless a reranker states it: generation pads prompts of several queries into shared batches."""
        return False

    @property
    def queries_per_step(self) -> int:
        """How many queries a run hands this reranker per step (and checkpoints after it) unless told otherwise:
        what its engine uses well (all of a run's queries reach vLLM together, up to a bound)."""
        return MEMORY_BOUNDED_QUERIES_PER_STEP

    def rerank(self, query: str | Query, candidates: Iterable[Any]) -> Ranking:
        """Rerank Pyserini hits, ``(docid, text)`` pairs or :class:`Candidate` objects."""
        return self.rerank_request(as_request(query, candidates))

    @abstractmethod
    def rerank_request(self, request: Request) -> Ranking:
        """Rerank one query's candidates."""

    def rerank_many(self, requests: Sequence[Request]) -> list[Ranking]:
        return [self.rerank_request(request) for request in requests]

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release models and backends."""

    def evidence_scorer(self, first_stage: TextScorer | None = None) -> Reranker | None:
        """The reranker whose scores for single sentences explain this ranking (``reasonrank.rerank.evidence``): it
        reranks a request of sentences as this reranker reranks passages. ``first_stage`` scores sentences as the
        first stage scored the passages, for rerankers that fuse with the first stage's scores.

        None for rerankers that write their own explanations or have no such model.
        """
        return None

    @property
    def score_name(self) -> str:
        """What this reranker's scores are, for explanations."""
        return "score"


class ScoringReranker(Reranker):
    """A reranker that judges each candidate on its own (encoders, pointwise reasoning)."""

    @abstractmethod
    def judge(self, requests: Sequence[Request]) -> list[list[Judgment]]:
        """One judgment per candidate, for every request; implementations batch across requests."""

    def rerank_request(self, request: Request) -> Ranking:
        return self.rerank_many([request])[0]

    def rerank_many(self, requests: Sequence[Request]) -> list[Ranking]:
        judgments = self.judge(requests)
        pairs = zip(requests, judgments, strict=True)
        return [Ranking.from_judgments(r.query, r.candidates, js, self.name) for r, js in pairs]
