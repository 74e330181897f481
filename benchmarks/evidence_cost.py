"""What evidence costs: the default reranker on BM25 top-100 lists with and without evidence for the top 10.

One process, the same requests for both, runs alternating, best of ``--repeats`` (the fairest figure on a shared
CPU), the embedding cache off (every run encodes, as a search pays on queries it has not seen). Evidence scores
every sentence of the top ``--depth`` passages as the default scores passages: its bi-encoder's cosine and BM25 of
the sentence with the index's statistics, fused.

    .venv/bin/python benchmarks/evidence_cost.py [--collection scifact --queries 20 --depth 10]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from machine import cpu_line  # noqa: E402  (this folder is on sys.path when the script runs)

DATA = Path(os.environ.get("REASONRANK_SHARED_DATA", ROOT.parent / "shared" / "data"))
COLLECTIONS = {
    "msmarco-dl19-mini": ("msmarco-dl19-mini/corpus.jsonl", "msmarco-dl19-mini/topics.dl19-passage.tsv"),
    "scifact": ("scifact/corpus.jsonl", "scifact/topics.test.tsv"),
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--collection", choices=sorted(COLLECTIONS), default="msmarco-dl19-mini")
    parser.add_argument("--queries", type=int, default=20)
    parser.add_argument("--depth", type=int, default=10, help="documents per query given evidence")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)

    os.environ["REASONRANK_EMBEDDING_CACHE"] = "0"  # time the encoding, not look-ups of an earlier repeat
    import torch

    from reasonrank.io.topics import load_topics
    from reasonrank.pipeline import DEFAULT_RERANKER
    from reasonrank.rerank.cascade import HeadReranker
    from reasonrank.rerank.evidence import EvidenceReranker
    from reasonrank.rerank.registry import load_reranker
    from reasonrank.retrieval.base import FirstStageSettings, load_first_stage

    corpus, topics = (str(DATA / part) for part in COLLECTIONS[args.collection])
    queries = load_topics(topics)[: args.queries]
    first_stage = load_first_stage("bm25", corpus, FirstStageSettings(progress=False))
    requests = first_stage.search(queries, hits=100, threads=1, remove_query=False, progress=False, text_depth=100)
    sentence_bm25 = first_stage.text_scorer()
    first_stage.close()
    plain = HeadReranker(load_reranker(DEFAULT_RERANKER, progress=False), 100)
    explained = EvidenceReranker(plain, args.depth, first_stage=sentence_bm25)
    plain.rerank_many(requests[:1])  # warm-up: first calls allocate
    best = {"without": float("inf"), "with": float("inf")}
    for _ in range(args.repeats):
        for name, reranker in (("without", plain), ("with", explained)):
            started = time.perf_counter()
            reranker.rerank_many(requests)
            best[name] = min(best[name], time.perf_counter() - started)
    per_query = {name: seconds / len(requests) for name, seconds in best.items()}
    sentences = sum(len(item.evidence) for ranking in explained.rerank_many(requests[:1]) for item in ranking)
    print(cpu_line())
    print(f"{args.collection}: {len(requests)} queries, BM25 top 100 reranked by {DEFAULT_RERANKER}, evidence for "
          f"the top {args.depth} ({sentences} spans written for the first query), best of {args.repeats}, "
          f"torch threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.1f}")
    print("| evidence | s/query | ratio |")
    print("|---|---:|---:|")
    print(f"| without | {per_query['without']:.3f} | 1.00x |")
    print(f"| with (top {args.depth}) | {per_query['with']:.3f} | {per_query['with'] / per_query['without']:.2f}x |")
    plain.close()
    sentence_bm25.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
