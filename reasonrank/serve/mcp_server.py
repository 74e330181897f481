"""reasonrank as Model Context Protocol tools, for agents: ``search`` (first stage + reranker over a local index)
and ``rerank`` (a query and the caller's documents), each answering the ranked documents with their explanations
and evidence offsets, as the explanation files hold them (docs/explanations.md).

Built on the ``mcp`` SDK's ``MCPServer``; ``reasonrank mcp`` (:mod:`reasonrank.cli.mcp`) serves it over stdio or
streamable HTTP. The first stage and the reranker are loaded once; every call runs on one worker thread, in turn,
so the model and the Lucene reader are never used by two calls at once. Bad input is one error result naming what
is wrong, and the server carries on.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel, Field

from reasonrank.errors import UserError
from reasonrank.io.runs import explanation_records
from reasonrank.pipeline import SearchSettings, build_reranker, with_evidence
from reasonrank.retrieval.base import FirstStageSettings, load_first_stage
from reasonrank.types import Candidate, Query, Ranking, Request

T = TypeVar("T")
MAX_RESULTS = 100


class DocumentIn(BaseModel):
    docid: str = Field(min_length=1, description="Document id, unique among the documents")
    text: str = Field(min_length=1, description="The passage text the reranker reads")


@dataclass(frozen=True, slots=True)
class ServiceSettings:
    """What ``reasonrank mcp`` serves: the index, its first stage, the reranker and how deep each goes."""

    index: str
    first_stage: str = "bm25"
    reranker: str = "minilm-hybrid"
    hits: int = 100  # first-stage candidates reranked per search
    evidence: bool = True
    explanations_depth: int = 10  # the top K of each answer get evidence (a scoring reranker's costs one pass each)
    options: dict[str, Any] | None = None


class SearchService:
    """The loaded first stage and reranker (with its evidence step) behind the tools."""

    def __init__(self, settings: ServiceSettings) -> None:
        self.settings = settings
        search = SearchSettings(index=settings.index, first_stage=settings.first_stage, reranker=settings.reranker,
                                rerank_depth=settings.hits, evidence=settings.evidence, options=settings.options or {},
                                explanations_depth=settings.explanations_depth)
        self.first_stage = load_first_stage(settings.first_stage, settings.index, FirstStageSettings(progress=False))
        reranker = build_reranker(search)
        if reranker is None:
            raise UserError("the MCP server needs a reranker: pass --reranker NAME (e.g. minilm-bi)")
        self.scorer = self.first_stage.text_scorer() if settings.evidence else None
        self.reranker = with_evidence(reranker, search, self.scorer)
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="reasonrank-mcp")

    async def call(self, work: Callable[[], T]) -> T:
        """``work`` on the one worker thread; a UserError becomes the tool's error result."""
        try:
            return await asyncio.wrap_future(self._worker.submit(work))
        except UserError as error:
            raise ToolError(str(error)) from None

    def search(self, query: str, top_k: int) -> dict[str, Any]:
        request = self.first_stage.search([_query(query)], hits=self.settings.hits, progress=False,
                                          text_depth=self.reranker.text_depth)[0]
        return _answer(self.reranker.rerank_request(request), top_k)

    def rerank(self, query: str, documents: list[DocumentIn], top_k: int) -> dict[str, Any]:
        docids = [d.docid for d in documents]
        if len(set(docids)) != len(docids):
            raise UserError("duplicate docids among the documents: each document needs its own docid")
        request = Request(_query(query), tuple(Candidate(d.docid, d.text) for d in documents))
        return _answer(self.reranker.rerank_request(request), top_k)

    def close(self) -> None:
        self._worker.shutdown(wait=True)
        self.reranker.close()
        self.first_stage.close()
        if self.scorer is not None:
            self.scorer.close()


def _query(text: str) -> Query:
    if not text.strip():
        raise UserError("the query is empty: pass the question to search for")
    return Query(f"mcp-{uuid.uuid4().hex[:12]}", text)


def _answer(ranking: Ranking, top_k: int) -> dict[str, Any]:
    """The best ``top_k`` documents with their text, score, explanation and evidence (character offsets)."""
    texts = {item.docid: item.text for item in ranking.items}
    results = []
    for record in explanation_records(ranking, top_k):
        for key in ("qid", "model"):
            record.pop(key)
        results.append({**record, "text": texts[record["docid"]]})
    return {"model": ranking.model, "results": results}


def _top_k(value: int) -> int:
    if not 1 <= value <= MAX_RESULTS:
        raise ToolError(f"top_k must be between 1 and {MAX_RESULTS}, got {value}")
    return value


def build_server(service: SearchService) -> MCPServer:
    """The MCP server with the ``search`` and ``rerank`` tools of ``service``."""
    settings = service.settings
    server = MCPServer(
        "reasonrank",
        instructions=f"Search {settings.index} ({settings.first_stage}, reranked by {settings.reranker}) or rerank "
        "your own documents; each result carries the passage, its score, an explanation where the reranker writes "
        "one and evidence spans as character offsets into the passage.",
    )

    @server.tool(description=f"Search the index ({settings.first_stage} top {settings.hits}, reranked by "
                             f"{settings.reranker}); the top_k documents best first, with explanations and evidence.")
    async def search(query: str, top_k: int = 10) -> dict[str, Any]:
        top_k = _top_k(top_k)
        return await service.call(lambda: service.search(query, top_k))

    @server.tool(description=f"Rerank the given documents for the query with {settings.reranker}; the top_k best "
                             "first, with explanations and evidence.")
    async def rerank(query: str, documents: list[DocumentIn], top_k: int = 10) -> dict[str, Any]:
        top_k = _top_k(top_k)
        return await service.call(lambda: service.rerank(query, documents, top_k))

    return server
