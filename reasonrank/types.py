"""The one data model every stage shares: topics → first stage → candidates → rerankers → run.

All records are frozen so a stage can never mutate what an earlier stage produced.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum


@dataclass(frozen=True, slots=True)
class Document:
    """One passage of a corpus as read from disk (before any first stage).

    ``title`` is the document's own title when the corpus has one (BEIR ``title``); ``contents`` then begins with
    it (``title text``, as Pyserini's BEIR indexes join them).
    """

    docid: str
    contents: str
    title: str = ""


@dataclass(frozen=True, slots=True)
class Query:
    """A topic. ``excluded_ids`` are documents that must never be returned (BRIGHT's evaluation rule)."""

    qid: str
    text: str
    excluded_ids: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True, slots=True)
class Candidate:
    """A document handed to a reranker; ``score`` is what the previous stage gave it.

    ``text`` is the whole text, title first; ``title`` is that title when the source has one ("" for untitled
    documents such as MS MARCO passages, and where the source does not say). Only prompt formats that place the
    title themselves read it (DeAR's ``'document: ' + title + ' ' + text``).
    """

    docid: str
    text: str
    score: float = 0.0
    title: str = ""


@dataclass(frozen=True, slots=True)
class Request:
    """One query with its candidates in first-stage order."""

    query: Query
    candidates: tuple[Candidate, ...]


class ExplanationFrom(StrEnum):
    """Where an explanation comes from: the ``explanation_from`` of each line of the explanations file."""

    POINTWISE = "pointwise-explanation"  # what the model wrote about this passage, shown to it alone
    LISTWISE_WINDOW = "listwise-window"  # the part of a listwise window's reasoning about this passage
    PAIRWISE_COMPARISON = "pairwise-comparison"  # the part of one comparison's reasoning about it (see the pair)
    RANK1_REASONING = "rank1-reasoning"  # rank1's reasoning about this passage, shown to it alone
    EVIDENCE = "evidence-sentences"  # the passage's sentences that the scoring model scored highest

    @classmethod
    def read(cls, value: object) -> ExplanationFrom | None:
        """The source a stored record names; None where it names none (written before sources were recorded)."""
        try:
            return cls(value)
        except ValueError:
            return None


@dataclass(frozen=True, slots=True)
class Judgment:
    """What a reranker says about one candidate.

    ``label`` is the graded label a reasoning model wrote (if any); ``explanation`` its text and
    ``explanation_from`` where that text comes from.
    """

    score: float
    explanation: str | None = None
    label: int | None = None
    explanation_from: ExplanationFrom | None = None


@dataclass(frozen=True, slots=True)
class Evidence:
    """A span of a passage, ``text[start:end]`` (character offsets), and the score its model gave that span."""

    start: int
    end: int
    score: float


@dataclass(frozen=True, slots=True)
class RankedCandidate:
    """``evidence``: the passage spans that carry the score, best first (``reasonrank.rerank.evidence``).

    ``explanation_from`` says where the explanation comes from (None where there is none, or where a record
    written before sources were recorded was read back); ``explanation_pair`` is, for a pairwise comparison's
    reasoning, the two documents compared, in the order shown (this one first).
    """

    candidate: Candidate
    score: float
    rank: int
    explanation: str | None = None
    label: int | None = None
    evidence: tuple[Evidence, ...] = ()
    explanation_from: ExplanationFrom | None = None
    explanation_pair: tuple[str, str] | None = None

    @property
    def docid(self) -> str:
        return self.candidate.docid

    @property
    def text(self) -> str:
        return self.candidate.text

    def explained_as(self, other: RankedCandidate) -> RankedCandidate:
        """This item with ``other``'s explanation, label and their source (a later stage keeping an earlier one's)."""
        return replace(self, explanation=other.explanation, label=other.label,
                       explanation_from=other.explanation_from, explanation_pair=other.explanation_pair)


@dataclass(frozen=True, slots=True)
class Ranking:
    """A reranked list, best first, ranks 1..n.

    ``model`` names the reranker (it becomes the run tag); ``stats`` counts events worth reporting,
    e.g. how many permutation repairs a listwise model needed.
    """

    query: Query
    items: tuple[RankedCandidate, ...]
    model: str
    stats: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self):
        return iter(self.items)

    def __getitem__(self, index: int) -> RankedCandidate:
        return self.items[index]

    @property
    def docids(self) -> list[str]:
        return [item.docid for item in self.items]

    def as_candidates(self) -> tuple[Candidate, ...]:
        """The ranking as input for the next reranker, carrying this stage's scores."""
        return tuple(Candidate(i.docid, i.text, i.score) for i in self.items)

    @classmethod
    def from_judgments(
        cls,
        query: Query,
        candidates: Sequence[Candidate],
        judgments: Sequence[Judgment],
        model: str,
        stats: dict[str, int] | None = None,
    ) -> Ranking:
        """Sort by score, descending; ties keep the input order so results are deterministic."""
        if len(candidates) != len(judgments):
            raise ValueError(f"{len(candidates)} candidates but {len(judgments)} judgments")
        order = sorted(range(len(candidates)), key=lambda i: -judgments[i].score)
        items = tuple(
            RankedCandidate(
                candidates[i], judgments[i].score, rank, judgments[i].explanation, judgments[i].label,
                explanation_from=judgments[i].explanation_from if judgments[i].explanation else None,
            )
            for rank, i in enumerate(order, start=1)
        )
        return cls(query, items, model, dict(stats or {}))

    @classmethod
    def from_order(
        cls,
        query: Query,
        ordered: Iterable[Candidate],
        model: str,
        explanations: dict[str, str] | None = None,
        stats: dict[str, int] | None = None,
        explanation_from: ExplanationFrom | None = None,
        explanation_pairs: dict[str, tuple[str, str]] | None = None,
    ) -> Ranking:
        """A ranking from a permutation only (listwise models give no scores).

        Scores are ``1/rank`` so that a run file sorted by score keeps the permutation. ``explanation_from`` is
        the source of every explanation given; ``explanation_pairs`` the pair each one's comparison was about.
        """
        explanations, pairs = explanations or {}, explanation_pairs or {}
        items = tuple(
            RankedCandidate(
                c, 1.0 / rank, rank, explanations.get(c.docid),
                explanation_from=explanation_from if explanations.get(c.docid) else None,
                explanation_pair=pairs.get(c.docid) if explanations.get(c.docid) else None,
            )
            for rank, c in enumerate(ordered, start=1)
        )
        return cls(query, items, model, dict(stats or {}))
