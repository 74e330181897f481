"""Dynamic batching: concurrent requests share model calls, each is answered once, answers equal one-at-a-time ones."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Sequence

import httpx
import pytest

from reasonrank.rerank.base import ScoringReranker
from reasonrank.serve.app import create_app
from reasonrank.serve.batching import Batching, DynamicBatcher
from reasonrank.types import Candidate, Judgment, Query, Request


def overlap(query: str, text: str) -> float:
    return float(len(set(query.lower().split()) & set(text.lower().split())))


class RecordingReranker(ScoringReranker):
    """Word-overlap scores; records every call's size and whether two calls ever ran at once."""

    name = "word-overlap"

    def __init__(self, pause: float = 0.05, fail_on: str | None = None) -> None:
        self.pause, self.fail_on = pause, fail_on
        self.sizes: list[int] = []
        self.active = self.most_active = 0
        self._guard = threading.Lock()

    def judge(self, requests: Sequence[Request]) -> list[list[Judgment]]:
        with self._guard:
            self.active += 1
            self.most_active = max(self.most_active, self.active)
            self.sizes.append(len(requests))
        try:
            time.sleep(self.pause)  # the model is busy: requests arriving now form the next batch
            if self.fail_on and any(r.query.text == self.fail_on for r in requests):
                raise RuntimeError("CUDA out of memory")
            return [[Judgment(overlap(r.query.text, c.text)) for c in r.candidates] for r in requests]
        finally:
            with self._guard:
                self.active -= 1


@pytest.fixture(scope="module")
def dl19_requests(shared_data) -> list[Request]:
    """48 requests: DL19 queries, each with 20 passages of the mini corpus (a different slice per request)."""
    folder = shared_data / "msmarco-dl19-mini"
    topics = [line.split("\t", 1) for line in (folder / "topics.dl19-passage.tsv").read_text().splitlines()]
    with (folder / "corpus.jsonl").open() as lines:
        passages = [json.loads(line) for line, _ in zip(lines, range(400), strict=False)]
    candidates = [Candidate(p["_id"], f"{p['title']} {p['text']}".strip()) for p in passages]
    return [
        Request(Query(f"r{i}", topics[i % len(topics)][1]), tuple(candidates[(7 * i) % 380 : (7 * i) % 380 + 20]))
        for i in range(48)
    ]


async def _post_all(app, requests: Sequence[Request]) -> list[httpx.Response]:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)  # a model failure must come back as a 500
    async with httpx.AsyncClient(transport=transport, base_url="http://service") as http:
        return await asyncio.gather(*(
            http.post("/rerank", json={"qid": r.query.qid, "query": r.query.text,
                                       "candidates": [{"docid": c.docid, "text": c.text} for c in r.candidates]})
            for r in requests
        ))


def test_concurrent_requests_share_model_calls_and_each_gets_its_own_answer(dl19_requests):
    reranker = RecordingReranker()
    answers = asyncio.run(_post_all(create_app(reranker, batching=Batching(max_batch_size=8)), dl19_requests))
    assert [a.status_code for a in answers] == [200] * len(dl19_requests)
    assert [a.json()["qid"] for a in answers] == [r.query.qid for r in dl19_requests]
    assert sum(reranker.sizes) == len(dl19_requests)  # each request reranked exactly once
    assert max(reranker.sizes) == 8 and len(reranker.sizes) < len(dl19_requests)  # batched, never over the bound
    assert reranker.most_active == 1  # the model never runs concurrently with itself
    alone = RecordingReranker(pause=0)
    for answer, request in zip(answers, dl19_requests, strict=True):
        expected = alone.rerank_request(request)
        assert [(r["docid"], r["score"]) for r in answer.json()["ranking"]] == [(i.docid, i.score) for i in expected]


def test_batch_size_one_is_one_request_per_call(dl19_requests):
    reranker = RecordingReranker(pause=0.01)
    answers = asyncio.run(_post_all(create_app(reranker, batching=Batching(max_batch_size=1)), dl19_requests[:12]))
    assert all(a.status_code == 200 for a in answers)
    assert reranker.sizes == [1] * 12


def test_a_failing_request_fails_alone(dl19_requests):
    """The batch holding the bad request is redone one request at a time: only that one gets the 500."""
    bad = dl19_requests[5].query.text
    reranker = RecordingReranker(pause=0.02, fail_on=bad)
    requests = dl19_requests[:10]
    answers = asyncio.run(_post_all(create_app(reranker, batching=Batching(max_batch_size=10)), requests))
    statuses = {r.query.qid: a.status_code for r, a in zip(requests, answers, strict=True)}
    failing = {r.query.qid for r in requests if r.query.text == bad}
    assert {qid for qid, status in statuses.items() if status == 500} == failing
    assert all(status == 200 for qid, status in statuses.items() if qid not in failing)
    assert "CUDA out of memory" in answers[5].json()["error"]


def test_a_caller_that_went_away_costs_no_model_time(dl19_requests):
    async def scenario(batcher: DynamicBatcher) -> list:
        busy = asyncio.create_task(batcher.rerank(dl19_requests[0]))  # occupies the model
        await asyncio.sleep(0.02)
        gone = asyncio.create_task(batcher.rerank(dl19_requests[1]))
        kept = asyncio.create_task(batcher.rerank(dl19_requests[2]))
        await asyncio.sleep(0.01)
        gone.cancel()
        results = [await busy, await kept]
        await batcher.close()
        return results

    reranker = RecordingReranker(pause=0.1)
    first, kept = asyncio.run(scenario(DynamicBatcher(reranker, Batching(max_batch_size=4))))
    assert (first.query.qid, kept.query.qid) == ("r0", "r2")
    assert reranker.sizes == [1, 1]  # the cancelled request never reached the model


def test_bounds_are_checked():
    with pytest.raises(ValueError, match="max_batch_size"):
        Batching(max_batch_size=0)
    with pytest.raises(ValueError, match="max_wait_ms"):
        Batching(max_wait_ms=-1)


@pytest.mark.slow
def test_the_encoder_default_batched_equals_one_at_a_time(dl19_requests):
    """minilm-hybrid (the default) behind the batcher: 12 concurrent requests, float-for-float the answers of
    reranking each request alone."""
    from reasonrank.rerank.registry import load_reranker

    reranker = load_reranker("minilm-hybrid", progress=False)
    requests = dl19_requests[:12]
    alone = [reranker.rerank_request(r) for r in requests]

    async def batched() -> tuple[list, list[int]]:
        batcher = DynamicBatcher(reranker, Batching(max_batch_size=6, max_wait_ms=20))
        rankings = await asyncio.gather(*(batcher.rerank(r) for r in requests))
        sizes = dict(batcher.stats.sizes)
        await batcher.close()
        return rankings, sizes

    rankings, sizes = asyncio.run(batched())
    assert max(sizes) > 1  # requests really shared model calls
    assert [[(i.docid, i.score) for i in r] for r in rankings] == [[(i.docid, i.score) for i in r] for r in alone]
