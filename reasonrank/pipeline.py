"""The search pipeline without a command line: topics → first stage → rerankers → run + explanations → metrics.

Reranking goes in steps of ``batch_size`` queries (by default the reranker's ``queries_per_step``: 256 on vLLM and the
HTTP backend, 8 on transformers), each step appended to a checkpoint, so a killed run resumes where it stopped and
gives the run an uninterrupted one would. ``python -m reasonrank.search`` (:mod:`reasonrank.cli.search`) and
``bright`` build a :class:`SearchSettings` and call :func:`run_search`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tqdm import tqdm

from reasonrank.errors import UserError
from reasonrank.evaluation import Evaluation
from reasonrank.io.corpus import cache_root
from reasonrank.io.paths import check_paths
from reasonrank.io.text import check_writable
from reasonrank.rerank.base import Reranker
from reasonrank.retrieval.base import FirstStageSettings, TextScorer
from reasonrank.types import RankedCandidate, Ranking, Request

if TYPE_CHECKING:
    from reasonrank.scale.ray import RayPlan

DEFAULT_RERANKER = "minilm-hybrid"
EMBEDDED = "msmarco-dl19-mini"


@dataclass(frozen=True, slots=True)
class EmbeddedCollection:
    corpus: Path
    topics: Path
    qrels: Path


def embedded_collection() -> EmbeddedCollection:
    """The DL19 mini collection shipped inside the package: what a search with no index or topics runs on."""
    folder = Path(str(resources.files("reasonrank") / "data" / EMBEDDED))
    return EmbeddedCollection(
        folder / "corpus.jsonl", folder / "topics.dl19-passage.tsv", folder / "qrels.dl19-passage.txt"
    )


@dataclass(frozen=True)
class SearchSettings:
    """One search: the command line's flags as values (see ``python -m reasonrank.search --help``)."""

    index: str | None = None  # None: the embedded collection (its topics and qrels too, unless given)
    topics: str | None = None
    query_field: str = "query"
    first_stage: str = "bm25"
    hits: int = 100
    k1: float = 0.9
    b: float = 0.4
    remove_query: bool = False
    threads: int = 1
    reranker: str = DEFAULT_RERANKER  # or "none"
    reranker_family: str | None = None
    cascade: str | None = None  # NAME:DEPTH,... replaces reranker and rerank_depth
    rerank_depth: int = 100
    options: dict[str, Any] = field(default_factory=dict)
    batch_size: int | None = None  # queries per reranking step; None: what suits the reranker's backend
    output: str | None = None
    explanations: str | None = None  # None: beside the run (RUN.explanations.jsonl) when something reranks
    explanations_depth: int = 10  # the top K of each query are explained and written, as many as the report shows
    rank_llm_output: str | None = None  # the final rankings in rank_llm's result format too (reasonrank.io.rank_llm)
    evidence: bool = True  # evidence sentences for scoring rerankers (reasonrank.rerank.evidence)
    evidence_method: str = "sentence"
    qrels: str | None = None
    shard: str | None = None  # I/N
    resume: bool = True
    progress: bool = True
    ray: RayPlan | None = None  # rerank on a Ray cluster (reasonrank.scale.ray) instead of in this process

    def checkpoint_key(self, index: str, topics: str) -> dict[str, Any]:
        """What makes two runs the same run: a checkpoint is resumed only under the same key."""
        ignored = {"threads", "batch_size", "resume", "progress", "ray", "rank_llm_output"}
        return {**{k: v for k, v in asdict(self).items() if k not in ignored}, "index": index, "topics": topics}


@dataclass(frozen=True)
class SearchResult:
    output: Path
    explanations: Path | None
    first_stage: list[Ranking]
    final: list[Ranking]  # the first stage's rankings again when nothing reranks
    reranker_name: str | None
    events: dict[str, int]  # the reranker's repair/fallback counts, summed over queries
    evaluations: dict[str, Evaluation]  # column name -> metrics, when qrels were given


def parse_shard(spec: str) -> tuple[int, int]:
    index, sep, count = spec.partition("/")
    if not sep or not index.isdigit() or not count.isdigit() or not 0 <= int(index) < int(count):
        raise UserError(f"--shard {spec!r} is not I/N with 0 <= I < N (e.g. --shard 0/4)")
    return int(index), int(count)


def build_reranker(settings: SearchSettings) -> Reranker | None:
    """The configured reranker wrapped to its depth, or None for ``reranker="none"``."""
    from reasonrank.rerank.cascade import Cascade, HeadReranker, parse_cascade
    from reasonrank.rerank.registry import load_reranker

    if settings.cascade:
        stages = parse_cascade(settings.cascade)
        return Cascade([(load_reranker(name, **settings.options), depth) for name, depth in stages])
    if settings.reranker.lower() == "none":
        return None
    reranker = load_reranker(settings.reranker, family=settings.reranker_family, **settings.options)
    return HeadReranker(reranker, settings.rerank_depth)


def first_stage_ranking(request: Request, model: str) -> Ranking:
    items = tuple(RankedCandidate(c, c.score, rank) for rank, c in enumerate(request.candidates, start=1))
    return Ranking(request.query, items, model)


def default_output(settings: SearchSettings, index: str) -> Path:
    collection = Path(index).stem if Path(index).exists() else index
    collection = EMBEDDED if settings.index is None else collection
    reranker = settings.cascade or settings.reranker
    return Path("runs") / f"run.{collection}.{reranker.replace('/', '_').replace(':', '-').replace(',', '+')}.txt"


def run_search(settings: SearchSettings, reranker: Reranker | None = None) -> SearchResult:
    """Run the pipeline; a caller that passes ``reranker`` (loaded once for many runs) keeps ownership of it.

    Everything that can be wrong with the input (topics, qrels, reranker name and options) is checked before the
    first stage runs.
    """
    from reasonrank.evaluation import evaluate
    from reasonrank.io.checkpoints import Checkpoint
    from reasonrank.io.runs import rankings_to_run, write_run_and_explanations
    from reasonrank.io.topics import load_qrels, load_topics
    from reasonrank.retrieval.base import load_first_stage, parse_first_stage

    embedded = embedded_collection()
    index = settings.index or str(embedded.corpus)
    topics = settings.topics or str(embedded.topics)
    qrels_spec = settings.qrels or (
        str(embedded.qrels) if settings.index is None and settings.topics is None else None
    )
    parse_first_stage(settings.first_stage)  # an unknown name fails before any model loads
    if min(settings.hits, settings.rerank_depth, settings.batch_size or 1, settings.explanations_depth) < 1:
        raise UserError("--hits, --rerank-depth, --batch-size and --explanations-depth must be at least 1")
    output = Path(settings.output) if settings.output else default_output(settings, index)
    reranks = reranker is not None or bool(settings.cascade) or settings.reranker.lower() != "none"
    explanations = Path(settings.explanations) if settings.explanations else None
    if explanations is None and reranks:  # a reranked run always says why, beside the run by default
        explanations = output.with_name(f"{output.stem}.explanations.jsonl")
    # Refuse colliding or unwritable outputs now, not after the first stage and the reranker have done their work.
    check_paths(
        [("--index", index), ("--topics", topics), ("--qrels", qrels_spec), ("--reranker", settings.reranker)],
        # The first stage's index and embedding caches are written there: a cache folder is an output too.
        [("--output", output), ("--explanations", explanations), ("$REASONRANK_CACHE", cache_root())],
    )
    check_writable(output, "--output")
    if explanations is not None:
        check_writable(explanations, "--explanations")
    if settings.rank_llm_output:
        check_writable(Path(settings.rank_llm_output), "--rank-llm-output")

    queries = load_topics(topics, query_field=settings.query_field)
    if settings.shard:
        shard, shards = parse_shard(settings.shard)
        queries = queries[shard::shards]
    qrels = load_qrels(qrels_spec) if qrels_spec else None  # read early: a bad qrels file fails before the work
    owns_reranker = reranker is None
    if owns_reranker:
        if settings.ray is None:
            reranker = build_reranker(settings)
        else:  # the actors load the model; this process only needs what it reads and how to reach them
            from reasonrank.rerank.base import MEMORY_BOUNDED_QUERIES_PER_STEP
            from reasonrank.scale.ray import ray_reranker

            # The driver builds no reranker to ask: its shards are one actor call each, 8 queries unless told.
            shards = replace(settings, batch_size=settings.batch_size or MEMORY_BOUNDED_QUERIES_PER_STEP)
            reranker = ray_reranker(shards, output, settings.checkpoint_key(index, topics))

    first_stage = load_first_stage(
        settings.first_stage, index, FirstStageSettings(k1=settings.k1, b=settings.b, progress=settings.progress)
    )
    try:
        # Reading passages out of the Lucene index costs BM25 more than the search itself: fetch only those read.
        requests = first_stage.search(
            queries, hits=settings.hits, threads=settings.threads, remove_query=settings.remove_query,
            progress=settings.progress, text_depth=text_depth(settings, reranker),
        )
        # Evidence for a fusion with the first stage fuses its sentence scores too (reasonrank.rerank.fusion).
        sentence_scorer = first_stage.text_scorer() if reranker is not None and settings.evidence else None
    finally:
        first_stage.close()
    baseline = [first_stage_ranking(r, first_stage.name) for r in requests]

    final, events = baseline, {}
    if reranker is not None:
        checkpoint = Checkpoint(output, settings.checkpoint_key(index, topics))
        if not settings.resume:
            checkpoint.remove()
        # On Ray one step holds every query: the cluster cuts it into shards of batch_size and checkpoints each.
        step = max(1, len(requests)) if settings.ray is not None else settings.batch_size or reranker.queries_per_step
        if owns_reranker and settings.ray is not None:  # the actors explain: each builds it with its evidence step
            explained = reranker.explained_with(sentence_scorer)
        else:
            explained = with_evidence(reranker, settings, sentence_scorer)
        try:
            final = _rerank(explained, requests, checkpoint, step, settings.progress)
        finally:
            if sentence_scorer is not None:
                sentence_scorer.close()
        if owns_reranker:
            reranker.close()
    # Both or neither; the checkpoint keeps the work.
    write_run_and_explanations(output, explanations, final, settings.explanations_depth)
    if settings.rank_llm_output:
        from reasonrank.io.rank_llm import write_rank_llm

        write_rank_llm(settings.rank_llm_output, final)
    if reranker is not None:
        checkpoint.remove()
        for ranking in final:
            for key, value in ranking.stats.items():
                events[key] = events.get(key, 0) + value

    evaluations = {}
    if qrels is not None:
        excluded = {q.qid: q.excluded_ids for q in queries if q.excluded_ids}
        evaluations[first_stage.name] = evaluate(rankings_to_run(baseline), qrels, excluded)
        if reranker is not None:
            evaluations[reranker.name] = evaluate(rankings_to_run(final), qrels, excluded)
    name = reranker.name if reranker is not None else None
    return SearchResult(output, explanations, baseline, final, name, events, evaluations)


def text_depth(settings: SearchSettings, reranker: Reranker | None) -> int | None:
    """How many candidates of each query need their passage: those the reranker reads, every one when the
    rank_llm file (which carries them) is written."""
    if settings.rank_llm_output:
        return None
    return 0 if reranker is None else reranker.text_depth


def build_explained_reranker(settings: SearchSettings, first_stage: TextScorer | None = None) -> Reranker | None:
    """:func:`build_reranker` with its evidence step, as a Ray actor builds it (reasonrank.scale.ray)."""
    reranker = build_reranker(settings)
    return with_evidence(reranker, settings, first_stage) if reranker is not None else None


def with_evidence(reranker: Reranker, settings: SearchSettings, first_stage: TextScorer | None = None) -> Reranker:
    """``reranker`` with evidence for the top ``explanations_depth`` documents where its model scores sentences
    (encoders, fusion, cascades ending in one); generative rerankers explain themselves. ``first_stage`` scores
    sentences as the first stage scored passages (for a fusion with it)."""
    if not settings.evidence or reranker.evidence_scorer(first_stage) is None:
        return reranker
    from reasonrank.rerank.evidence import EvidenceReranker

    return EvidenceReranker(
        reranker, settings.explanations_depth, settings.evidence_method, first_stage=first_stage
    )


def _rerank(reranker: Reranker, requests: list[Request], checkpoint, batch_size: int, progress: bool) -> list[Ranking]:
    """Rerank in steps of ``batch_size`` queries, each step checkpointed; queries already checkpointed are reused.

    Steps are cut from the whole request list, not from what is left: a resumed run batches every query with the
    same neighbours as an uninterrupted one (batch padding can move scores in their last bits), and a step that a
    kill left part-written is reranked whole.
    """
    done = checkpoint.load({r.query.qid: r.query for r in requests})
    steps = [requests[start : start + batch_size] for start in range(0, len(requests), batch_size)]
    steps = [step for step in steps if any(r.query.qid not in done for r in step)]
    finished = len(requests) - sum(len(step) for step in steps)
    with tqdm(
        total=len(requests), initial=finished, desc=f"reranking ({reranker.name})", unit="query", disable=not progress
    ) as bar:
        for step in steps:
            chunk = reranker.rerank_many(step)
            checkpoint.append(chunk)
            done.update((ranking.query.qid, ranking) for ranking in chunk)
            bar.update(len(chunk))
    return [done[r.query.qid] for r in requests]
