"""``POST /v1/rerank`` and ``/v2/rerank``: the rerank API as Cohere defines it, which vLLM, Jina, TEI and Infinity
also serve, so that existing clients (the ``cohere`` SDK, LangChain's ``CohereRerank``) call a reasonrank model by
changing only their base URL.

Request: ``model`` (optional; when given it must name the served model), ``query``, ``documents`` (strings, or
objects with ``text``; ``rank_fields`` selects other fields of objects, read as ``field: value`` lines),
``top_n``, ``return_documents``, ``max_tokens_per_doc`` (documents cut to that many whitespace-separated tokens:
rerankers tokenise differently, and each also cuts to its own model's limit). Accepted and ignored:
``max_chunks_per_doc`` (v1) and ``priority`` (v2). Unknown fields are ignored, as Cohere-compatible servers do.

Answer: ``id``, ``results`` best first, each ``index`` (position in ``documents``), ``relevance_score`` (the
reranker's own score, as ``/rerank`` gives it: not squashed into [0, 1], so compare scores within one answer only)
and ``document`` (``{"text": ...}``) when ``return_documents`` is true, plus ``meta`` (``api_version``,
``billed_units.search_units``, ``warnings``). reasonrank's extension: ``"return_explanations": true`` adds each
result's ``explanation`` and ``label`` (absent where the reranker wrote none); from the SDK pass it with
``request_options={"additional_body_parameters": {"return_explanations": True}}`` and read ``result.explanation``.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from reasonrank.serve.app import ErrorOut, NumberOnly, PositiveInt, ServiceLimits
from reasonrank.serve.app import _error as error_response
from reasonrank.types import Candidate, Query, Ranking
from reasonrank.types import Request as RerankRequest

RerankCall = Callable[[RerankRequest, Request], Awaitable[Ranking]]  # the HTTP request: to see the caller leave
DOCUMENTS_PER_SEARCH_UNIT = 100  # Cohere bills one search unit per query and 100 documents


class DocumentIn(BaseModel):
    """A structured document: ``text``, and any other fields (which ``rank_fields`` may select)."""

    model_config = ConfigDict(extra="allow")

    text: str = Field(description="The text to rerank (unless rank_fields selects other fields)")


class CohereRerankIn(BaseModel):
    # Numbers and booleans as the schema states them: "5" or true for an integer is a 422, not 5 or 1.
    model_config = ConfigDict(extra="ignore")

    model: str | None = Field(None, description="The served model's name (GET /health); omit to use it")
    query: str = Field(min_length=1, description="The search query")
    documents: list[str | DocumentIn] = Field(description="Texts, or objects with text, in any order")
    top_n: PositiveInt | None = Field(
        None, description="Return only the best top_n results (all are reranked)"
    )
    return_documents: bool | None = Field(False, strict=True, description="Echo each result's document text")
    max_tokens_per_doc: PositiveInt | None = Field(
        None,
        description="Cut each document to this many whitespace-separated tokens before reranking",
    )
    rank_fields: list[str] | None = Field(
        None, description="For object documents: the fields to rerank on, as 'field: value' lines (text if none)"
    )
    max_chunks_per_doc: PositiveInt | None = Field(None, description="Accepted for v1 clients; ignored")
    priority: Annotated[int, NumberOnly] | None = Field(
        None, description="Accepted for v2 clients; ignored (requests are served in order)"
    )
    return_explanations: bool | None = Field(
        False, strict=True, description="reasonrank extension: add each result's explanation and label"
    )


class DocumentOut(BaseModel):
    text: str


class CohereResultOut(BaseModel):
    index: int = Field(description="Position of the document in the request's documents")
    relevance_score: float = Field(description="The reranker's score; higher is more relevant")
    document: DocumentOut | None = Field(None, description="Present when return_documents is true")
    explanation: str | None = Field(None, description="With return_explanations: the model's reasoning, if any")
    label: int | None = Field(None, description="With return_explanations: the graded label written, if any")


class ApiVersionOut(BaseModel):
    version: str


class BilledUnitsOut(BaseModel):
    search_units: int


class CohereMetaOut(BaseModel):
    api_version: ApiVersionOut
    billed_units: BilledUnitsOut
    warnings: list[str] | None = None


class CohereRerankOut(BaseModel):
    id: str
    results: list[CohereResultOut]
    meta: CohereMetaOut


def document_text(document: str | DocumentIn, rank_fields: list[str] | None) -> str:
    """The text a reranker reads: a string as it is; an object's ``rank_fields`` it has, as ``field: value`` lines
    (non-string values as JSON), or its ``text`` when it has none of them."""
    if isinstance(document, str):
        return document
    fields = {**(document.model_extra or {}), "text": document.text}
    chosen = [name for name in rank_fields or () if name in fields]
    if not chosen:
        return document.text
    return "\n".join(
        f"{name}: {value if isinstance(value, str) else json.dumps(value)}"
        for name, value in ((name, fields[name]) for name in chosen)
    )


def cut_tokens(text: str, limit: int | None) -> tuple[str, bool]:
    """``text`` cut to its first ``limit`` whitespace-separated tokens, and whether anything was cut."""
    if limit is None:
        return text, False
    tokens = text.split()
    if len(tokens) <= limit:
        return text, False
    return " ".join(tokens[:limit]), True


def build_router(model_name: str | None, rerank: RerankCall | None, limits: ServiceLimits) -> APIRouter:
    """The Cohere-compatible routes around the service's one model call (batched or serialised)."""
    router = APIRouter(tags=["cohere-compatible"])
    errors = {
        404: {"model": ErrorOut, "description": "model names another model"},
        413: {"model": ErrorOut},
        422: {"model": ErrorOut},
        503: {"model": ErrorOut},
    }

    async def answer(body: CohereRerankIn, version: Literal["1", "2"], http: Request) -> CohereRerankOut | JSONResponse:
        if rerank is None or model_name is None:
            return error_response(503, "no model is loaded: start the service with --reranker NAME")
        if body.model is not None and body.model != model_name:
            return error_response(
                404, f"model {body.model!r} is not served here: this service serves {model_name!r} (or omit model)"
            )
        if len(body.documents) > limits.max_candidates:
            return error_response(
                422,
                f"documents: {len(body.documents)} given, at most {limits.max_candidates} allowed "
                "(split the list or restart with a larger --max-candidates)",
            )
        texts = [document_text(document, body.rank_fields) for document in body.documents]
        cut = [cut_tokens(text, body.max_tokens_per_doc) for text in texts]
        request_id = str(uuid.uuid4())
        candidates = tuple(Candidate(str(index), text) for index, (text, _) in enumerate(cut))
        query = Query(request_id, body.query)
        items = (await rerank(RerankRequest(query, candidates), http)).items if candidates else ()
        warnings = []
        if any(was_cut for _, was_cut in cut):
            count = sum(was_cut for _, was_cut in cut)
            warnings.append(f"{count} document(s) cut to max_tokens_per_doc={body.max_tokens_per_doc} tokens")
        results = [
            CohereResultOut(
                index=int(item.docid),
                relevance_score=float(item.score),
                document=DocumentOut(text=texts[int(item.docid)]) if body.return_documents else None,
                explanation=item.explanation if body.return_explanations else None,
                label=None if not body.return_explanations or item.label is None else int(item.label),
            )
            for item in items[: body.top_n]
        ]
        units = max(1, math.ceil(len(body.documents) / DOCUMENTS_PER_SEARCH_UNIT))
        meta = CohereMetaOut(
            api_version=ApiVersionOut(version=version),
            billed_units=BilledUnitsOut(search_units=units),
            warnings=warnings or None,
        )
        return CohereRerankOut(id=request_id, results=results, meta=meta)

    @router.post(
        "/v1/rerank", response_model=CohereRerankOut, response_model_exclude_none=True, responses=errors,
        summary="Rerank documents (Cohere v1 API)",
    )
    async def rerank_v1(body: CohereRerankIn, http: Request) -> CohereRerankOut | JSONResponse:
        return await answer(body, "1", http)

    @router.post(
        "/v2/rerank", response_model=CohereRerankOut, response_model_exclude_none=True, responses=errors,
        summary="Rerank documents (Cohere v2 API)",
    )
    async def rerank_v2(body: CohereRerankIn, http: Request) -> CohereRerankOut | JSONResponse:
        return await answer(body, "2", http)

    return router
