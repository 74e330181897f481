"""One self-contained HTML page comparing a reranked run with its baseline.

``python -m reasonrank.report``.

The command around :mod:`reasonrank.report`.
"""

from __future__ import annotations

import argparse
import sys

from reasonrank.errors import UserError, command
from reasonrank.io.paths import check_paths
from reasonrank.io.runs import atomic_write
from reasonrank.report import load_explanations, load_passages, load_run, render_report


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m reasonrank.report", description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="the reranked TREC run")
    parser.add_argument("--baseline", help="the run it reranked (e.g. the BM25 run), shown beside it")
    parser.add_argument("--explanations", help="the JSONL written by reasonrank.search --explanations")
    parser.add_argument("--qrels", help="TREC qrels file or Pyserini qrels name: relevance marks and metrics")
    parser.add_argument("--topics", help="topics file or name: query texts and topic order (BRIGHT: excluded_ids)")
    parser.add_argument("--depth", type=int, default=10, help="documents shown per list (default 10)")
    parser.add_argument("--corpus", help="the corpus file or folder the runs were made from: show passage texts "
                        "with their evidence highlighted")
    parser.add_argument("--out", required=True, help="the HTML file to write")
    return parser


def run(args: argparse.Namespace) -> int:
    from reasonrank.io.topics import load_qrels, load_topics

    check_paths(
        [(f"--{flag}", getattr(args, flag)) for flag in ("run", "baseline", "explanations", "qrels", "topics",
                                                         "corpus")],
        [("--out", args.out)],
    )
    run_file = load_run(args.run)
    baseline = load_run(args.baseline) if args.baseline else None
    shown = {docid for listed in (run_file, baseline) if listed for docs in listed.ranked.values()
             for docid, _ in docs[: args.depth]}
    page = render_report(
        run_file,
        baseline,
        load_explanations(args.explanations) if args.explanations else None,
        load_qrels(args.qrels) if args.qrels else None,
        load_topics(args.topics) if args.topics else (),
        args.depth,
        load_passages(args.corpus, shown) if args.corpus else None,
    )
    try:
        with atomic_write(args.out) as out:
            out.write(page)
    except OSError as error:
        raise UserError(f"cannot write {args.out} ({error.strerror}): pass a writable --out path") from None
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


main = command(build_parser, run)

if __name__ == "__main__":
    sys.exit(main())
