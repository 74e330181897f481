"""Join the shard runs of ``reasonrank.search --shard I/N`` into one run.

``python -m reasonrank.merge``.

The command around :mod:`reasonrank.io.merge`.
"""

from __future__ import annotations

import argparse
import sys

from reasonrank.errors import command
from reasonrank.io.merge import merge
from reasonrank.io.paths import check_distinct, check_paths


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m reasonrank.merge", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", required=True, nargs="+", metavar="RUN", help="the shard run files")
    parser.add_argument("--output", required=True, help="the merged TREC run file")
    parser.add_argument("--topics", help="the topics of the unsharded run: queries come out in their order "
                        "(default: the order the queries appear in --runs)")
    parser.add_argument("--explanations", nargs="+", default=[], metavar="JSONL",
                        help="the shards' explanation files, merged in the same query order")
    parser.add_argument("--explanations-output", help="the merged explanations file")
    return parser


def run(args: argparse.Namespace) -> int:
    check_distinct("--runs", args.runs)
    check_distinct("--explanations", args.explanations)
    check_paths(
        [*(("--runs", run) for run in args.runs), ("--topics", args.topics),
         *(("--explanations", notes) for notes in args.explanations)],
        [("--output", args.output), ("--explanations-output", args.explanations_output)],
    )
    order = None
    if args.topics:
        from reasonrank.io.topics import load_topics

        order = [query.qid for query in load_topics(args.topics)]
    count = merge(args.runs, args.output, order, args.explanations, args.explanations_output)
    print(f"wrote {args.output} ({count} queries from {len(args.runs)} runs)", file=sys.stderr)
    return 0


main = command(build_parser, run)

if __name__ == "__main__":
    sys.exit(main())
