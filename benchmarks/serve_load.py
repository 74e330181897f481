"""Load test of the reranking service from a second process: N concurrent clients, M requests each, loopback.

``python benchmarks/serve_load.py --reranker minilm-bi --clients 4 --requests 10 --candidates 20`` starts the
service in a child process (or use ``--url`` for one already running), sends real DL19 queries with passages of the
embedded mini corpus, and prints throughput and latency percentiles. Every request carries a unique qid; the run
fails (exit 1) if any request is lost, refused, answered twice or answered with another request's qid.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from reasonrank.pipeline import embedded_collection  # noqa: E402
from reasonrank.serve.app import running_service  # noqa: E402


@dataclass(frozen=True, slots=True)
class Outcome:
    sent_qid: str
    status: int
    answered_qid: str | None
    seconds: float


def build_payloads(clients: int, requests: int, candidates: int, seed: int) -> list[list[dict]]:
    """One list of request bodies per client: DL19 queries, ``candidates`` random passages each, unique qids."""
    collection = embedded_collection()
    topics = [line.split("\t", 1) for line in collection.topics.read_text().splitlines() if line.strip()]
    with collection.corpus.open(encoding="utf-8") as lines:
        passages = [json.loads(line) for line in lines]
    rng = random.Random(seed)
    payloads = []
    for client in range(clients):
        bodies = []
        for number in range(requests):
            _, query = topics[(client * requests + number) % len(topics)]
            sample = rng.sample(passages, candidates)
            bodies.append({
                "qid": f"load-{client}-{number}",
                "query": query,
                "candidates": [{"docid": p["_id"], "text": f"{p['title']} {p['text']}".strip()} for p in sample],
            })
        payloads.append(bodies)
    return payloads


def client_loop(url: str, bodies: Sequence[dict], outcomes: list[Outcome], lock: threading.Lock) -> None:
    with httpx.Client(base_url=url, timeout=600.0) as http:
        for body in bodies:
            start = time.perf_counter()
            try:
                answer = http.post("/rerank", json=body)
                status, qid = answer.status_code, answer.json().get("qid")
            except httpx.HTTPError:
                status, qid = 0, None  # a connection error counts as a lost request
            outcome = Outcome(body["qid"], status, qid, time.perf_counter() - start)
            with lock:
                outcomes.append(outcome)


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))]


def report(outcomes: Sequence[Outcome], payloads: Sequence[Sequence[dict]], elapsed: float, candidates: int) -> int:
    sent = [body["qid"] for bodies in payloads for body in bodies]
    answered = Counter(o.answered_qid for o in outcomes if o.status == 200)
    lost = [qid for qid in sent if answered[qid] == 0]
    twice = [qid for qid, count in answered.items() if count > 1]
    mixed = [o for o in outcomes if o.status == 200 and o.answered_qid != o.sent_qid]
    failed = [o for o in outcomes if o.status != 200]
    latencies = [o.seconds * 1000 for o in outcomes if o.status == 200]
    print(f"requests: {len(sent)} sent, {sum(answered.values())} answered in {elapsed:.1f} s")
    if latencies:
        print(f"throughput: {len(latencies) / elapsed:.2f} requests/s, {len(latencies) * candidates / elapsed:.1f} "
              "candidates/s")
        print("latency ms: " + ", ".join(f"p{int(q * 100)} {percentile(latencies, q):.0f}" for q in (0.5, 0.9, 0.99))
              + f", max {max(latencies):.0f}")
    print(f"lost: {len(lost)}, answered twice: {len(twice)}, wrong qid: {len(mixed)}, errors: {len(failed)}")
    return 1 if lost or twice or mixed or failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--url", help="a running service, e.g. http://127.0.0.1:8000")
    target.add_argument("--reranker", default="minilm-bi", help="start a service with this reranker (default)")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--requests", type=int, default=10, help="requests per client")
    parser.add_argument("--candidates", type=int, default=20, help="passages per request")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if min(args.clients, args.requests, args.candidates) < 1:
        parser.error("--clients, --requests and --candidates must be at least 1")

    payloads = build_payloads(args.clients, args.requests, args.candidates, args.seed)
    service = nullcontext(args.url) if args.url else running_service(args.reranker)
    with service as url:
        model = httpx.get(f"{url}/health").json()["model"]
        print(f"service {url} ({model}); {args.clients} clients x {args.requests} requests x "
              f"{args.candidates} candidates")
        outcomes: list[Outcome] = []
        lock = threading.Lock()
        threads = [threading.Thread(target=client_loop, args=(url, bodies, outcomes, lock)) for bodies in payloads]
        start = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - start
    return report(outcomes, payloads, elapsed, args.candidates)


if __name__ == "__main__":
    sys.exit(main())
