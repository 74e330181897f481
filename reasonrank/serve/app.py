"""One reranker behind HTTP, for Anserini (Java) and other non-Python callers (command: ``reasonrank.serve``).

``POST /rerank`` takes a query and its candidates and answers the reranked list; ``GET /health`` names the model.
The model is loaded once, before the server accepts connections. Rerankers are not thread-safe (they hold one
torch model or one generation backend), so every model call goes through one :class:`DynamicBatcher`: concurrent
requests queue in the event loop and share model calls. A caller that hangs up before its batch starts is
dropped from the queue and costs no model time.

Bad input is always a 4xx with a JSON body ``{"error": "<one line>", "detail": [...]}``, never a 500: an oversized
body is 413 (checked before it is parsed), and malformed JSON, missing fields, too many candidates or duplicate
docids are 422.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from reasonrank.errors import UserError
from reasonrank.rerank.base import Reranker
from reasonrank.serve.batching import DEFAULT_BATCHING, Batching, DynamicBatcher
from reasonrank.types import Candidate, Query, Ranking
from reasonrank.types import Request as RerankRequest

DEFAULT_MAX_CANDIDATES = 1000
DEFAULT_MAX_REQUEST_BYTES = 16 * 1024 * 1024  # 1000 passages of a few KB each, with room to spare


@dataclass(frozen=True, slots=True)
class ServiceLimits:
    max_candidates: int = DEFAULT_MAX_CANDIDATES
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES


def _json_number(value: Any) -> Any:
    if isinstance(value, str | bool):  # pydantic would read "5" as 5 and true as 1, which the schema does not allow
        raise ValueError("must be a JSON number")
    return value


# A number as the schema states it: a string or a boolean is a 422 (an integral 5.0 is still an integer, as in JSON
# Schema).
NumberOnly = BeforeValidator(_json_number)
PositiveInt = Annotated[int, Field(ge=1), NumberOnly]


class CandidateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    docid: str = Field(min_length=1, description="Document id, unique within the request")
    text: str = Field(description="The passage text the reranker reads")
    title: str = Field(
        "",
        description="The document's title when it has one and `text` does not hold it (BEIR-style): the reranker "
        "reads `title text`, and formats that place the title themselves (DeAR) get it there",
    )
    score: Annotated[float, NumberOnly] = Field(
        0.0, allow_inf_nan=False, description="First-stage score, finite (rerankers that fuse scores may use it)"
    )


class RerankIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: str = Field(min_length=1, description="The query text")
    qid: str | None = Field(None, min_length=1, description="Echoed back; a random id is used when absent")
    candidates: list[CandidateIn] = Field(description="Candidates in first-stage order")
    top_k: PositiveInt | None = Field(None, description="Return only the best top_k (all are reranked)")

    @model_validator(mode="after")
    def _unique_docids(self) -> RerankIn:
        seen: set[str] = set()
        duplicates = sorted({c.docid for c in self.candidates if c.docid in seen or seen.add(c.docid)})
        if duplicates:
            raise ValueError(f"duplicate docids: {', '.join(duplicates[:5])}; each candidate must appear once")
        return self


class RankedOut(BaseModel):
    docid: str
    rank: int
    score: float
    explanation: str | None = None
    label: int | None = None


class RerankOut(BaseModel):
    qid: str
    model: str
    ranking: list[RankedOut]


class HealthOut(BaseModel):
    model: str | None
    ready: bool


class ErrorOut(BaseModel):
    error: str = Field(description="One line: what is wrong and what to do")
    detail: list[dict[str, Any]] | None = None


class AsciiJSONResponse(JSONResponse):
    """JSON with non-ASCII characters escaped: text a client sent with a lone surrogate (legal in JSON, not in UTF-8)
    can be echoed back (docids, qids, documents, field names in errors) instead of failing to encode."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode("ascii")


def _error(status: int, message: str, detail: list[dict[str, Any]] | None = None) -> JSONResponse:
    return AsciiJSONResponse(ErrorOut(error=message, detail=detail).model_dump(exclude_none=True), status_code=status)


class BodyLimit:
    """ASGI middleware: refuse bodies over ``max_bytes`` with 413 before anything parses them.

    A declared Content-Length is checked first; chunked bodies are read up to the limit and then replayed
    to the application, so a client can never make the server buffer more than ``max_bytes``.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = _error(413, f"request body exceeds {self.max_bytes} bytes: send fewer or shorter candidates")
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await too_large(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # client went away
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await too_large(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


class CallerGone(Exception):
    """The client hung up before its ranking was ready: nobody is owed an answer."""


async def _until_disconnected(http: Request) -> None:
    # The body has been read, so the next ASGI message is the client hanging up (servers block until then).
    while (await http.receive())["type"] != "http.disconnect":
        pass


def disconnect_aware(batcher: DynamicBatcher):
    """``batcher.rerank`` for an HTTP request: if the client hangs up first, its place in the queue is cancelled
    (the batcher skips it, so it costs no model time) and :class:`CallerGone` is raised."""

    async def rerank(request: RerankRequest, http: Request) -> Ranking:
        ranking = asyncio.ensure_future(batcher.rerank(request))
        gone = asyncio.ensure_future(_until_disconnected(http))
        done: set[asyncio.Future[Any]] = set()
        try:
            done, _ = await asyncio.wait({ranking, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
            if ranking not in done:
                ranking.cancel()
        if ranking not in done:
            raise CallerGone
        return ranking.result()

    return rerank


def _candidate(candidate: CandidateIn) -> Candidate:
    if not candidate.title:
        return Candidate(candidate.docid, candidate.text, candidate.score)
    return Candidate(candidate.docid, f"{candidate.title} {candidate.text}", candidate.score, candidate.title)


def _validation_message(errors: Sequence[dict[str, Any]]) -> str:
    first = errors[0]
    if first.get("type") == "json_invalid":
        reason = str(first.get("ctx", {}).get("error", "JSON decode error"))
        position = first.get("loc", ("body", "?"))[-1]
        return f"the request body is not valid JSON ({reason} at character {position}): send a JSON object"
    location = ".".join(str(part) for part in first.get("loc", ()) if part != "body") or "body"
    message = str(first.get("msg", "invalid request")).removeprefix("Value error, ")
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{location}: {message}{more}"


def create_app(
    reranker: Reranker | None, limits: ServiceLimits = ServiceLimits(), batching: Batching = DEFAULT_BATCHING
) -> FastAPI:
    """The service around an already loaded reranker; ``None`` gives an app that only reports not ready.

    Concurrent requests of both APIs share one :class:`DynamicBatcher` (``batching.max_batch_size=1``: one request
    per model call).
    """
    from reasonrank.serve.cohere import build_router

    batcher = DynamicBatcher(reranker, batching) if reranker is not None else None
    rerank_call = disconnect_aware(batcher) if batcher is not None else None

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        if batcher is not None:
            await batcher.close()
            print(f"reasonrank.serve: {batcher.stats.summary()}", file=sys.stderr)

    app = FastAPI(
        title="reasonrank reranking service",
        version="1",
        description="Rerank one query's candidates with a reasonrank reranker: reasonrank's own /rerank (docids, "
        "explanations, labels) and the Cohere-compatible /v1/rerank and /v2/rerank. Concurrent requests are "
        "batched into shared model calls.",
        lifespan=lifespan,
        default_response_class=AsciiJSONResponse,
    )

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, error: RequestValidationError) -> JSONResponse:
        errors = list(error.errors())
        # Only these keys: ``input`` could echo a huge body back and ``ctx`` may hold exception objects.
        detail = [{key: value for key, value in e.items() if key in ("loc", "msg", "type")} for e in errors]
        return _error(422, _validation_message(errors), detail)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, error: StarletteHTTPException) -> JSONResponse:
        if error.status_code == 400:  # FastAPI could not decode the body at all (not UTF-8): malformed JSON, as above
            return _error(422, "the request body is not valid JSON (it must be UTF-8 text): send a JSON object")
        return _error(error.status_code, str(error.detail))

    @app.exception_handler(UserError)
    async def _user(_: Request, error: UserError) -> JSONResponse:
        return _error(422, str(error))

    @app.exception_handler(CallerGone)
    async def _gone(_: Request, __: CallerGone) -> Response:
        return Response(status_code=499)  # nginx's "client closed request"; nobody reads it

    @app.exception_handler(Exception)
    async def _failed(_: Request, error: Exception) -> JSONResponse:
        # A fault of the model or of reasonrank, not of the request; still JSON so clients can show it.
        first_line = (str(error).splitlines() or [""])[0]
        return _error(500, f"the reranker failed ({type(error).__name__}: {first_line}): see the service log")

    @app.get("/health", response_model=HealthOut)
    async def health() -> HealthOut:
        return HealthOut(model=reranker.name if reranker else None, ready=reranker is not None)

    @app.post(
        "/rerank",
        response_model=RerankOut,
        responses={413: {"model": ErrorOut}, 422: {"model": ErrorOut}, 503: {"model": ErrorOut}},
    )
    async def rerank(body: RerankIn, http: Request) -> RerankOut | JSONResponse:
        if reranker is None or rerank_call is None:
            return _error(503, "no model is loaded: start the service with --reranker NAME")
        if len(body.candidates) > limits.max_candidates:
            return _error(
                422,
                f"candidates: {len(body.candidates)} given, at most {limits.max_candidates} allowed "
                "(split the list or restart with a larger --max-candidates)",
            )
        qid = body.qid or uuid.uuid4().hex
        request = RerankRequest(
            Query(qid, body.query), tuple(_candidate(c) for c in body.candidates)
        )
        items = (await rerank_call(request, http)).items[: body.top_k] if request.candidates else ()
        return RerankOut(
            qid=qid,
            model=reranker.name,
            ranking=[
                RankedOut(
                    docid=i.docid,
                    rank=i.rank,
                    score=float(i.score),
                    explanation=i.explanation,
                    label=None if i.label is None else int(i.label),
                )
                for i in items
            ],
        )

    app.include_router(build_router(reranker.name if reranker else None, rerank_call, limits))
    _declare_candidate_limit(app, limits.max_candidates)
    app.add_middleware(BodyLimit, max_bytes=limits.max_request_bytes)
    return app


def _declare_candidate_limit(app: FastAPI, max_candidates: int) -> None:
    """Put ``--max-candidates`` into the served schema (``maxItems``), so clients and fuzzers see the limit."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            models = generate()["components"]["schemas"]
            models["RerankIn"]["properties"]["candidates"]["maxItems"] = max_candidates
            models["CohereRerankIn"]["properties"]["documents"]["maxItems"] = max_candidates
        return app.openapi_schema

    app.openapi = openapi


def openapi_schema() -> dict[str, Any]:
    """The service's OpenAPI document; it does not depend on the model."""
    return create_app(None).openapi()


def write_openapi(path: str | Path) -> None:
    from reasonrank.io.runs import atomic_write
    from reasonrank.io.text import check_writable

    check_writable(path, "--write-openapi")  # a folder or a path under a file is one line, not a traceback
    with atomic_write(path) as out:
        out.write(json.dumps(openapi_schema(), indent=2, sort_keys=True) + "\n")


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


@contextmanager
def running_service(
    reranker: str, *options: str, host: str = "127.0.0.1", port: int | None = None, start_timeout: float = 300.0
) -> Iterator[str]:
    """Run ``python -m reasonrank.serve`` in a child process until the block ends; yields its base URL.

    For tests, benchmarks and notebooks. Waits until ``/health`` answers ready (model loaded); if the child
    exits first or ``start_timeout`` passes, raises with the end of its log.
    """
    import httpx

    port = port or free_port(host)
    url = f"http://{host}:{port}"
    command = [sys.executable, "-m", "reasonrank.serve", "--reranker", reranker, "--host", host, "--port", str(port),
               "--log-level", "warning", *options]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    with tempfile.TemporaryFile("w+", encoding="utf-8") as log:
        child = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            deadline = time.monotonic() + start_timeout
            while True:
                if child.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    tail = log.read()[-2000:]
                    raise RuntimeError(f"the reranking service did not start ({' '.join(command)}):\n{tail}")
                try:
                    if httpx.get(f"{url}/health", timeout=5.0).json().get("ready"):
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.5)
            yield url
        finally:
            child.terminate()
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
