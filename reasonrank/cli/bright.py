"""A first stage (+ a reranker) over the 12 BRIGHT tasks and the nDCG@10 table.

``python -m reasonrank.bright``.

Each task goes through the search pipeline (first stage, reranking, run file). Online BM25 searches Pyserini's
prebuilt ``bright-{task}`` index and topics/qrels come from Pyserini; offline pass ``--corpus-dir`` (the BRIGHT
documents) and ``--topics-dir`` (``topics.bright-{task}-original.jsonl`` and ``qrels.bright-{task}.txt``).
As in Pyserini's BRIGHT regressions, hits whose docid is the qid are removed (``--remove-query``) and each query's
``excluded_ids`` (from the original jsonl topics) never reach the run.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from tqdm import tqdm

from reasonrank.errors import EXIT_USER_ERROR, UserError, command
from reasonrank.io.paths import check_paths

if TYPE_CHECKING:
    from reasonrank.pipeline import SearchSettings

TASKS = (
    "biology", "earth-science", "economics", "psychology", "robotics", "stackoverflow", "sustainable-living",
    "pony", "leetcode", "aops", "theoremqa-theorems", "theoremqa-questions",
)
CORPUS_SUFFIXES = (".jsonl", ".jsonl.gz", ".json")


@dataclass(frozen=True, slots=True)
class TaskSources:
    """Where one task's index, topics and qrels come from; ``prebuilt`` marks a Pyserini index name."""

    task: str
    index: str
    topics: str
    qrels: str
    prebuilt: bool


@dataclass(frozen=True, slots=True)
class TaskResult:
    """nDCG@10 per table row (``BM25`` and the reranker), or ``skipped`` saying why the task did not run."""

    task: str
    ndcg: dict[str, float]
    runs: tuple[Path, ...] = ()
    skipped: str | None = None


def parse_tasks(spec: str) -> list[str]:
    """``all`` or a comma-separated list of task names, in the order BRIGHT's tables use."""
    if spec.strip().lower() == "all":
        return list(TASKS)
    names = [name.strip() for name in spec.split(",") if name.strip()]
    unknown = [name for name in names if name not in TASKS]
    if unknown or not names:
        raise UserError(f"--tasks {spec!r}: unknown task(s) {', '.join(unknown) or '(none given)'}; "
                        f"use 'all' or some of {', '.join(TASKS)}")
    return [task for task in TASKS if task in names]


def task_sources(
    task: str,
    query_field: str = "query",
    index_template: str = "bright-{task}",
    corpus_dir: str | Path | None = None,
    topics_dir: str | Path | None = None,
) -> TaskSources:
    """The index, topics and qrels of ``task``: local files where folders are given, else Pyserini names."""
    if corpus_dir is not None:
        index = str(_local_corpus(Path(corpus_dir).expanduser(), task))
        prebuilt = False
    else:
        index = index_template.format(task=task)
        prebuilt = not Path(index).expanduser().exists()
    if topics_dir is not None:
        folder = Path(topics_dir).expanduser()
        topics, qrels = folder / f"topics.bright-{task}-original.jsonl", folder / f"qrels.bright-{task}.txt"
        for path in (topics, qrels):
            if not path.is_file():
                raise UserError(f"--topics-dir {folder}: {path.name} is missing (BRIGHT original topics jsonl and "
                                "TREC qrels, as in Pyserini/Anserini's topics and qrels folders)")
        return TaskSources(task, index, str(topics), str(qrels), prebuilt)
    # Pyserini's plain topics hold only the query; its "-original" topics also carry the reasoning text.
    topics = f"bright-{task}" if query_field == "query" else f"bright-{task}-original"
    return TaskSources(task, index, topics, f"bright-{task}", prebuilt)


def _local_corpus(folder: Path, task: str) -> Path:
    for candidate in [folder / task, *(folder / f"{task}{suffix}" for suffix in CORPUS_SUFFIXES)]:
        if candidate.exists():
            return candidate
    raise UserError(f"--corpus-dir {folder}: neither {task}/ nor {task}.jsonl is there "
                    "(BRIGHT documents as JSONL with id and contents, or a Lucene index folder)")


def format_bright_table(rows: Mapping[str, Mapping[str, float]], tasks: Sequence[str] = TASKS) -> str:
    """Markdown: one row per model, nDCG@10 × 100 per task and the average; ``-`` for a task not run.

    The average is BRIGHT's 12-task mean; when some tasks are missing it is the mean of those run, marked
    ``(n/12)`` so that it is never mistaken for the full average.
    """
    header = "| model | " + " | ".join(tasks) + " | avg |"
    lines = [header, "|---" * (len(tasks) + 2) + "|"]
    for name, scores in rows.items():
        cells = [f"{100 * scores[task]:.1f}" if task in scores else "-" for task in tasks]
        done = [scores[task] for task in tasks if task in scores]
        if not done:
            average = "-"
        elif len(done) == len(tasks):
            average = f"{100 * sum(done) / len(done):.1f}"
        else:
            average = f"{100 * sum(done) / len(done):.1f} ({len(done)}/{len(tasks)})"
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {average} |")
    return "\n".join(lines)


def _slug(text: str) -> str:
    return text.replace("/", "_").replace(":", "-").replace(",", "+")


def _ndcg(run: Path, qrels: dict[str, dict[str, int]], excluded: dict[str, frozenset[str]]) -> float:
    from reasonrank.evaluation import evaluate
    from reasonrank.io.runs import read_run

    return evaluate(read_run(run), qrels, excluded).mean["nDCG@10"]


def first_stage_row(first_stage: str) -> str:
    """The table row of the first stage alone: ``BM25`` as in BRIGHT's tables, else the first stage's name."""
    name, _, argument = first_stage.partition(":")
    if argument:
        return f"{name}:{Path(argument).name}"
    return "BM25" if first_stage == "bm25" else first_stage


def stage_slug(first_stage: str) -> str:
    """The first stage in file names: its name, or ``run-FILE`` for ``run:PATH/FILE``."""
    name, _, argument = first_stage.partition(":")
    return f"{name}-{_slug(Path(argument).name)}" if argument else first_stage


def first_stage_settings(sources: TaskSources, first_stage: str, args: argparse.Namespace) -> SearchSettings:
    """One task's first stage alone, under the conditions of Pyserini's BRIGHT regressions (``pyserini/2cr/
    bright.yaml``: ``--bm25`` with its default k1 0.9 and b 0.4, ``--hits 1000`` by default, ``--remove-query``)."""
    from reasonrank.pipeline import SearchSettings

    return SearchSettings(
        index=sources.index, topics=sources.topics, query_field=args.query_field, first_stage=first_stage,
        hits=args.hits, remove_query=True, threads=args.threads, reranker="none", progress=not args.quiet,
    )


def run_task(sources: TaskSources, args: argparse.Namespace, reranker_label: str | None) -> TaskResult:
    """The first stage, then the reranker if any, for one task; a prebuilt index that cannot be downloaded (or a
    first stage that needs the corpus itself) skips the task."""
    from reasonrank.cli.search import parse_options
    from reasonrank.io.topics import load_qrels, load_topics
    from reasonrank.pipeline import run_search
    from reasonrank.retrieval.bm25 import Bm25FirstStage, prebuilt_index_names
    from reasonrank.retrieval.java import PyseriniCatalogUnavailable

    task, index = sources.task, sources.index
    stage = args.first_stage.replace("{task}", task)  # run:runs/{task}.txt: one run per task
    if sources.prebuilt:
        try:
            known = prebuilt_index_names()
        except PyseriniCatalogUnavailable:  # Pyserini 2.x reads its catalog over the network, as a download does
            return TaskResult(task, {}, skipped=(
                f"could not look up Pyserini's prebuilt index {index!r} (offline?); pass --corpus-dir DIR with "
                f"DIR/{task}.jsonl (BRIGHT documents: id, contents) or DIR/{task}/"))
        if index not in known:
            raise UserError(f"--index-template gives {index!r} for {task}: not a local path and not a Pyserini "
                            "prebuilt index name (e.g. bright-{task})")
        if stage.partition(":")[0] not in ("bm25", "run", "rank-llm"):  # these read no corpus file
            return TaskResult(task, {}, skipped=(
                f"the {stage} first stage reads the documents, and {index!r} is an index name; pass "
                f"--corpus-dir DIR with DIR/{task}.jsonl (BRIGHT documents: id, contents)"))
        try:
            with Bm25FirstStage(index) as first_stage:
                index = str(first_stage.index_dir)  # the downloaded copy, so the runs below reuse it
        except UserError:
            return TaskResult(task, {}, skipped=(
                f"could not download Pyserini's prebuilt index {index!r} (offline?); pass --corpus-dir DIR with "
                f"DIR/{task}.jsonl (BRIGHT documents: id, contents) or DIR/{task}/"))
    try:
        queries = load_topics(sources.topics, query_field=args.query_field)
        qrels = load_qrels(sources.qrels)
    except UserError as error:
        if Path(sources.topics).exists():
            raise
        raise UserError(f"{error} — or pass --topics-dir DIR with BRIGHT's original topics and qrels") from None
    excluded = {q.qid: q.excluded_ids for q in queries if q.excluded_ids}
    first_only = first_stage_settings(replace(sources, index=index), stage, args)
    stages = [(first_stage_row(args.first_stage), stage_slug(stage), first_only)]
    if reranker_label is not None:
        reranked = replace(
            first_only, reranker=args.reranker, reranker_family=args.reranker_family, cascade=args.cascade,
            rerank_depth=args.rerank_depth, batch_size=args.batch_size, options=parse_options(args.option),
        )
        stages.append((reranker_label, _slug(reranker_label), reranked))
    ndcg: dict[str, float] = {}
    runs = []
    for row, slug, settings in stages:
        run = Path(args.output_dir) / f"run.bright-{task}.{slug}.{args.query_field}.txt"
        if not (args.reuse_runs and run.is_file()):
            run_search(replace(settings, output=str(run)))
        ndcg[row] = _ndcg(run, qrels, excluded)
        runs.append(run)
    return TaskResult(task, ndcg, tuple(runs))


def build_parser() -> argparse.ArgumentParser:
    from reasonrank.retrieval.base import FIRST_STAGES

    parser = argparse.ArgumentParser(prog="python -m reasonrank.bright", description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="all", help=f"'all' or a comma-separated subset of: {', '.join(TASKS)}")
    parser.add_argument("--reranker", default="none", help="registry name, hub id or model folder, or 'none' "
                        "for BM25 only (default)")
    parser.add_argument("--reranker-family", help="family for a hub id or folder (see reasonrank.search)")
    parser.add_argument("--cascade", help="NAME:DEPTH stages, e.g. minilm-bi:100,smollm2-pointwise:20")
    parser.add_argument("--query-field", default="query", choices=["query", "reasoning"],
                        help="the original query, or the topic's reasoning text as the query")
    parser.add_argument("--first-stage", default="bm25", metavar="{" + ",".join(FIRST_STAGES) + "}",
                        help="the first stage (dense and hybrid read the documents: pass --corpus-dir), or "
                        "run:PATH with {task} in PATH, one TREC run per task (e.g. ReasonIR's top 100)")
    parser.add_argument("--index-template", default="bright-{task}",
                        help="first-stage index per task: a Pyserini prebuilt name or a path, with {task}")
    parser.add_argument("--corpus-dir", help="offline: folder with {task}.jsonl (id, contents) or {task}/ per task")
    parser.add_argument("--topics-dir", help="folder with topics.bright-{task}-original.jsonl and "
                        "qrels.bright-{task}.txt (default: Pyserini's bright-{task} topics and qrels)")
    parser.add_argument("--hits", type=int, default=1000,
                        help="first-stage candidates per query (default 1000, as Pyserini's BRIGHT regressions)")
    parser.add_argument("--rerank-depth", type=int, default=100, help="rerank the top K (default 100)")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="reranker option")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="queries per reranking step (default: what suits the reranker's backend, 256 on vllm "
                        "and openai, 8 on transformers and for encoders)")
    parser.add_argument("--threads", type=int, default=1, help="first-stage search threads")
    parser.add_argument("--output-dir", default="runs/bright", help="per-task runs and the table (runs/bright)")
    parser.add_argument("--reuse-runs", action="store_true",
                        help="evaluate a task's run file if it already exists instead of recomputing it")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def run(args: argparse.Namespace) -> int:
    tasks = parse_tasks(args.tasks)
    sources = [task_sources(t, args.query_field, args.index_template, args.corpus_dir, args.topics_dir)
               for t in tasks]
    index_flag = "--corpus-dir" if args.corpus_dir else "--index-template"
    check_paths(
        [("--corpus-dir", args.corpus_dir), ("--topics-dir", args.topics_dir), ("--reranker", args.reranker),
         *((index_flag, source.index) for source in sources if not source.prebuilt)],
        [("--output-dir", args.output_dir)],
    )
    label = args.cascade or (None if args.reranker.lower() == "none" else args.reranker)
    first_row = first_stage_row(args.first_stage)
    rows: dict[str, dict[str, float]] = {first_row: {}, **({label: {}} if label else {})}
    for source in tqdm(sources, desc="BRIGHT tasks", unit="task", disable=args.quiet or len(sources) < 2):
        result = run_task(source, args, label)
        if result.skipped:
            print(f"{result.task}: skipped: {result.skipped}", file=sys.stderr)
            continue
        for row, score in result.ndcg.items():
            rows[row][result.task] = score
        scores = ", ".join(f"{row} {100 * score:.1f}" for row, score in result.ndcg.items())
        print(f"{result.task}: nDCG@10 {scores}", file=sys.stderr)
    table = format_bright_table(rows)
    system = _slug(label) if label else stage_slug(args.first_stage)
    path = Path(args.output_dir) / f"bright.{system}.{args.query_field}.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"BRIGHT nDCG@10 (x100), query field: {args.query_field}, hits {args.hits}"
                    + (f", rerank depth {args.rerank_depth}" if label and not args.cascade else "") + "\n\n"
                    + table + "\n", encoding="utf-8")
    print(table)
    print(f"wrote {path}", file=sys.stderr)
    return 0 if rows[first_row] else EXIT_USER_ERROR  # every task skipped: the user must pass --corpus-dir


main = command(
    build_parser, run,
    on_interrupt="interrupted: re-run the same command to continue (finished runs are kept with --reuse-runs)",
)

if __name__ == "__main__":
    sys.exit(main())
