"""First stage → rerankers → TREC run (+ explanations) → metrics.

``python -m reasonrank.search``.

With no arguments it runs the embedded default: BM25 over the bundled DL19 mini collection, the default
reranker, a run under ``runs/`` and the metrics table of the first stage and the final run.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from reasonrank.errors import UserError, command
from reasonrank.pipeline import DEFAULT_RERANKER, SearchResult, SearchSettings, run_search
from reasonrank.retrieval.base import FIRST_STAGES
from reasonrank.scale.ray import define_ray_args, plan_from_args


def parse_options(pairs: Sequence[str]) -> dict[str, object]:
    """``--option batch_size=64`` → ``{"batch_size": 64}`` (ints, floats and true/false are converted)."""
    options: dict[str, object] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UserError(f"--option {pair!r} is not KEY=VALUE (e.g. --option batch_size=64)")
        for convert in (int, float):
            try:
                options[key] = convert(value)
                break
            except ValueError:
                continue
        else:
            options[key] = {"true": True, "false": False}.get(value.lower(), value)
    return options


def define_search_args(parser: argparse.ArgumentParser) -> None:
    """Flags named like Pyserini's (``--index --topics --output --hits --batch-size --threads``)."""
    first = parser.add_argument_group("first stage")
    first.add_argument(
        "--index",
        help="Pyserini prebuilt index name, Lucene index folder, or corpus file/folder "
        "(JSONL, BEIR corpus.jsonl, TREC CAR .cbor); default: the embedded DL19 mini collection",
    )
    first.add_argument("--topics", help="Pyserini topic name, TSV, BEIR queries.jsonl, BRIGHT jsonl, or irds:<id>")
    first.add_argument(
        "--query-field",
        default="query",
        choices=["query", "reasoning"],
        help="BRIGHT jsonl topics: use the original query or GPT-4's reasoning as the query",
    )
    first.add_argument(
        "--first-stage",
        default="bm25",
        metavar="{" + ",".join(FIRST_STAGES) + "}",
        help="BM25 (Lucene), dense retrieval with the MiniLM bi-encoder (faiss), both fused by RRF (hybrid), "
        "run:PATH (another system's TREC run, passages from --index) or rank-llm:PATH (a rank_llm request file, "
        "passages included; pass it as --topics too)",
    )
    first.add_argument("--hits", type=int, default=100, help="candidates per query from the first stage")
    first.add_argument("--k1", type=float, default=0.9, help="BM25 k1 (Pyserini's default)")
    first.add_argument("--b", type=float, default=0.4, help="BM25 b (Pyserini's default)")
    first.add_argument("--remove-query", action="store_true", help="drop a hit whose docid equals the qid")
    first.add_argument("--threads", type=int, default=1, help="search threads")
    rerank = parser.add_argument_group("reranking")
    rerank.add_argument(
        "--reranker",
        default=DEFAULT_RERANKER,
        help=f"registry name, hub id or local model folder, or 'none' (default: {DEFAULT_RERANKER})",
    )
    rerank.add_argument(
        "--reranker-family",
        help="family for a hub id or folder: cross-encoder, bi-encoder, pointwise, rank1, listwise, pairwise, fusion, "
        "maxp",
    )
    rerank.add_argument(
        "--cascade",
        help="NAME:DEPTH stages, e.g. minilm-bi:100,smollm2-pointwise:20 (replaces --reranker/--rerank-depth)",
    )
    rerank.add_argument("--rerank-depth", type=int, default=100, help="rerank the top K candidates (default 100)")
    rerank.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="reranker/backend option, e.g. batch_size=64, backend=openai, device=cuda (repeatable)",
    )
    rerank.add_argument(
        "--backend",
        choices=["transformers", "vllm", "openai"],
        help="the generative rerankers' engine (same as --option backend=...; default: the reranker's own)",
    )
    rerank.add_argument("--batch-size", type=int, default=None,
                        help="queries per reranking step and checkpoint (default: what suits the reranker's backend, "
                        "256 on vllm and openai, 8 on transformers and for encoders)")
    output = parser.add_argument_group("output")
    output.add_argument("--output", help="TREC run file (default: runs/run.<collection>.<reranker>.txt)")
    output.add_argument(
        "--explanations",
        help="JSONL with the explanation, evidence, label and score of each query's top documents "
        "(default for a reranked run: beside --output, RUN.explanations.jsonl)",
    )
    output.add_argument(
        "--explanations-depth",
        type=int,
        default=10,
        help="explain the top K documents of each query (default 10, as many as the report shows): evidence "
        "sentences for scoring rerankers, and K lines per query in --explanations",
    )
    output.add_argument(
        "--evidence-method",
        default="sentence",
        choices=["sentence", "window", "leave-one-out"],
        help="how a scoring reranker's model finds evidence (docs/evidence.md; default sentence)",
    )
    output.add_argument("--no-evidence", action="store_true", help="no evidence sentences (faster)")
    output.add_argument(
        "--rank-llm-output",
        help="also write the final rankings, with their passages, as a rank_llm result file (JSONL, or JSON for "
        ".json), which rank_llm reads as requests",
    )
    output.add_argument("--qrels", help="TREC qrels file or Pyserini qrels name: print metrics")
    output.add_argument("--shard", help="I/N: only every N-th topic, starting at I (merge with reasonrank.merge)")
    output.add_argument("--no-resume", action="store_true", help="ignore a checkpoint left by an interrupted run")
    output.add_argument("--quiet", action="store_true", help="no progress bars")
    define_ray_args(parser)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m reasonrank.search", description=__doc__.splitlines()[0])
    define_search_args(parser)
    return parser


def settings_from(args: argparse.Namespace) -> SearchSettings:
    options = parse_options(args.option)
    if getattr(args, "backend", None):  # commands that reuse the search flags may lack it
        options["backend"] = args.backend
    return SearchSettings(
        index=args.index, topics=args.topics, query_field=args.query_field, first_stage=args.first_stage,
        hits=args.hits, k1=args.k1, b=args.b, remove_query=args.remove_query, threads=args.threads,
        reranker=args.reranker, reranker_family=args.reranker_family, cascade=args.cascade,
        rerank_depth=args.rerank_depth, options=options, batch_size=args.batch_size,
        output=args.output, explanations=args.explanations, explanations_depth=args.explanations_depth,
        rank_llm_output=args.rank_llm_output,
        evidence=not args.no_evidence, evidence_method=args.evidence_method, qrels=args.qrels, shard=args.shard,
        resume=not args.no_resume, progress=not args.quiet, ray=plan_from_args(args),
    )


def report(result: SearchResult) -> None:
    """What a search prints: the reranker's events and the file written (stderr), the metrics table (stdout)."""
    from reasonrank.evaluation import format_table

    if result.events:
        print("reranker events: " + ", ".join(f"{k}={v}" for k, v in sorted(result.events.items())), file=sys.stderr)
    notes = f" and {result.explanations}" if result.explanations else ""
    print(f"wrote {result.output} ({len(result.final)} queries){notes}", file=sys.stderr)
    if result.evaluations:
        print(format_table(result.evaluations))


def run(args: argparse.Namespace) -> int:
    report(run_search(settings_from(args)))
    return 0


main = command(
    build_parser, run, on_interrupt="interrupted: re-run the same command to continue from the last finished query"
)

if __name__ == "__main__":
    sys.exit(main())
