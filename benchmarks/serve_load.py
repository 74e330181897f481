"""Load test of the reranking service from a second process: N concurrent clients, M requests each, loopback.

``python benchmarks/serve_load.py --reranker minilm-bi --clients 4 --requests 10 --candidates 20`` starts the
service in a child process (or use ``--url`` for one already running), sends real DL19 queries with passages of the
embedded mini corpus, and prints throughput and latency percentiles. Every request carries a unique qid; the run
fails (exit 1) if any request is lost, refused, answered twice or answered with another request's qid.

``--compare`` measures the serialised server (``--max-batch-size 1``: one request per model call, as the service
worked before dynamic batching) and the batched one side by side, for every ``--clients`` level (e.g.
``--clients 1 4 16``), prints one table (throughput, p50/p95 latency, speed-up) and checks that both answered every
request with the same ranking and scores. The services it starts run without the persistent embedding cache
(``REASONRANK_EMBEDDING_CACHE=0``; ``--embedding-cache`` keeps it): otherwise the second mode would read back the
vectors the first one computed for the same passages and the comparison would time SQLite, not the model.
``--candidates`` takes several sizes (e.g. ``--candidates 1 10 100``): one table per size.

``--model-only`` (with ``--compare``) also loads the reranker in this process and times its ``rerank_many`` on the
same requests, once one request per call and once ``--max-batch-size`` requests per call, with no HTTP at all. That
speed-up is the ceiling of any batching server for this model on this CPU: a service adds the same per-request
work (HTTP, JSON, the client) to both modes, which can only bring the ratio closer to 1.
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
from machine import cpu_line  # noqa: E402  (this folder is on sys.path when the script runs)

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from reasonrank.pipeline import embedded_collection  # noqa: E402
from reasonrank.serve.app import running_service  # noqa: E402
from reasonrank.serve.batching import DEFAULT_MAX_BATCH_CANDIDATES, DEFAULT_MAX_WAIT_MS  # noqa: E402


@dataclass(frozen=True, slots=True)
class Outcome:
    sent_qid: str
    status: int
    answered_qid: str | None
    seconds: float
    ranking: tuple[tuple[str, float], ...] = ()


def build_payloads(clients: int, requests: int, candidates: int, seed: int) -> list[list[dict]]:
    """One list of request bodies per client: DL19 queries, ``candidates`` random passages each, unique qids; the
    passages carry descending first-stage scores, as BM25 hits do (fusion rerankers read them)."""
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
                "candidates": [
                    {"docid": p["_id"], "text": f"{p['title']} {p['text']}".strip(), "score": float(candidates - rank)}
                    for rank, p in enumerate(sample)
                ],
            })
        payloads.append(bodies)
    return payloads


def client_loop(url: str, bodies: Sequence[dict], outcomes: list[Outcome], lock: threading.Lock) -> None:
    with httpx.Client(base_url=url, timeout=600.0) as http:
        for body in bodies:
            start = time.perf_counter()
            ranking: tuple[tuple[str, float], ...] = ()
            try:
                answer = http.post("/rerank", json=body)
                status, qid = answer.status_code, answer.json().get("qid")
                if status == 200:
                    ranking = tuple((r["docid"], r["score"]) for r in answer.json()["ranking"])
            except httpx.HTTPError:
                status, qid = 0, None  # a connection error counts as a lost request
            outcome = Outcome(body["qid"], status, qid, time.perf_counter() - start, ranking)
            with lock:
                outcomes.append(outcome)


@dataclass(frozen=True, slots=True)
class Load:
    clients: int
    elapsed: float
    outcomes: tuple[Outcome, ...]
    problems: tuple[str, ...]

    @property
    def latencies(self) -> list[float]:
        return [o.seconds * 1000 for o in self.outcomes if o.status == 200]

    @property
    def throughput(self) -> float:
        return len(self.latencies) / self.elapsed

    def rankings(self) -> dict[str, tuple[tuple[str, float], ...]]:
        return {o.sent_qid: o.ranking for o in self.outcomes if o.status == 200}


def check(outcomes: Sequence[Outcome], payloads: Sequence[Sequence[dict]]) -> tuple[str, ...]:
    """What went wrong: lost, doubly answered, mixed-up or failed requests (empty when all is well)."""
    sent = [body["qid"] for bodies in payloads for body in bodies]
    answered = Counter(o.answered_qid for o in outcomes if o.status == 200)
    problems = []
    for label, count in (
        ("lost", sum(1 for qid in sent if answered[qid] == 0)),
        ("answered twice", sum(1 for count in answered.values() if count > 1)),
        ("wrong qid", sum(1 for o in outcomes if o.status == 200 and o.answered_qid != o.sent_qid)),
        ("errors", sum(1 for o in outcomes if o.status != 200)),
    ):
        if count:
            problems.append(f"{label}: {count}")
    return tuple(problems)


def run_load(url: str, payloads: Sequence[Sequence[dict]]) -> Load:
    outcomes: list[Outcome] = []
    lock = threading.Lock()
    threads = [threading.Thread(target=client_loop, args=(url, bodies, outcomes, lock)) for bodies in payloads]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return Load(len(payloads), time.perf_counter() - start, tuple(outcomes), check(outcomes, payloads))


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))]


def report(load: Load, candidates: int) -> int:
    latencies = load.latencies
    print(f"requests: {len(load.outcomes)} sent, {len(latencies)} answered in {load.elapsed:.1f} s")
    if latencies:
        print(f"throughput: {load.throughput:.2f} requests/s, {load.throughput * candidates:.1f} candidates/s")
        print("latency ms: " + ", ".join(f"p{int(q * 100)} {percentile(latencies, q):.0f}" for q in (0.5, 0.9, 0.99))
              + f", max {max(latencies):.0f}")
    print("problems: " + (", ".join(load.problems) if load.problems else "none (0 lost, 0 answered twice)"))
    return 1 if load.problems else 0


def compare(args: argparse.Namespace, candidates: int) -> int:
    """Serialised and batched services side by side: one table, and the answers of both compared."""
    modes = {"serialised": ["--max-batch-size", "1"],
             "batched": ["--max-batch-size", str(args.max_batch_size), "--max-wait-ms", str(args.max_wait_ms),
                         "--max-batch-candidates", str(args.max_batch_candidates),
                         *(["--batch-generative"] if args.batch_generative else [])]}
    loads: dict[tuple[str, int], Load] = {}
    if not args.embedding_cache:
        os.environ["REASONRANK_EMBEDDING_CACHE"] = "0"  # the services inherit it
    for mode, options in modes.items():
        with running_service(args.reranker, *options) as url:
            # Warm-up, not measured, at the highest load: the engine prepares its kernels per input shape on first
            # use, and the mode measured first would otherwise pay for that alone.
            run_load(url, build_payloads(max(args.clients), 2, candidates, args.seed + 1))
            for clients in args.clients:
                loads[mode, clients] = run_load(url, build_payloads(clients, args.requests, candidates, args.seed))
    print(cpu_line())
    print(f"{args.reranker}: {args.requests} requests per client x {candidates} candidates; batched = "
          f"--max-batch-size {args.max_batch_size} --max-wait-ms {args.max_wait_ms} "
          f"--max-batch-candidates {args.max_batch_candidates}"
          f"{' --batch-generative' if args.batch_generative else ''}; embedding cache "
          f"{'on' if args.embedding_cache else 'off'}")
    print("| clients | mode | requests/s | p50 ms | p95 ms | speed-up | same answers |")
    print("|---:|---|---:|---:|---:|---:|---|")
    failed = 0
    for clients in args.clients:
        serial, batched = loads["serialised", clients], loads["batched", clients]
        same = serial.rankings() == batched.rankings() and len(serial.rankings()) == clients * args.requests
        for mode, load in (("serialised", serial), ("batched", batched)):
            latencies = load.latencies or [float("nan")]
            speed = f"{load.throughput / serial.throughput:.2f}x" if mode == "batched" else ""
            print(f"| {clients} | {mode} | {load.throughput:.2f} | {percentile(latencies, 0.5):.0f} | "
                  f"{percentile(latencies, 0.95):.0f} | {speed} | {'yes' if same else 'NO'} |")
            if load.problems:
                print(f"  {mode}, {clients} clients: " + ", ".join(load.problems))
                failed = 1
        if not same:
            differing = sum(1 for qid, r in serial.rankings().items() if batched.rankings().get(qid) != r)
            print(f"  {clients} clients: {differing} of {len(serial.rankings())} answers differ between the modes")
    return failed


def as_requests(payloads: Sequence[Sequence[dict]]) -> list:
    from reasonrank.retrieval.documents import as_request

    return [as_request(body["query"], body["candidates"], qid=body["qid"]) for bodies in payloads for body in bodies]


def model_only(args: argparse.Namespace, sizes: Sequence[int]) -> int:
    """The reranker's own ``rerank_many``, one request per call against ``--max-batch-size`` per call: the
    ceiling of the batching speed-up, with no service around the model."""
    from reasonrank.rerank.registry import load_reranker
    from reasonrank.serve.batching import Batching, batch_size_for

    reranker = load_reranker(args.reranker, None)
    group = batch_size_for(reranker, Batching(args.max_batch_size, args.max_wait_ms, args.batch_generative))
    print(cpu_line())
    print(f"{reranker.name} alone, in this process (no HTTP): {args.requests} x {max(args.clients)} requests per "
          f"size, one per call vs {group} per call")
    print("| candidates | one per call ms/request | batched ms/request | speed-up | same answers |")
    print("|---:|---:|---:|---:|---:|")
    failed = 0
    for size in sizes:
        reranker.rerank_many(as_requests(build_payloads(1, 2, size, args.seed + 1)))  # warm-up, not measured
        requests = as_requests(build_payloads(max(args.clients), args.requests, size, args.seed))
        start = time.perf_counter()
        alone = [reranker.rerank_many([request])[0] for request in requests]
        serial = time.perf_counter() - start
        start = time.perf_counter()
        together = [ranking for first in range(0, len(requests), group)
                    for ranking in reranker.rerank_many(requests[first:first + group])]
        batched = time.perf_counter() - start
        same = alone == together
        failed |= not same
        print(f"| {size} | {1000 * serial / len(requests):.1f} | {1000 * batched / len(requests):.1f} | "
              f"{serial / batched:.2f}x | {'yes' if same else 'NO'} |")
    reranker.close()
    return int(failed)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--url", help="a running service, e.g. http://127.0.0.1:8000")
    target.add_argument("--reranker", default="minilm-bi", help="start a service with this reranker (default)")
    parser.add_argument("--clients", type=int, nargs="+", default=[4], help="concurrent clients (several: --compare)")
    parser.add_argument("--requests", type=int, default=10, help="requests per client")
    parser.add_argument("--candidates", type=int, nargs="+", default=[20],
                        help="passages per request (several: --compare, one table per size)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--compare", action="store_true", help="serialised vs batched service, side by side")
    parser.add_argument("--max-batch-size", type=int, default=16, help="the batched service's --max-batch-size")
    parser.add_argument(
        "--max-wait-ms", type=float, default=DEFAULT_MAX_WAIT_MS, help="the batched service's --max-wait-ms"
    )
    parser.add_argument("--max-batch-candidates", type=int, default=DEFAULT_MAX_BATCH_CANDIDATES,
                        help="the batched service's --max-batch-candidates")
    parser.add_argument(
        "--batch-generative", action="store_true",
        help="the batched service batches generative rerankers too (else it keeps them at one request per call)",
    )
    parser.add_argument(
        "--embedding-cache", action="store_true", help="--compare: keep the services' persistent embedding cache"
    )
    parser.add_argument(
        "--model-only", action="store_true",
        help="--compare: also time the reranker in this process without HTTP (the ceiling of batching)",
    )
    args = parser.parse_args(argv)
    if min(*args.clients, args.requests, *args.candidates) < 1:
        parser.error("--clients, --requests and --candidates must be at least 1")
    if args.compare:
        if args.url:
            parser.error("--compare starts its own services: pass --reranker, not --url")
        failed = 0
        for size in args.candidates:
            failed |= compare(args, size)
        if args.model_only:
            failed |= model_only(args, args.candidates)
        return failed
    if args.model_only:
        parser.error("--model-only goes with --compare")
    if len(args.candidates) > 1:
        parser.error("several --candidates sizes go with --compare")
    candidates = args.candidates[0]
    payloads = build_payloads(args.clients[0], args.requests, candidates, args.seed)
    service = nullcontext(args.url) if args.url else running_service(args.reranker)
    with service as url:
        model = httpx.get(f"{url}/health").json()["model"]
        print(f"service {url} ({model}); {args.clients[0]} clients x {args.requests} requests x "
              f"{candidates} candidates")
        load = run_load(url, payloads)
    return report(load, candidates)


if __name__ == "__main__":
    sys.exit(main())
