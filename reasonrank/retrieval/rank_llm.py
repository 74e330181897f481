"""rank_llm's candidates as the first stage: ``--first-stage rank-llm:REQUESTS`` (a rank_llm request or result
file, :mod:`reasonrank.io.rank_llm`). The passages travel in the file, so ``--index`` is not read; the topics may be
the same file (``--topics REQUESTS``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from reasonrank.errors import UserError
from reasonrank.io.rank_llm import read_rank_llm
from reasonrank.retrieval.base import Closing, FirstStageSettings, check_search, is_excluded
from reasonrank.retrieval.run import check_listed_queries
from reasonrank.types import Query, Request


class RankLlmFirstStage(Closing):
    """Each query's candidates in the file's order, with their texts and scores."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser()
        self.name = f"rank-llm:{self.path.name}"
        self.candidates = {request.query.qid: request.candidates for request in read_rank_llm(self.path)}

    def search(
        self,
        queries: Sequence[Query],
        hits: int = 100,
        threads: int = 1,
        remove_query: bool = False,
        progress: bool = True,
        text_depth: int | None = None,
    ) -> list[Request]:
        """The first ``hits`` candidates of each query without its excluded ids (and, with ``remove_query``, its own
        id); the texts are in memory, so every candidate keeps its text."""
        check_search(queries, hits, text_depth)
        check_listed_queries(self.path, self.candidates, queries)
        return [
            Request(query, tuple(
                c for c in self.candidates[query.qid] if not is_excluded(query, c.docid, remove_query)
            )[:hits])
            for query in queries
        ]


def build(index: str, settings: FirstStageSettings) -> RankLlmFirstStage:
    if not settings.argument:
        raise UserError("--first-stage rank-llm needs the request file: --first-stage rank-llm:PATH (JSON or JSONL)")
    return RankLlmFirstStage(settings.argument)
