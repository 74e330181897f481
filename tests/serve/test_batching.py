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

    def __init__(self, pause: float = 0.05, fail_on: str | None = None, independent: bool = True) -> None:
        self.pause, self.fail_on, self.independent = pause, fail_on, independent
        self.sizes: list[int] = []
        self.candidates: list[int] = []
        self.active = self.most_active = 0
        self._guard = threading.Lock()

    @property
    def independent_queries(self) -> bool:
        return self.independent

    def judge(self, requests: Sequence[Request]) -> list[list[Judgment]]:
        with self._guard:
            self.active += 1
            self.most_active = max(self.most_active, self.active)
            self.sizes.append(len(requests))
            self.candidates.append(sum(len(r.candidates) for r in requests))
        try:
            time.sleep(self.pause)  # the model is busy: requests arriving now form the next batch
            if self.fail_on and any(r.query.text == self.fail_on for r in requests):
                raise RuntimeError("CUDA out of memory")
            return [[Judgment(overlap(r.query.text, c.text)) for c in r.candidates] for r in requests]
        finally:
            with self._guard:
                self.active -= 1


@pytest.fixture(scope="module")
def dl19_requests(test_data) -> list[Request]:
    """48 requests: DL19 queries, each with 20 passages of the mini corpus (a different slice per request)."""
    folder = test_data / "msmarco-dl19-mini"
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


def test_a_call_holds_at_most_max_batch_candidates_and_a_larger_request_runs_alone(dl19_requests):
    passages = list({c.docid: c for r in dl19_requests[:12] for c in r.candidates}.values())
    large = Request(Query("large", dl19_requests[0].query.text), tuple(passages[:70]))
    requests = [*dl19_requests[:8], large, *dl19_requests[8:16]]  # 20 candidates each, and one of 70
    reranker = RecordingReranker(pause=0.03)
    batching = Batching(max_batch_size=16, max_batch_candidates=50)
    answers = asyncio.run(_post_all(create_app(reranker, batching=batching), requests))
    assert [a.json()["qid"] for a in answers] == [r.query.qid for r in requests]
    assert sum(reranker.sizes) == len(requests)  # each answered once: none lost at a budget boundary
    assert max(reranker.sizes) == 2  # 2 x 20 fit under 50, 3 x 20 do not
    assert sorted(reranker.candidates)[-1] == 70 and sorted(reranker.candidates)[-2] <= 50  # the large one alone
    assert [(r["docid"], r["score"]) for r in answers[8].json()["ranking"]] == [
        (i.docid, i.score) for i in RecordingReranker(pause=0).rerank_request(large)
    ]


def test_rerankers_whose_answers_depend_on_the_batch_mix_are_batched_only_on_request(dl19_requests):
    """Generative rerankers (independent_queries False) get one request per call unless batch_generative says so."""
    for opt_in, most in ((False, 1), (True, 6)):
        reranker = RecordingReranker(pause=0.02, independent=False)
        batching = Batching(max_batch_size=6, batch_generative=opt_in)
        answers = asyncio.run(_post_all(create_app(reranker, batching=batching), dl19_requests[:12]))
        assert [a.status_code for a in answers] == [200] * 12
        assert sum(reranker.sizes) == 12 and max(reranker.sizes) == most


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


async def _asgi_post(app, path: str, body: dict, hang_up_after: float | None = None) -> int:
    """POST through the ASGI interface as a server does; with ``hang_up_after``, the client disconnects then."""
    payload = json.dumps(body).encode()
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
             "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())],
             "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 8000)}
    answered, statuses, sent = asyncio.Event(), [], False

    async def receive() -> dict:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": payload, "more_body": False}
        if hang_up_after is None:
            await answered.wait()  # a server reports the disconnect only once the answer is sent
        else:
            await asyncio.sleep(hang_up_after)
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])
        elif message["type"] == "http.response.body" and not message.get("more_body"):
            answered.set()

    await app(scope, receive, send)
    return statuses[0]


@pytest.mark.parametrize("path", ["/rerank", "/v1/rerank"])
def test_a_client_that_hangs_up_while_queued_costs_no_model_time(dl19_requests, path):
    def body(request: Request) -> dict:
        texts = [c.text for c in request.candidates]
        if path == "/rerank":
            candidates = [{"docid": str(i), "text": t} for i, t in enumerate(texts)]
            return {"query": request.query.text, "candidates": candidates}
        return {"query": request.query.text, "documents": texts}

    async def scenario(app) -> list[int]:
        busy = asyncio.create_task(_asgi_post(app, path, body(dl19_requests[0])))  # occupies the model
        while not reranker.sizes:  # until the model is busy: the next two must queue behind it
            await asyncio.sleep(0.01)
        gone = asyncio.create_task(_asgi_post(app, path, body(dl19_requests[1]), hang_up_after=0.05))
        kept = asyncio.create_task(_asgi_post(app, path, body(dl19_requests[2])))
        return list(await asyncio.gather(busy, gone, kept))

    reranker = RecordingReranker(pause=0.5)
    assert asyncio.run(scenario(create_app(reranker, batching=Batching(max_batch_size=4)))) == [200, 499, 200]
    assert reranker.sizes == [1, 1]  # the request whose client left never reached the model


def test_bounds_are_checked():
    with pytest.raises(ValueError, match="max_batch_size"):
        Batching(max_batch_size=0)
    with pytest.raises(ValueError, match="max_wait_ms"):
        Batching(max_wait_ms=-1)
    with pytest.raises(ValueError, match="max_batch_candidates"):
        Batching(max_batch_candidates=0)


@pytest.mark.slow
def test_the_encoder_default_batched_equals_one_at_a_time(dl19_requests):
    """minilm-hybrid (the default) behind the batcher: 12 concurrent requests, float-for-float the answers of
    reranking each request alone."""
    from reasonrank.rerank.registry import load_reranker

    reranker = load_reranker("minilm-hybrid", progress=False)
    assert reranker.independent_queries  # so the service batches it
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


def test_which_rerankers_state_that_batching_keeps_their_answers():
    """The server batches the encoders and wrappers over them; generative families stay one request per call."""
    from reasonrank.rerank.registry import load_reranker

    for name in ("smollm2-pointwise", "smollm2-listwise", "smollm2-pairwise"):  # the backend loads on first use
        assert not load_reranker(name, progress=False).independent_queries, name
