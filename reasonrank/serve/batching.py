"""Dynamic batching: requests that arrive while the model is busy are reranked together in one model call.

One consumer task owns the model. When the model is free, it takes the first waiting request and the ones queued
behind it, until ``max_batch_size`` requests are gathered or the next one would take the call over
``max_batch_candidates`` candidates (it then opens the next call), hands the group to ``reranker.rerank_many`` in a
worker thread, and resolves each caller's future with its own ranking. Requests that arrive during a model call are
the next batch, so under load batches fill up without any waiting; ``max_wait_ms`` (0 by default) lets a lone
request wait that long for company.

Guarantees:
- every request is answered exactly once (a ranking or the exception), in its own future; a caller that went away
  (cancelled future) is skipped without disturbing the rest of its batch;
- the model is never called concurrently with itself;
- a failing batch is retried one request at a time, so one bad request fails alone and the others still succeed;
- answers equal one-at-a-time answers: only rerankers that state it (``Reranker.independent_queries``: the
  encoders, and fusion, cascades and evidence over them) get several requests per call. Generative rerankers pad
  the prompts of all queries of a call into shared generation batches, so their answers may move with the batch
  mix (docs/serving.md has the measurements); they stay at one request per call unless ``batch_generative`` says
  that speed matters more than that.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import anyio

from reasonrank.rerank.base import Reranker
from reasonrank.types import Ranking, Request

DEFAULT_MAX_BATCH_SIZE = 16
# No waiting by default: requests that arrive during a model call already form the next batch, and a lone request
# that waited for company would only be slower (measured: 5 ms cost a lone 1-passage request 0.67x throughput, and
# bought nothing at 16 clients; docs/serving.md).
DEFAULT_MAX_WAIT_MS = 0.0
# Enough candidates per call for the encoders to run full forward passes (16 requests of 10 passages fit, and cost
# 2.2 ms per text against 2.1 ms in calls of 1,616), few enough that requests of 100 passages are not held back
# behind 15 others: batching those bought no throughput and cost p95 latency (docs/serving.md).
DEFAULT_MAX_BATCH_CANDIDATES = 256


@dataclass(frozen=True, slots=True)
class Batching:
    """How requests are gathered: at most ``max_batch_size`` per model call, holding at most
    ``max_batch_candidates`` candidates together (a larger request still gets a call of its own); a lone request
    waits ``max_wait_ms``; ``batch_generative`` also batches rerankers whose answers depend on the batch mix (see
    :func:`batch_size_for`)."""

    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE
    max_wait_ms: float = DEFAULT_MAX_WAIT_MS
    batch_generative: bool = False
    max_batch_candidates: int = DEFAULT_MAX_BATCH_CANDIDATES

    def __post_init__(self) -> None:
        if self.max_batch_size < 1:
            raise ValueError(f"max_batch_size must be at least 1, got {self.max_batch_size}")
        if not self.max_wait_ms >= 0:
            raise ValueError(f"max_wait_ms must be 0 or more, got {self.max_wait_ms}")
        if self.max_batch_candidates < 1:
            raise ValueError(f"max_batch_candidates must be at least 1, got {self.max_batch_candidates}")


DEFAULT_BATCHING = Batching()


def batch_size_for(reranker: Reranker, batching: Batching) -> int:
    """Requests per model call for ``reranker``: ``max_batch_size`` where batching keeps one-at-a-time answers
    (or the caller opted in with ``batch_generative``), else 1."""
    return batching.max_batch_size if reranker.independent_queries or batching.batch_generative else 1


@dataclass(slots=True)
class BatchStats:
    """How many model calls served how many requests, and how many callers left before their call."""

    requests: int = 0
    batches: int = 0
    largest: int = 0
    sizes: dict[int, int] = field(default_factory=dict)
    abandoned: int = 0

    def summary(self) -> str:
        return (f"{self.requests} requests in {self.batches} model calls (largest {self.largest}); "
                f"{self.abandoned} callers hung up before their call")

    def record(self, size: int) -> None:
        self.requests += size
        self.batches += 1
        self.largest = max(self.largest, size)
        self.sizes[size] = self.sizes.get(size, 0) + 1


@dataclass(slots=True)
class _Pending:
    request: Request
    answer: asyncio.Future[Ranking]


class DynamicBatcher:
    """Gathers concurrent :meth:`rerank` calls into ``reranker.rerank_many`` calls of at most ``max_batch_size``.

    Create it inside the running event loop (e.g. in the app's lifespan); :meth:`close` stops the consumer.
    ``max_batch_size=1`` serialises requests one at a time, as a server without batching does, and so does a
    reranker whose answers depend on the batch mix unless ``batch_generative`` is set.
    """

    def __init__(self, reranker: Reranker, batching: Batching = DEFAULT_BATCHING) -> None:
        self.reranker = reranker
        self.max_batch_size = batch_size_for(reranker, batching)
        self.max_wait = batching.max_wait_ms / 1000.0
        self.max_candidates = batching.max_batch_candidates
        self.stats = BatchStats()
        # One token: the reranker runs in one worker thread at a time, never concurrently with itself.
        self._model_slot = anyio.CapacityLimiter(1)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._consumer: asyncio.Task[None] | None = None
        self._in_flight: list[_Pending] = []
        # A request taken from the queue that did not fit the candidate budget of its batch: it opens the next one.
        self._held: _Pending | None = None

    async def rerank(self, request: Request) -> Ranking:
        """The ranking of ``request``, computed in whichever batch it joins."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            # First call, or a new event loop (a test client opens one per request): the queue and its consumer
            # belong to one loop, so start both afresh in this one.
            self._loop, self._queue = loop, asyncio.Queue()
            self._consumer = loop.create_task(self._consume(), name="reasonrank-batcher")
        answer: asyncio.Future[Ranking] = loop.create_future()
        await self._queue.put(_Pending(request, answer))
        return await answer

    async def close(self) -> None:
        if self._consumer is not None:
            self._consumer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._consumer
            self._consumer, self._loop = None, None
        held = [self._held] if self._held is not None else []
        left = [*self._in_flight, *held, *(self._queue.get_nowait() for _ in range(self._queue.qsize()))]
        for pending in left:  # nothing may be left without an answer
            _settle(pending, error=RuntimeError("the reranking service is shutting down"))
        self._in_flight, self._held = [], None

    async def _gather(self) -> list[_Pending]:
        first, self._held = self._held or await self._queue.get(), None
        batch, candidates = [first], len(first.request.candidates)
        deadline = time.monotonic() + self.max_wait
        while len(batch) < self.max_batch_size:
            if not self._queue.empty():
                pending = self._queue.get_nowait()
            else:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    pending = await asyncio.wait_for(self._queue.get(), left)
                except TimeoutError:
                    break
            if candidates + len(pending.request.candidates) > self.max_candidates:
                self._held = pending
                break
            batch.append(pending)
            candidates += len(pending.request.candidates)
        kept = [p for p in batch if not p.answer.done()]  # callers that disconnected need no model time
        self.stats.abandoned += len(batch) - len(kept)
        return kept

    async def _consume(self) -> None:
        while True:
            batch = await self._gather()
            if not batch:
                continue
            self.stats.record(len(batch))
            self._in_flight = batch
            try:
                rankings = await self._call([p.request for p in batch])
            except Exception as error:
                if len(batch) == 1:
                    _settle(batch[0], error=error)
                else:
                    # One bad request must not fail its neighbours: redo the batch one request at a time.
                    for pending in batch:
                        await self._answer_alone(pending)
            else:
                for pending, ranking in zip(batch, rankings, strict=True):
                    _settle(pending, ranking)
            self._in_flight = []

    async def _answer_alone(self, pending: _Pending) -> None:
        try:
            _settle(pending, (await self._call([pending.request]))[0])
        except Exception as error:
            _settle(pending, error=error)

    async def _call(self, requests: Sequence[Request]) -> list[Ranking]:
        rankings = await anyio.to_thread.run_sync(self.reranker.rerank_many, list(requests), limiter=self._model_slot)
        if len(rankings) != len(requests):
            raise RuntimeError(f"{self.reranker.name} answered {len(rankings)} rankings for {len(requests)} requests")
        return rankings


def _settle(pending: _Pending, ranking: Ranking | None = None, error: BaseException | None = None) -> None:
    """Answer ``pending`` once; a caller that already went away (cancelled future) is left alone."""
    if pending.answer.done():
        return
    if error is not None:
        pending.answer.set_exception(error)
    else:
        pending.answer.set_result(ranking)
