"""Training inputs as memory-mapped Arrow tables (Hugging Face ``datasets``), cached by what they are built from.

A candidates run or a teacher scores file of tens of millions of lines does not fit in Python dicts. Each is written
once, in batches, to an Arrow file that ``datasets`` memory-maps, with the lines of a query kept together (a stable
sort by qid when the file does not already keep them together); what stays in memory is each query's row range. The
corpus is written the same way, sorted by docid, and a document is found by binary search over the mapped ids.

The cache is never a silent stale result: a table's file name is a digest of its inputs' identity (resolved path,
size, modification time) and of the settings that shape it, so an edited input or a changed setting builds a new
table. Tables live under ``$REASONRANK_CACHE/train-data`` when that variable is set, else under the run's output
folder (never beside the inputs), and are written under a temporary name and renamed when complete, so a build that
is killed leaves nothing a later run would read.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from datasets import Dataset

from reasonrank.errors import UserError
from reasonrank.io.corpus import corpus_files, iter_documents
from reasonrank.types import Candidate

FORMAT = 1  # bump when a table's layout changes, so older cached tables are not read
BATCH_ROWS = 8192
SCORE_SCHEMA = pa.schema([("qid", pa.string()), ("docid", pa.string()), ("score", pa.float64())])
CORPUS_SCHEMA = pa.schema([("docid", pa.string()), ("contents", pa.string()), ("title", pa.string())])


def table_folder(output: str | Path) -> Path:
    """Where a run's tables are cached: ``$REASONRANK_CACHE/train-data``, else ``OUTPUT/train-data``."""
    root = os.environ.get("REASONRANK_CACHE")
    return (Path(root).expanduser() if root else Path(output)) / "train-data"


def input_identity(spec: str | Path | None) -> Any:
    """What a cached table built from ``spec`` depends on: each file's resolved path, size and modification time
    (every corpus file of a folder); a name that is no path (a Pyserini topic set) stands for itself."""
    if spec is None:
        return None
    path = Path(spec).expanduser()
    if not path.exists():
        return str(spec)
    files = corpus_files(path) if path.is_dir() else [path]
    return [(str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns) for f in files]


def table_key(kind: str, inputs: Sequence[str | Path | None], settings: Mapping[str, Any] | None = None) -> str:
    described = {"format": FORMAT, "kind": kind, "inputs": [input_identity(i) for i in inputs],
                 "settings": dict(settings or {})}
    digest = hashlib.sha256(json.dumps(described, sort_keys=True, default=str).encode("utf-8")).hexdigest()
    return f"{kind}-{digest[:24]}"


def open_table(path: Path) -> Dataset:
    return Dataset.from_file(str(path))  # memory-mapped: rows are read from disk as they are used


def write_table(path: Path, schema: pa.Schema, rows: Iterable[tuple[Any, ...]]) -> Dataset:
    """Write ``rows`` (tuples in ``schema``'s column order) in batches, renamed into place once complete."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        with pa.OSFile(str(partial), "wb") as sink, pa.ipc.new_stream(sink, schema) as writer:
            for batch in _batches(rows, len(schema)):
                writer.write_batch(pa.RecordBatch.from_arrays(
                    [pa.array(column, type=field.type) for column, field in zip(batch, schema, strict=True)],
                    schema=schema,
                ))
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return open_table(path)


def _batches(rows: Iterable[tuple[Any, ...]], width: int) -> Iterator[list[list[Any]]]:
    columns: list[list[Any]] = [[] for _ in range(width)]
    for row in rows:
        for column, value in zip(columns, row, strict=True):
            column.append(value)
        if len(columns[0]) == BATCH_ROWS:
            yield columns
            columns = [[] for _ in range(width)]
    if columns[0]:
        yield columns


def sorted_table(source: Dataset, path: Path, column: str) -> Dataset:
    """``source`` stably sorted by ``column``, written to ``path``; only the sort order is held in memory."""
    table = source.data.table
    order = pc.sort_indices(table, sort_keys=[(column, "ascending")])  # stable: ties keep the file's order
    names = table.column_names

    def rows() -> Iterator[tuple[Any, ...]]:
        for start in range(0, len(order), BATCH_ROWS):
            chunk = table.take(order[start : start + BATCH_ROWS]).to_pydict()
            yield from zip(*(chunk[name] for name in names), strict=True)

    return write_table(path, table.schema, rows())


@dataclass(frozen=True)
class QueryRows:
    """A (qid, docid, score) table whose lines of one query are contiguous, with each query's row range."""

    table: Dataset
    ranges: dict[str, tuple[int, int]]
    source: str

    def __contains__(self, qid: object) -> bool:
        return qid in self.ranges

    def scores(self, qid: str) -> dict[str, float]:
        """``docid -> score`` of one query, in the file's order; a document given twice is an error."""
        start, stop = self.ranges.get(qid, (0, 0))
        chunk = self.table.data.table.slice(start, stop - start).to_pydict()
        scores: dict[str, float] = {}
        for docid, score in zip(chunk["docid"], chunk["score"], strict=True):
            if docid in scores:
                raise UserError(f"{self.source}: document {docid} appears twice for query {qid}: keep one line")
            scores[docid] = score
        return scores


def query_rows(kind: str, source: str | Path, lines: Iterable[tuple[str, str, float]], folder: Path) -> QueryRows:
    """The cached table of ``lines`` read from ``source``, grouped by query."""
    path = folder / f"{table_key(kind, [source])}.arrow"
    if not path.is_file():
        unsorted = folder / f".{path.stem}.{os.getpid()}.unsorted.arrow"
        try:
            table = write_table(unsorted, SCORE_SCHEMA, lines)
            if not len(table):
                raise UserError(f"{source} holds no lines: check the path")
            if _contiguous(_query_starts(table)):
                os.replace(unsorted, path)
            else:
                sorted_table(table, path, "qid")
        finally:
            unsorted.unlink(missing_ok=True)
    table = open_table(path)
    starts = _query_starts(table)
    bounds = [start for _, start in starts] + [len(table)]
    return QueryRows(table, {qid: (bounds[i], bounds[i + 1]) for i, (qid, _) in enumerate(starts)}, str(source))


def _query_starts(table: Dataset) -> list[tuple[str, int]]:
    """Each run of equal qids in row order: (qid, first row)."""
    starts: list[tuple[str, int]] = []
    row = 0
    for batch in table.data.table.select(["qid"]).to_batches(BATCH_ROWS):
        for qid in batch.column(0).to_pylist():
            if not starts or starts[-1][0] != qid:
                starts.append((qid, row))
            row += 1
    return starts


def _contiguous(starts: Sequence[tuple[str, int]]) -> bool:
    return len({qid for qid, _ in starts}) == len(starts)


class _SortedColumn(Sequence[str]):
    """A string column of a memory-mapped table, indexable row by row without copying it (for :mod:`bisect`)."""

    def __init__(self, column: pa.ChunkedArray) -> None:
        self.chunks = column.chunks
        self.offsets = [0]
        for chunk in self.chunks:
            self.offsets.append(self.offsets[-1] + len(chunk))

    def __len__(self) -> int:
        return self.offsets[-1]

    def __getitem__(self, row):  # type: ignore[override]
        chunk = bisect.bisect_right(self.offsets, row) - 1
        return self.chunks[chunk][row - self.offsets[chunk]].as_py()


class CorpusTable:
    """A corpus as a memory-mapped table sorted by docid: a document's row by binary search, texts by row."""

    def __init__(self, table: Dataset, source: str) -> None:
        self.table, self.source = table, source
        self.docids = _SortedColumn(table.data.table.column("docid"))

    def row(self, docid: str) -> int | None:
        row = bisect.bisect_left(self.docids, docid)
        return row if row < len(self.docids) and self.docids[row] == docid else None

    def candidates(self, rows: Sequence[int]) -> tuple[Candidate, ...]:
        chunk = self.table.data.table.take(list(rows)).to_pydict()
        return tuple(Candidate(d, c, title=t) for d, c, t in zip(chunk["docid"], chunk["contents"], chunk["title"],
                                                                  strict=True))


def corpus_table(corpus: str | Path, folder: Path) -> CorpusTable:
    """The cached docid-sorted table of a corpus file or folder (any format :mod:`reasonrank.io.corpus` reads)."""
    path = folder / f"{table_key('corpus', [corpus])}.arrow"
    if not path.is_file():
        unsorted = folder / f".{path.stem}.{os.getpid()}.unsorted.arrow"
        rows = ((d.docid, d.contents, d.title) for d in iter_documents(corpus, progress=True))
        try:
            sorted_table(write_table(unsorted, CORPUS_SCHEMA, rows), path, "docid")
        finally:
            unsorted.unlink(missing_ok=True)
    return CorpusTable(open_table(path), str(corpus))
