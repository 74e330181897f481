"""Effectiveness with pytrec_eval: nDCG@10, MAP@100 and Recall@100, as Pyserini reports them.

With BRIGHT topics (which carry ``excluded_ids``) those documents are dropped from the run before scoring, as
BRIGHT's evaluation does. The command is ``python -m reasonrank.evaluate`` (:mod:`reasonrank.cli.evaluate`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pytrec_eval

from reasonrank.errors import UserError
from reasonrank.io.runs import Run

# Display name -> pytrec_eval measure.
METRICS = {"nDCG@10": "ndcg_cut_10", "MAP@100": "map_cut_100", "R@100": "recall_100"}
Qrels = dict[str, dict[str, int]]


@dataclass(frozen=True, slots=True)
class Evaluation:
    mean: dict[str, float]
    per_query: dict[str, dict[str, float]]
    queries: int


def drop_excluded(run: Mapping[str, Mapping[str, float]], excluded: Mapping[str, frozenset[str]]) -> Run:
    return {qid: {d: s for d, s in docs.items() if d not in excluded.get(qid, ())} for qid, docs in run.items()}


def evaluate(
    run: Mapping[str, Mapping[str, float]],
    qrels: Qrels,
    excluded: Mapping[str, frozenset[str]] | None = None,
    metrics: Mapping[str, str] = METRICS,
) -> Evaluation:
    """Mean and per-query scores over the queries that are both judged and in the run (trec_eval's default)."""
    if excluded:
        run = drop_excluded(run, excluded)
    judged = {qid: dict(docs) for qid, docs in run.items() if qid in qrels}
    if not judged:
        raise UserError("no query of the run has judgments in the qrels: check that --qrels matches --topics")
    evaluator = pytrec_eval.RelevanceEvaluator(qrels, set(metrics.values()))
    raw = evaluator.evaluate(judged)
    per_query = {qid: {name: scores[measure] for name, measure in metrics.items()} for qid, scores in raw.items()}
    mean = {name: sum(q[name] for q in per_query.values()) / len(per_query) for name in metrics}
    return Evaluation(mean, per_query, len(per_query))


def format_table(columns: Mapping[str, Evaluation]) -> str:
    """A metrics table with one column per run (e.g. first stage and reranked)."""
    names = list(columns)
    width = max(10, *(len(n) for n in names))
    header = f"{'metric':<10}" + "".join(f"{n:>{width + 2}}" for n in names)
    rows = [header]
    for metric in METRICS:
        rows.append(f"{metric:<10}" + "".join(f"{columns[n].mean[metric]:>{width + 2}.4f}" for n in names))
    rows.append(f"{'queries':<10}" + "".join(f"{columns[n].queries:>{width + 2}d}" for n in names))
    return "\n".join(rows)
