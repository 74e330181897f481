"""The distillation training set: groups of one positive and sampled negatives, as a memory-mapped Arrow table.

The candidates run, the teacher scores and the corpus are read through :mod:`reasonrank.train.tables`, so building
the set holds one query's candidates at a time, never a whole file. The groups are written to their own cached table
(keyed by every input and setting that shapes them) and read row by row as training uses them; a resumed run, or
the same config run again, reads the same table.
"""

from __future__ import annotations

import functools
import logging
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
from datasets import Dataset
from tqdm.auto import tqdm

from reasonrank.errors import UserError
from reasonrank.train.data import load_candidates, load_corpus, load_qrels, read_jsonl, topics_by_id
from reasonrank.train.losses import TEACHER_LOSSES
from reasonrank.train.tables import (
    CorpusTable,
    QueryRows,
    corpus_table,
    open_table,
    query_rows,
    table_folder,
    table_key,
    write_table,
)
from reasonrank.types import Candidate

log = logging.getLogger(__name__)
CACHED_QUERIES = 256
GROUP_SCHEMA = pa.schema([("query", pa.string()), ("rows", pa.list_(pa.int64())), ("teacher", pa.list_(pa.float64()))])


@dataclass(frozen=True)
class Group:
    query: str
    documents: tuple[Candidate, ...]
    labels: tuple[float, ...]
    teacher: tuple[float, ...] | None


@dataclass(frozen=True)
class HeldOutQueries:
    """Queries kept out of training whose first-stage candidates the student reranks at each evaluation: per query
    one group of its top candidates (labels unused), and the qrels they are scored against."""

    groups: tuple[tuple[str, Group], ...]
    qrels: dict[str, dict[str, int]]

    def __len__(self) -> int:
        return len(self.groups)


def held_out_queries(topics: str, qrels: str, candidates: str, corpus: str, depth: int) -> HeldOutQueries:
    """The eval split: each query of ``topics`` with its top ``depth`` candidates of the run ``candidates``."""
    queries = topics_by_id(topics)
    ranked = {qid: docs for qid, docs in load_candidates(candidates, depth).items() if qid in queries}
    if not ranked:
        raise UserError(f"eval_candidates {candidates} ranks none of the eval_topics {topics}: use the run of those "
                        "topics")
    texts = load_corpus(corpus, {docid for docs in ranked.values() for docid in docs})
    missing = next((d for docs in ranked.values() for d in docs if d not in texts), None)
    if missing is not None:
        raise UserError(f"document {missing} of eval_candidates {candidates} is not in {corpus}: use the same corpus")
    groups = tuple(
        (qid, Group(queries[qid].text, tuple(texts[d] for d in docs), (0.0,) * len(docs), None))
        for qid, docs in ranked.items()
    )
    return HeldOutQueries(groups, load_qrels(qrels))


class GroupTable(Sequence[Group]):
    """The groups of a built table, read from disk one at a time (what Trainer's sampler indexes)."""

    def __init__(self, table: Dataset, corpus: CorpusTable) -> None:
        self.table, self.corpus = table, corpus

    def __len__(self) -> int:
        return len(self.table)

    def __getitem__(self, index):  # type: ignore[override]
        if not 0 <= index < len(self):
            raise IndexError(index)
        row = self.table.data.table.slice(index, 1).to_pylist()[0]
        documents = self.corpus.candidates(row["rows"])
        teacher = tuple(row["teacher"]) if row["teacher"] is not None else None
        return Group(row["query"], documents, (1.0,) + (0.0,) * (len(documents) - 1), teacher)


def run_lines(path: str) -> Iterator[tuple[str, str, float]]:
    from reasonrank.io.runs import iter_run

    return ((qid, docid, score) for qid, docid, score, _ in iter_run(path, unique=False))


def teacher_lines(path: str) -> Iterator[tuple[str, str, float]]:
    for record in read_jsonl(path):
        try:
            yield str(record["qid"]), str(record["docid"]), float(record["score"])
        except (KeyError, TypeError, ValueError):
            raise UserError(f"{path}: every line needs qid, docid and a numeric score; got {record}") from None


def build_groups(config: Any) -> GroupTable:
    """``epochs`` rounds of one group per (query, positive), each round with fresh negatives (a DistillConfig)."""
    folder = table_folder(config.output)
    uses_teacher = bool(config.teacher_scores) and (config.alpha > 0 or config.loss in TEACHER_LOSSES)
    shaping = {name: getattr(config, name) for name in
               ("group_size", "negatives_depth", "min_positive_grade", "max_queries", "epochs", "seed")}
    inputs = [config.corpus, config.topics, config.qrels, config.candidates,
              config.teacher_scores if uses_teacher else None]
    path = folder / f"{table_key('groups', inputs, shaping)}.arrow"
    corpus = corpus_table(config.corpus, folder)
    if not path.is_file():
        write_table(path, GROUP_SCHEMA, _group_rows(config, corpus, uses_teacher))
    groups = GroupTable(open_table(path), corpus)
    log.info("%d groups of %d (%d epochs) in %s", len(groups), config.group_size, config.epochs, path)
    return groups


class _Negatives:
    """Each query's positives and negatives (top ``negatives_depth`` candidates, unjudged or below the grade),
    recomputed from the mapped tables when asked, so no query's list is kept."""

    def __init__(self, config: Any, qrels: dict[str, dict[str, int]], candidates: QueryRows,
                 teacher: QueryRows | None) -> None:
        self.config, self.qrels, self.candidates, self.teacher = config, qrels, candidates, teacher
        # Groups come shuffled across queries; a few recent queries' lists spare most re-reads of the same query.
        self.split = functools.lru_cache(maxsize=CACHED_QUERIES)(self._split)
        self.teacher_scores = functools.lru_cache(maxsize=CACHED_QUERIES)(self._teacher_scores)

    def _teacher_scores(self, qid: str) -> dict[str, float]:
        return self.teacher.scores(qid) if self.teacher is not None else {}

    def _split(self, qid: str) -> tuple[list[str], list[str], int]:
        """Positives, negatives, and how many positives were left out for want of a teacher score."""
        grade, judged = self.config.min_positive_grade, self.qrels[qid]
        scores = self.candidates.scores(qid)
        ranked = sorted(scores, key=lambda d: -scores[d])[: self.config.negatives_depth]
        positives = [d for d, g in judged.items() if g >= grade]
        negatives = [d for d in ranked if judged.get(d, 0) < grade]
        if self.teacher is None:
            return positives, negatives, 0
        known = self.teacher_scores(qid)
        kept = [p for p in positives if p in known]
        return kept, [n for n in negatives if n in known], len(positives) - len(kept)


def _group_rows(config: Any, corpus: CorpusTable, uses_teacher: bool) -> Iterator[tuple[Any, ...]]:
    folder = table_folder(config.output)
    topics = topics_by_id(config.topics)
    qrels = load_qrels(config.qrels)
    candidates = query_rows("run", config.candidates, run_lines(config.candidates), folder)
    teacher = query_rows("teacher", config.teacher_scores, teacher_lines(config.teacher_scores), folder) \
        if uses_teacher else None
    qids = [q for q in topics if q in qrels and q in candidates][: config.max_queries]
    if not qids:
        raise UserError(f"no query of {config.topics} has both qrels and candidates: check the three files match")
    split = _Negatives(config, qrels, candidates, teacher)
    positive_pairs: list[tuple[str, str]] = []
    skipped = 0
    for qid in tqdm(qids, desc="planning groups", unit=" queries", disable=len(qids) < 1000):
        positives, negatives, missing = split.split(qid)
        skipped += missing
        if len(negatives) >= config.group_size - 1:
            positive_pairs.extend((qid, p) for p in positives)
    if skipped:
        log.warning("%d positives have no teacher score and are left out", skipped)
    if not positive_pairs:
        raise UserError("no training group could be built: too few negatives per query for group_size")
    rng = random.Random(config.seed)
    with tqdm(total=config.epochs * len(positive_pairs), desc="building groups", unit=" groups",
              disable=len(positive_pairs) < 1000) as bar:
        for _ in range(config.epochs):
            for qid, positive in rng.sample(positive_pairs, len(positive_pairs)):
                negatives = split.split(qid)[1]
                docs = [positive, *rng.sample(negatives, config.group_size - 1)]
                yield _group_row(topics[qid].text, qid, docs, corpus, split, config.corpus)
                bar.update()


def _group_row(query: str, qid: str, docs: list[str], corpus: CorpusTable, split: _Negatives,
               source: str) -> tuple[Any, ...]:
    rows = [corpus.row(d) for d in docs]
    if None in rows:
        missing = docs[rows.index(None)]
        raise UserError(f"document {missing} of query {qid} is not in {source}: use the same corpus")
    known = split.teacher_scores(qid) if split.teacher is not None else None
    return query, rows, [known[d] for d in docs] if known is not None else None

