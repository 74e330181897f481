"""Another system's run as the first stage: ``--first-stage run:PATH``.

The candidates and their order come from a TREC run (``qid Q0 docid rank score tag``: any system's tag, ties,
unsorted lines, fewer or more hits per query than asked for); the passages come from ``--index``, a corpus file or
folder (read into memory) or a Lucene index that stores the raw documents (a folder or a Pyserini prebuilt name).
Each query's lines are ordered as trec_eval reads a run, by score, best first; ties keep the run's own rank column
(then the file order), so a shuffled copy of a run gives the run's own order back.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

from reasonrank.errors import UserError
from reasonrank.io.corpus import iter_documents
from reasonrank.io.runs import run_fields
from reasonrank.io.text import numbered_lines
from reasonrank.retrieval.base import Closing, FirstStageSettings, check_search, is_excluded
from reasonrank.retrieval.documents import read_raw
from reasonrank.retrieval.index import is_lucene_index
from reasonrank.types import Candidate, Query, Request

MISSING_SHOWN = 10  # query ids named in the one line that says which are missing


@dataclass(frozen=True, slots=True)
class RunHit:
    docid: str
    score: float
    rank: int
    where: str  # file:line, for the error that names it


def read_run_hits(path: str | Path) -> dict[str, list[RunHit]]:
    """Each query's hits of a TREC run, best first (score, then the run's rank, then the file order)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"--first-stage run:{path}: the run file does not exist (a TREC run: qid Q0 docid rank score "
                        "tag)")
    hits: dict[str, list[RunHit]] = {}
    seen: dict[tuple[str, str], str] = {}
    for number, line in numbered_lines(path, "run file"):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        qid, _, docid, rank, score, _ = run_fields(line, where)
        try:
            value, position = float(score), int(rank)
        except ValueError:
            raise UserError(f"{where}: rank {rank!r} must be an integer and score {score!r} a number") from None
        if not math.isfinite(value):
            raise UserError(f"{where}: score {score!r} is not a finite number: fix the run that wrote it")
        if (qid, docid) in seen:
            raise UserError(f"{where}: document {docid} appears twice for query {qid} (first at {seen[qid, docid]})")
        seen[qid, docid] = where
        hits.setdefault(qid, []).append(RunHit(docid, value, position, where))
    if not hits:
        raise UserError(f"{path}: the run file is empty")
    for query_hits in hits.values():
        query_hits.sort(key=lambda hit: (-hit.score, hit.rank))  # sort() is stable: the file order breaks the rest
    return hits


class RunFirstStage(Closing):
    """A TREC run's candidates with the passages of ``index``: a :class:`reasonrank.retrieval.base.FirstStage`."""

    def __init__(self, run_path: str | Path, index: str) -> None:
        self.run_path = Path(run_path).expanduser()
        self.name = f"run:{self.run_path.name}"
        self.hits = read_run_hits(self.run_path)
        self.index = str(index)
        self._lucene = None
        self._documents: dict[str, tuple[str, str]] = {}
        path = Path(self.index).expanduser()
        if path.exists() and not is_lucene_index(path):
            self._documents = {d.docid: (d.contents, d.title) for d in iter_documents(path)}
        else:  # a Lucene index folder or a Pyserini prebuilt name: documents are read by id when needed
            from reasonrank.retrieval.bm25 import Bm25FirstStage

            self._lucene = Bm25FirstStage(self.index)  # its searcher opens any Lucene index Pyserini can

    def search(
        self,
        queries: Sequence[Query],
        hits: int = 100,
        threads: int = 1,
        remove_query: bool = False,
        progress: bool = True,
        text_depth: int | None = None,
    ) -> list[Request]:
        """The run's top ``hits`` of each query without its excluded ids (and, with ``remove_query``, its own id);
        every candidate is looked up in the index, only the first ``text_depth`` keep their text."""
        check_search(queries, hits, text_depth)
        check_listed_queries(self.run_path, self.hits, queries)
        with_text = hits if text_depth is None else min(text_depth, hits)
        requests = []
        for query in queries:
            kept = [hit for hit in self.hits[query.qid] if not is_excluded(query, hit.docid, remove_query)][:hits]
            candidates = []
            for position, hit in enumerate(kept):
                text, title = self._passage(hit)
                candidates.append(Candidate(hit.docid, text, hit.score, title) if position < with_text
                                  else Candidate(hit.docid, "", hit.score))
            requests.append(Request(query, tuple(candidates)))
        return requests

    def _passage(self, hit: RunHit) -> tuple[str, str]:
        if self._lucene is None:
            passage = self._documents.get(hit.docid)
        else:
            raw = self._lucene.raw_document(hit.docid)
            passage = read_raw(raw) if raw is not None else None
        if passage is None:
            raise UserError(f"{hit.where}: document {hit.docid} is not in {self.index}: pass the corpus or index "
                            "the run was retrieved from")
        return passage

    def close(self) -> None:
        if self._lucene is not None:
            self._lucene.close()


def check_listed_queries(source: Path, listed: Collection[str], queries: Sequence[Query]) -> None:
    """A topic that ``source`` (a run, a request file) lists nothing for is an error; queries it lists that are not
    topics (another shard's, say) are named in one line and ignored."""
    asked = {query.qid for query in queries}
    lacking = [query.qid for query in queries if query.qid not in listed]
    if lacking:
        raise UserError(f"{source}: {len(lacking)} of {len(queries)} topics have no candidates there "
                        f"({_some(lacking)}): pass the topics it was made for")
    extra = [qid for qid in listed if qid not in asked]
    if extra:
        print(f"{source}: {len(extra)} of its queries are not among these topics, ignored ({_some(extra)})",
              file=sys.stderr)


def _some(qids: list[str]) -> str:
    shown = ", ".join(qids[:MISSING_SHOWN])
    return shown + (f" and {len(qids) - MISSING_SHOWN} more" if len(qids) > MISSING_SHOWN else "")


def build(index: str, settings: FirstStageSettings) -> RunFirstStage:
    if not settings.argument:
        raise UserError("--first-stage run needs the run file: --first-stage run:PATH (a TREC run)")
    return RunFirstStage(settings.argument, index)
