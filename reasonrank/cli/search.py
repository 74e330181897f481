"""``python -m reasonrank.search``: first stage → rerankers → TREC run (+ explanations) → metrics.

With no arguments it runs the embedded default: BM25 over the bundled DL19 mini collection, the default
reranker, a run under ``runs/`` and the metrics table of the first stage and the final run.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from tqdm import tqdm

from reasonrank.errors import UserError, report_error
from reasonrank.rerank.base import Reranker
from reasonrank.types import RankedCandidate, Ranking, Request

DEFAULT_RERANKER = "minilm-hybrid"
EMBEDDED = "msmarco-dl19-mini"
log = logging.getLogger("reasonrank")


@dataclass(frozen=True, slots=True)
class EmbeddedCollection:
    corpus: Path
    topics: Path
    qrels: Path


def embedded_collection() -> EmbeddedCollection:
    folder = Path(str(resources.files("reasonrank") / "data" / EMBEDDED))
    return EmbeddedCollection(
        folder / "corpus.jsonl", folder / "topics.dl19-passage.tsv", folder / "qrels.dl19-passage.txt"
    )


def parse_shard(spec: str) -> tuple[int, int]:
    index, sep, count = spec.partition("/")
    if not sep or not index.isdigit() or not count.isdigit() or not 0 <= int(index) < int(count):
        raise UserError(f"--shard {spec!r} is not I/N with 0 <= I < N (e.g. --shard 0/4)")
    return int(index), int(count)


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
        choices=["bm25", "dense"],
        help="BM25 (Lucene) or dense retrieval with the MiniLM bi-encoder (faiss)",
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
        help="family for a hub id or folder: cross-encoder, bi-encoder, pointwise, rank1, listwise, pairwise, fusion",
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
    rerank.add_argument("--batch-size", type=int, default=8, help="queries per reranking step and checkpoint")
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
    output.add_argument("--qrels", help="TREC qrels file or Pyserini qrels name: print metrics")
    output.add_argument("--shard", help="I/N: only every N-th topic, starting at I (merge with reasonrank.merge)")
    output.add_argument("--no-resume", action="store_true", help="ignore a checkpoint left by an interrupted run")
    output.add_argument("--quiet", action="store_true", help="no progress bars")


def first_stage_ranking(request: Request, model: str) -> Ranking:
    items = tuple(RankedCandidate(c, c.score, rank) for rank, c in enumerate(request.candidates, start=1))
    return Ranking(request.query, items, model)


def build_reranker(args: argparse.Namespace):
    """The configured reranker wrapped to its depth, or None for ``--reranker none``."""
    from reasonrank.rerank.cascade import Cascade, HeadReranker, parse_cascade
    from reasonrank.rerank.registry import load_reranker

    options = parse_options(args.option)
    if args.cascade:
        return Cascade([(load_reranker(name, **options), depth) for name, depth in parse_cascade(args.cascade)])
    if args.reranker.lower() == "none":
        return None
    return HeadReranker(load_reranker(args.reranker, family=args.reranker_family, **options), args.rerank_depth)


def text_depth(reranker: Reranker | None) -> int | None:
    """How many leading candidates any stage of ``reranker`` reads: only those need their passage text.

    None (every candidate) for a reranker not wrapped to a depth, which reads the whole list.
    """
    from reasonrank.rerank.cascade import Cascade, HeadReranker

    if reranker is None:
        return 0
    if isinstance(reranker, Cascade):
        return max(stage.depth for stage in reranker.stages)
    if isinstance(reranker, HeadReranker):
        return reranker.depth
    return None


def with_evidence(reranker: Reranker | None, args: argparse.Namespace) -> Reranker | None:
    """``reranker`` with evidence for the top ``--explanations-depth`` documents, where its model can score
    sentences (encoders, fusion, cascades ending in one); generative rerankers explain themselves."""
    if reranker is None or args.no_evidence or reranker.evidence_scorer() is None:
        return reranker
    from reasonrank.rerank.evidence import EvidenceReranker

    return EvidenceReranker(reranker, args.explanations_depth, args.evidence_method)


def explanations_beside(output: Path) -> Path:
    return output.with_name(f"{output.stem}.explanations.jsonl")


def build_first_stage(args: argparse.Namespace, index: str):
    if args.first_stage == "dense":
        from reasonrank.retrieval.dense import DenseFirstStage

        return DenseFirstStage(index)
    from reasonrank.retrieval.bm25 import Bm25FirstStage

    return Bm25FirstStage(index, k1=args.k1, b=args.b)


def default_output(args: argparse.Namespace, index: str) -> Path:
    collection = Path(index).stem if Path(index).exists() else index
    collection = EMBEDDED if args.index is None else collection
    reranker = args.cascade or args.reranker
    return Path("runs") / f"run.{collection}.{reranker.replace('/', '_').replace(':', '-').replace(',', '+')}.txt"


def run_search(args: argparse.Namespace, reranker: Reranker | None = None) -> int:
    """Run the pipeline; a caller that passes ``reranker`` (loaded once for many runs) keeps ownership of it."""
    from reasonrank.evaluation import evaluate, format_table
    from reasonrank.io.checkpoints import Checkpoint
    from reasonrank.io.runs import rankings_to_run, write_explanations, write_run
    from reasonrank.io.topics import load_qrels, load_topics

    embedded = embedded_collection()
    index = args.index or str(embedded.corpus)
    topics = args.topics or str(embedded.topics)
    qrels_spec = args.qrels or (str(embedded.qrels) if args.index is None and args.topics is None else None)
    if min(args.hits, args.rerank_depth, args.batch_size, args.explanations_depth) < 1:
        raise UserError("--hits, --rerank-depth, --batch-size and --explanations-depth must be at least 1")
    output = Path(args.output) if args.output else default_output(args, index)

    queries = load_topics(topics, query_field=args.query_field)
    if args.shard:
        shard, shards = parse_shard(args.shard)
        queries = queries[shard::shards]
    qrels = load_qrels(qrels_spec) if qrels_spec else None  # read early: a bad qrels file fails before the work
    owns_reranker = reranker is None
    if owns_reranker:
        reranker = build_reranker(args)

    first_stage = build_first_stage(args, index)
    # Reading passages out of the Lucene index costs BM25 more than the search itself: fetch only those read.
    requests = first_stage.search(
        queries, hits=args.hits, threads=args.threads, remove_query=args.remove_query, progress=not args.quiet,
        text_depth=text_depth(reranker),
    )
    baseline = [first_stage_ranking(r, args.first_stage) for r in requests]
    explained = with_evidence(reranker, args)

    if reranker is None:
        final = baseline
    else:
        settings = {k: v for k, v in vars(args).items() if k not in {"quiet", "no_resume", "threads", "batch_size"}}
        checkpoint = Checkpoint(output, {**settings, "index": index, "topics": topics})
        if args.no_resume:
            checkpoint.remove()
        done = checkpoint.load({q.qid: q for q in queries})
        pending = [r for r in requests if r.query.qid not in done]
        with tqdm(
            total=len(requests),
            initial=len(done),
            desc=f"reranking ({reranker.name})",
            unit="query",
            disable=args.quiet,
        ) as progress:
            for start in range(0, len(pending), args.batch_size):
                chunk = explained.rerank_many(pending[start : start + args.batch_size])
                checkpoint.append(chunk)
                done.update((ranking.query.qid, ranking) for ranking in chunk)
                progress.update(len(chunk))
        final = [done[r.query.qid] for r in requests]
        if owns_reranker:
            reranker.close()

    write_run(output, final)
    explanations = args.explanations or (explanations_beside(output) if reranker is not None else None)
    if explanations:
        write_explanations(explanations, final, args.explanations_depth)
    if reranker is not None:
        checkpoint.remove()
        repairs = {}
        for ranking in final:
            for key, value in ranking.stats.items():
                repairs[key] = repairs.get(key, 0) + value
        if repairs:
            print("reranker events: " + ", ".join(f"{k}={v}" for k, v in sorted(repairs.items())), file=sys.stderr)
    print(f"wrote {output} ({len(final)} queries)" + (f" and {explanations}" if explanations else ""), file=sys.stderr)

    if qrels is not None:
        excluded = {q.qid: q.excluded_ids for q in queries if q.excluded_ids}
        columns = {args.first_stage: evaluate(rankings_to_run(baseline), qrels, excluded)}
        if reranker is not None:
            columns[reranker.name] = evaluate(rankings_to_run(final), qrels, excluded)
        print(format_table(columns))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reasonrank.search", description=__doc__.splitlines()[0])
    define_search_args(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return run_search(args)
    except UserError as error:
        return report_error(error)
    except KeyboardInterrupt:
        print("interrupted: re-run the same command to continue from the last finished query", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
