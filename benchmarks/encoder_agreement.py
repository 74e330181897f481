"""Does reduced precision keep the ranking? bf16 (OpenVINO) and int8 (ONNX Runtime) against fp32, trained encoders.

For each model and collection: BM25 candidates (Pyserini defaults), reranked by the same exported graph in fp32,
bf16 and int8; per-query Kendall tau of each against fp32 and nDCG@10 of each (pytrec_eval). The rule the default
follows (docs/speed.md): a precision is used only if its mean tau >= 0.98 and its nDCG@10 is within 0.002 of
fp32 on every row.

    .venv/bin/python benchmarks/encoder_agreement.py [--scifact-queries 100 --scifact-depth 20 --dl19-depth 100]
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("REASONRANK_SHARED_DATA", ROOT.parent / "shared" / "data"))
TAU_GOAL, NDCG_GOAL = 0.98, 0.002


def candidates(collection: str, queries: int | None, depth: int):
    from reasonrank.io.topics import load_qrels, load_topics
    from reasonrank.retrieval.bm25 import Bm25FirstStage

    if collection == "DL19 mini":
        folder = DATA / "msmarco-dl19-mini"
        topics, qrels = folder / "topics.dl19-passage.tsv", folder / "qrels.dl19-passage.txt"
    else:
        folder = DATA / "scifact"
        topics, qrels = folder / "topics.test.tsv", folder / "qrels.test.txt"
    with Bm25FirstStage(str(folder / "corpus.jsonl")) as bm25:
        requests = bm25.search(load_topics(str(topics))[:queries], hits=depth, progress=False)
    return requests, load_qrels(str(qrels))


def mean_tau(rankings, reference) -> float:
    from scipy.stats import kendalltau

    taus = []
    for ours, theirs in zip(rankings, reference, strict=True):
        by_docid = {item.docid: item.score for item in theirs}
        taus.append(kendalltau([item.score for item in ours], [by_docid[item.docid] for item in ours]).statistic)
    return float(np.nanmean(taus))


def ndcg10(rankings, qrels) -> float:
    from reasonrank.evaluation import evaluate

    return evaluate({r.query.qid: {i.docid: i.score for i in r} for r in rankings}, qrels).mean["nDCG@10"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="minilm-scifact-bi,minilm-bi")
    parser.add_argument("--precisions", default="bf16,int8")
    parser.add_argument("--dl19-depth", type=int, default=100)
    parser.add_argument("--scifact-queries", type=int, default=100)
    parser.add_argument("--scifact-depth", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--extra-model", action="append", default=[], help="NAME=FOLDER of another trained model")
    parser.add_argument(
        "--extra-option", action="append", default=[], help="KEY=INT for the extra models, e.g. document_max_length=128"
    )
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ["REASONRANK_EMBEDDING_CACHE"] = "0"  # every precision computes its own vectors
    import torch

    torch.set_num_threads(args.threads)
    from reasonrank.rerank.registry import load_reranker

    collections = {
        "DL19 mini": candidates("DL19 mini", None, args.dl19_depth),
        "SciFact test": candidates("SciFact test", args.scifact_queries, args.scifact_depth),
    }
    models = {name: name for name in args.models.split(",") if name}
    extras = dict(item.split("=", 1) for item in args.extra_model)
    models.update(extras)
    extra_options = {key: int(value) for key, value in (item.split("=", 1) for item in args.extra_option)}
    print("| model | collection | queries x depth | precision | mean Kendall tau vs fp32 | nDCG@10 | fp32 nDCG@10 "
          "| diff | keeps the ranking |")
    print("|---|---|---|---|---:|---:|---:|---:|---|")
    with tempfile.TemporaryDirectory() as cache:
        os.environ["REASONRANK_CACHE"] = cache  # exports of this run only
        for label, model in models.items():
            precisions = ["fp32", *args.precisions.split(",")]
            options = extra_options if label in extras else {}
            rerankers = {p: load_reranker(model, progress=False, precision=p, **options) for p in precisions}
            for collection, (requests, qrels) in collections.items():
                reference = rerankers["fp32"].rerank_many(requests)
                base = ndcg10(reference, qrels)
                for precision, reranker in rerankers.items():
                    if precision == "fp32":
                        continue
                    rankings = reranker.rerank_many(requests)
                    tau, ndcg = mean_tau(rankings, reference), ndcg10(rankings, qrels)
                    keeps = tau >= TAU_GOAL and abs(ndcg - base) <= NDCG_GOAL
                    depth = max(len(r.candidates) for r in requests)
                    print(
                        f"| {label} | {collection} | {len(requests)} x {depth} | {precision} | {tau:.4f} "
                        f"| {ndcg:.4f} | {base:.4f} | {ndcg - base:+.4f} | {'yes' if keeps else '**no**'} |",
                        flush=True,
                    )


if __name__ == "__main__":
    main()
