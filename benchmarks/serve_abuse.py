"""The reranking service under abuse on loopback: malformed, oversized, slow (slowloris-style) and cancelled
requests from bounded concurrent clients, while well-formed clients keep asking. Passes (exit 0) when no answer
is a 5xx, every well-formed request is answered within ``--patience`` seconds, and the server's resident memory
grows by less than ``--memory-mib``.

    python benchmarks/serve_abuse.py [--reranker minilm-bi] [--rounds 3] [--slow 64] [--concurrency 16]

Figures and the command behind them are in docs/serving.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
LIMIT = 1024 * 1024


def candidates(count: int, words: int = 40) -> list[dict]:
    return [{"docid": f"d{i}", "text": " ".join(f"word{(i * 7 + j) % 97}" for j in range(words)),
             "score": 1.0 / (i + 1)} for i in range(count)]


MALFORMED = [
    b"{", b"[]", b"null", b'{"query": 3, "candidates": []}', b'{"query": "q", "candidates": [{"docid": ""}]}',
    b'{"query": "q", "candidates": [{"docid": "a", "text": "x", "score": NaN}]}',
    b'{"query": "q", "candidates": [{"docid": "a", "text": "x", "score": Infinity}]}',
    b'{"query": "q", "candidates": [{"docid": "a", "text": "x"}, {"docid": "a", "text": "y"}]}',
    b'{"query": "q", "top_k": -1, "candidates": []}', b'{"query": "q", "candidates": "many"}', b"\xff\xfe\x00",
    b'{"query": "q", "candidates": [], "extra": 1}', json.dumps({"query": "q" * 10, "candidates": [[1, 2]]}).encode(),
    b'{"query": "\\ud800", "candidates": []}', b'{"query": "q", "candidates": [{"docid": "a", "text": 1e999}]}',
]


def resident_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def raw(port: int, payload: bytes, read: bool = True, timeout: float = 30.0) -> int:
    """Send bytes on a fresh connection; the HTTP status answered (0 when none is read)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(payload)
        await writer.drain()
        if not read:
            return 0
        status_line = await asyncio.wait_for(reader.readline(), timeout)
        return int(status_line.split()[1]) if status_line else 0
    finally:
        writer.close()


def post(body: bytes, extra: str = "") -> bytes:
    head = f"POST /rerank HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    return (head + extra + "\r\n").encode() + body


async def slowloris(port: int, hold: float) -> None:
    """Headers one byte at a time, never finished; held open for ``hold`` seconds."""
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        began = time.monotonic()
        for byte in b"POST /rerank HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\nX-Slow: ":
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(hold / 80)
            if time.monotonic() - began > hold:
                break
    except (ConnectionError, OSError):
        pass  # the server may drop a connection it finds idle: that is fine
    finally:
        writer.close()


async def abuse(port: int, args: argparse.Namespace, counts: dict[str, int], worst: list[float]) -> None:
    base = f"http://127.0.0.1:{port}"
    good = json.dumps({"query": "word3 word5", "candidates": candidates(20)}).encode()
    rng = random.Random(0)
    async with httpx.AsyncClient(base_url=base, timeout=args.patience) as client:

        async def well_formed() -> None:
            began = time.monotonic()
            answer = await client.post("/rerank", content=good, headers={"content-type": "application/json"})
            worst.append(time.monotonic() - began)
            counts[f"well-formed {answer.status_code}"] = counts.get(f"well-formed {answer.status_code}", 0) + 1

        async def record(kind: str, status: int) -> None:
            counts[f"{kind} {status}"] = counts.get(f"{kind} {status}", 0) + 1

        for _ in range(args.rounds):
            slow = [asyncio.create_task(slowloris(port, hold=8.0)) for _ in range(args.slow)]
            # Started now, so the model is busy while the rest arrives (cancelled requests then wait in the queue).
            tasks = [asyncio.create_task(well_formed()) for _ in range(args.concurrency)]
            tasks += [record("malformed", s) for s in await asyncio.gather(*(raw(port, post(rng.choice(MALFORMED)))
                                                                             for _ in range(args.concurrency)))]
            tasks += [record("oversized (declared)", await raw(port, post(b"{}").replace(
                b"Content-Length: 2", f"Content-Length: {LIMIT * 50}".encode())))]
            chunk = b"x" * 65536
            chunked = (b"POST /rerank HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                       + (f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n") * (LIMIT // len(chunk) + 2) + b"0\r\n\r\n")
            tasks += [record("oversized (chunked)", await raw(port, chunked))]
            for _ in range(args.concurrency):  # cancelled: the whole request sent, the connection closed at once;
                # the service drops it from the queue (its summary line counts callers that hung up)
                await raw(port, post(good), read=False)
                counts["cancelled"] = counts.get("cancelled", 0) + 1
            await asyncio.gather(*tasks)
            await asyncio.gather(*(well_formed() for _ in range(4)))  # still answering while slow clients hang on
            await asyncio.gather(*slow)
            counts["slow clients"] = counts.get("slow clients", 0) + args.slow


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reranker", default="minilm-bi")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--slow", type=int, default=64, help="slowloris connections held open per round")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--patience", type=float, default=300.0, help="seconds a well-formed request may take")
    parser.add_argument("--memory-mib", type=float, default=300.0, help="allowed growth of the server's RSS")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from reasonrank.serve.app import free_port

    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    log = tempfile.TemporaryFile("w+", encoding="utf-8")  # noqa: SIM115 - read once the server has exited
    server = subprocess.Popen([sys.executable, "-m", "reasonrank.serve", "--reranker", args.reranker, "--port",
                               str(port), "--log-level", "critical", "--max-request-bytes", str(LIMIT)], env=env,
                              stderr=log)
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).json().get("ready"):
                    break
            except httpx.HTTPError:
                if server.poll() is not None or time.monotonic() > deadline:
                    print("the service did not start")
                    return 1
                time.sleep(0.5)
        warm = httpx.post(f"http://127.0.0.1:{port}/rerank", timeout=60,
                          json={"query": "word3", "candidates": candidates(50)})
        assert warm.status_code == 200, warm.text
        before = resident_mib(server.pid)
        counts: dict[str, int] = {}
        worst: list[float] = []
        began = time.monotonic()
        asyncio.run(abuse(port, args, counts, worst))
        elapsed = time.monotonic() - began
        after = resident_mib(server.pid)
        alive = httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code == 200
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.seek(0)
        summary = [line.strip() for line in log if line.startswith("reasonrank.serve:")]
        log.close()
    errors = sum(n for key, n in counts.items() if key.split()[-1].startswith("5"))
    unanswered = sum(n for key, n in counts.items() if key.endswith(" 0"))
    print(f"{args.reranker}, {args.rounds} rounds in {elapsed:.1f}s; per round {args.concurrency} well-formed + "
          f"{args.concurrency} malformed + 2 oversized + {args.concurrency} cancelled requests, "
          f"{args.slow} slow clients")
    print("| requests | count |\n|---|---:|")
    for key in sorted(counts):
        print(f"| {key} | {counts[key]} |")
    print(f"\n5xx answers: {errors}; unanswered: {unanswered}; slowest well-formed answer: {max(worst):.2f}s; "
          f"server RSS {before:.0f} -> {after:.0f} MiB; healthy after: {alive}")
    print("service: " + (summary[-1].removeprefix("reasonrank.serve: ") if summary else "no summary line"))
    ok = errors == 0 and unanswered == 0 and alive and after - before < args.memory_mib
    ok = ok and all(key.split()[-1] == "200" for key in counts if key.startswith("well-formed"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
