"""The reranking service: answers, 4xx JSON for every kind of bad input, serialised model calls, the schema file."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from reasonrank.cli.serve import main
from reasonrank.errors import EXIT_USER_ERROR
from reasonrank.rerank.base import ScoringReranker
from reasonrank.serve.app import ServiceLimits, create_app, openapi_schema, running_service
from reasonrank.types import Judgment, Request

ROOT = Path(__file__).resolve().parents[2]


def overlap(query: str, text: str) -> float:
    return float(len(set(query.lower().split()) & set(text.lower().split())))


class OverlapReranker(ScoringReranker):
    """Scores a passage by how many query words it contains; records whether two calls ever overlapped."""

    name = "word-overlap"

    def __init__(self, pause: float = 0.0) -> None:
        self.pause = pause
        self.active = 0
        self.most_active = 0
        self.calls = 0
        self._guard = threading.Lock()  # protects the counters only, not the model call

    def judge(self, requests: Sequence[Request]) -> list[list[Judgment]]:
        with self._guard:
            self.active += 1
            self.calls += 1
            self.most_active = max(self.most_active, self.active)
        time.sleep(self.pause)  # a window in which a second, unserialised call would overlap
        try:
            return [[Judgment(overlap(r.query.text, c.text)) for c in r.candidates] for r in requests]
        finally:
            with self._guard:
                self.active -= 1


@pytest.fixture(scope="module")
def dl19(test_data) -> tuple[list[tuple[str, str]], list[dict]]:
    """DL19 topics and the first 200 passages of the mini corpus, as a client would send them."""
    folder = test_data / "msmarco-dl19-mini"
    topics = [tuple(line.split("\t", 1)) for line in (folder / "topics.dl19-passage.tsv").read_text().splitlines()]
    passages = []
    with (folder / "corpus.jsonl").open() as lines:
        for line, _ in zip(lines, range(200), strict=False):
            record = json.loads(line)
            passages.append({"docid": record["_id"], "text": f"{record['title']} {record['text']}".strip()})
    return topics, passages


@pytest.fixture
def client() -> TestClient:
    return TestClient(create_app(OverlapReranker(), ServiceLimits(max_candidates=50, max_request_bytes=64_000)))


def test_rerank_orders_by_the_reranker_and_echoes_the_qid(client, dl19):
    topics, passages = dl19
    qid, query = topics[0]
    body = {"qid": qid, "query": query, "candidates": passages[:30]}
    answer = client.post("/rerank", json=body)
    assert answer.status_code == 200
    result = answer.json()
    assert result["qid"] == qid and result["model"] == "word-overlap"
    ranking = result["ranking"]
    assert [r["rank"] for r in ranking] == list(range(1, 31))
    assert sorted(r["docid"] for r in ranking) == sorted(p["docid"] for p in passages[:30])
    expected = {p["docid"]: overlap(query, p["text"]) for p in passages[:30]}
    assert all(r["score"] == expected[r["docid"]] for r in ranking)
    scores = [r["score"] for r in ranking]
    assert scores == sorted(scores, reverse=True)


def test_top_k_missing_qid_and_empty_candidates(client, dl19):
    topics, passages = dl19
    top = client.post("/rerank", json={"query": topics[1][1], "candidates": passages[:20], "top_k": 5}).json()
    assert len(top["ranking"]) == 5 and top["qid"]  # a qid is made up when the client sends none
    empty = client.post("/rerank", json={"query": topics[1][1], "candidates": []})
    assert empty.status_code == 200 and empty.json()["ranking"] == []


def test_a_candidate_title_is_read_before_its_text_and_kept_for_formats_that_place_it():
    class Recording(OverlapReranker):
        def judge(self, requests: Sequence[Request]) -> list[list[Judgment]]:
            self.seen = [(c.text, c.title) for r in requests for c in r.candidates]
            return super().judge(requests)

    reranker = Recording()
    candidates = [{"docid": "titled", "text": "Alterations of white matter.", "title": "Newborn brains"},
                  {"docid": "untitled", "text": "Fahrenheit invented the thermometer."}]
    body = {"query": "newborn brains", "candidates": candidates}
    answer = TestClient(create_app(reranker)).post("/rerank", json=body)
    assert answer.status_code == 200 and answer.json()["ranking"][0]["docid"] == "titled"  # the title's words count
    assert reranker.seen == [("Newborn brains Alterations of white matter.", "Newborn brains"),
                             ("Fahrenheit invented the thermometer.", "")]


def test_health_and_not_ready_without_a_model():
    assert TestClient(create_app(OverlapReranker())).get("/health").json() == {"model": "word-overlap", "ready": True}
    idle = TestClient(create_app(None))
    assert idle.get("/health").json() == {"model": None, "ready": False}
    answer = idle.post("/rerank", json={"query": "q", "candidates": [{"docid": "d", "text": "t"}]})
    assert answer.status_code == 503 and "--reranker" in answer.json()["error"]


def _candidates(count: int) -> list[dict]:
    return [{"docid": f"d{i}", "text": "passage"} for i in range(count)]


BAD_REQUESTS = {
    "malformed JSON": (b'{"query": "q", "candidates": [', 422, "not valid JSON"),
    "not UTF-8": (b'\xff\x05{"query": "q"}', 422, "must be UTF-8"),
    "not an object": (b'["q"]', 422, "valid dictionary"),
    "missing candidates": (b'{"query": "q"}', 422, "candidates: Field required"),
    "missing query": (json.dumps({"candidates": _candidates(1)}).encode(), 422, "query: Field required"),
    "empty query": (json.dumps({"query": "", "candidates": _candidates(1)}).encode(), 422, "query"),
    "candidate without docid": (b'{"query": "q", "candidates": [{"text": "t"}]}', 422, "candidates.0.docid"),
    "text not a string": (b'{"query": "q", "candidates": [{"docid": "a", "text": 5}]}', 422, "candidates.0.text"),
    "unknown field": (b'{"query": "q", "candidates": [], "k": 3}', 422, "k: Extra inputs"),
    "top_k zero": (json.dumps({"query": "q", "candidates": _candidates(2), "top_k": 0}).encode(), 422, "top_k"),
    "top_k a string": (json.dumps({"query": "q", "candidates": _candidates(2), "top_k": "2"}).encode(), 422,
                       "top_k: must be a JSON number"),
    "score a boolean": (b'{"query": "q", "candidates": [{"docid": "a", "text": "x", "score": true}]}', 422,
                        "candidates.0.score: must be a JSON number"),
    "duplicate docids": (
        json.dumps({"query": "q", "candidates": [{"docid": "a", "text": "x"}, {"docid": "a", "text": "y"}]}).encode(),
        422,
        "duplicate docids: a",
    ),
    "too many candidates": (
        json.dumps({"query": "q", "candidates": _candidates(51)}).encode(),
        422,
        "51 given, at most 50",
    ),
    "body too large": (
        json.dumps({"query": "q", "candidates": [{"docid": "a", "text": "x" * 70_000}]}).encode(),
        413,
        "exceeds 64000 bytes",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_REQUESTS))
def test_bad_requests_are_4xx_json_with_one_line(client, case):
    body, status, message = BAD_REQUESTS[case]
    answer = client.post("/rerank", content=body, headers={"content-type": "application/json"})
    assert answer.status_code == status
    error = answer.json()["error"]
    assert message in error and "\n" not in error


def test_chunked_body_over_the_limit_is_refused_before_parsing(client):
    def chunks():
        for _ in range(100):
            yield b"x" * 1000  # no Content-Length: the limit must count the streamed bytes

    answer = client.post("/rerank", content=chunks(), headers={"content-type": "application/json"})
    assert answer.status_code == 413 and "exceeds" in answer.json()["error"]


def test_a_failing_model_is_a_json_500_not_a_crash(dl19):
    class Broken(OverlapReranker):
        def judge(self, requests):
            raise RuntimeError("CUDA out of memory")

    topics, passages = dl19
    broken = TestClient(create_app(Broken()), raise_server_exceptions=False)
    answer = broken.post("/rerank", json={"query": topics[0][1], "candidates": passages[:3]})
    assert answer.status_code == 500 and "RuntimeError: CUDA out of memory" in answer.json()["error"]
    assert broken.get("/health").json()["ready"]  # the service keeps serving


def test_unknown_paths_and_methods_answer_json(client):
    assert client.get("/nowhere").json() == {"error": "Not Found"}
    wrong = client.get("/rerank")
    assert wrong.status_code == 405 and "error" in wrong.json()


def test_model_calls_never_overlap(dl19):
    """Concurrent requests all succeed, each gets its own qid back, and the reranker runs one call at a time."""
    topics, passages = dl19
    reranker = OverlapReranker(pause=0.02)
    app = create_app(reranker)

    async def send_all() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://service") as http:
            return await asyncio.gather(*(
                http.post("/rerank", json={"qid": f"r{i}", "query": topics[i % len(topics)][1],
                                           "candidates": passages[i : i + 10]})
                for i in range(16)
            ))

    answers = asyncio.run(send_all())
    assert [a.json()["qid"] for a in answers] == [f"r{i}" for i in range(16)]
    assert reranker.calls <= 16 and reranker.most_active == 1  # calls may be batched, never concurrent


def test_openapi_copy_in_docs_is_current():
    written = json.loads((ROOT / "docs" / "openapi.json").read_text())
    assert written == json.loads(json.dumps(openapi_schema())), (
        "docs/openapi.json is stale: run python -m reasonrank.serve --write-openapi docs/openapi.json"
    )
    assert {"/rerank", "/health"} <= set(written["paths"])


def test_cli_needs_a_reranker(capsys):
    assert main([]) == EXIT_USER_ERROR
    assert "--reranker is required" in capsys.readouterr().err


@pytest.mark.slow
def test_service_process_with_a_real_model(dl19):
    """minilm-bi behind uvicorn on a loopback port: a real answer, then bad input that must not be a 500."""
    topics, passages = dl19
    with running_service("minilm-bi", "--max-candidates", "40", "--max-request-bytes", "200000") as url:
        assert httpx.get(f"{url}/health").json() == {"model": "minilm-bi", "ready": True}
        qid, query = topics[2]
        good = httpx.post(f"{url}/rerank", json={"qid": qid, "query": query, "candidates": passages[:20]}, timeout=120)
        assert good.status_code == 200
        ranking = good.json()["ranking"]
        assert good.json()["model"] == "minilm-bi" and len(ranking) == 20
        assert all(-1.0 <= r["score"] <= 1.0 for r in ranking)  # cosine similarities
        assert [r["score"] for r in ranking] == sorted((r["score"] for r in ranking), reverse=True)
        for body, status in [
            (b"{not json", 422),
            (json.dumps({"query": query, "candidates": passages[:41]}).encode(), 422),
            (json.dumps({"query": query, "candidates": [passages[0], passages[0]]}).encode(), 422),
            (b"x" * 300_000, 413),
        ]:
            answer = httpx.post(f"{url}/rerank", content=body, headers={"content-type": "application/json"})
            assert answer.status_code == status and answer.json()["error"]
