"""Effectiveness with pytrec_eval: nDCG@10, MAP@100 and Recall@100, as Pyserini reports them.

The command around :mod:`reasonrank.evaluation`.
"""

from __future__ import annotations

import argparse
import sys

from reasonrank.errors import command
from reasonrank.evaluation import evaluate, format_table
from reasonrank.io.runs import read_run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m reasonrank.evaluate", description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, nargs="+", help="one or more TREC run files")
    parser.add_argument("--qrels", required=True, help="TREC qrels file or Pyserini qrels name")
    parser.add_argument("--topics", help="topics whose excluded_ids are dropped from the run (BRIGHT)")
    parser.add_argument("--per-query", action="store_true", help="also print nDCG@10 per query")
    return parser


def run(args: argparse.Namespace) -> int:
    from reasonrank.io.topics import load_qrels, load_topics

    qrels = load_qrels(args.qrels)
    excluded = {q.qid: q.excluded_ids for q in load_topics(args.topics)} if args.topics else None
    results = {run: evaluate(read_run(run), qrels, excluded) for run in args.run}
    print(format_table(results))
    if args.per_query:
        for run, evaluation in results.items():
            for qid, scores in sorted(evaluation.per_query.items()):
                print(f"{run}\t{qid}\t{scores['nDCG@10']:.4f}")
    return 0


main = command(build_parser, run)

if __name__ == "__main__":
    sys.exit(main())
