"""The Lucene (BM25) index of a corpus, built with Anserini on first use and cached by the corpus content and the
Lucene version that wrote it."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

from reasonrank.errors import UserError
from reasonrank.io.corpus import cache_root, corpus_files, iter_documents
from reasonrank.retrieval.java import anserini_class

# Bump when the conversion to Pyserini JSON or the indexing options change, so cached indexes are rebuilt.
INDEX_FORMAT = "reasonrank-bm25-v2"  # v2: titled documents store their title in the raw JSON
DOCS_PER_SHARD = 200_000  # Anserini indexes one collection file per thread


def corpus_digest(path: str | Path) -> str:
    """A hash of the corpus bytes, file names (relative to the corpus) and the index format."""
    path = Path(path).expanduser()
    digest = hashlib.sha256(INDEX_FORMAT.encode())
    for file in corpus_files(path):
        name = file.name if file == path else file.relative_to(path).as_posix()
        digest.update(f"\0{name}\0{file.stat().st_size}\0".encode())
        with file.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def index_name(path: str | Path) -> str:
    """A readable cache folder name: ``msmarco-dl19-mini-corpus`` for ``msmarco-dl19-mini/corpus.jsonl``."""
    path = Path(path).expanduser().resolve()
    if path.is_dir():
        name = path.name
    else:
        stem = re.sub(r"(\.jsonl|\.json|\.cbor)?(\.gz)?$", "", path.name, flags=re.IGNORECASE)
        name = f"{path.parent.name}-{stem}" if path.parent.name else stem
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "corpus"


def is_lucene_index(path: str | Path) -> bool:
    path = Path(path)
    return path.is_dir() and any(path.glob("segments_*"))


def ensure_index(corpus_path: str | Path, cache_dir: str | Path | None = None) -> Path:
    """The BM25 index of a corpus, built on first use and reused while the corpus content is unchanged.

    The index lives in ``<cache>/indexes/<name>-lucene<version>-<content hash>``, ``<cache>`` being ``cache_dir`` or
    :func:`cache_root`. The Lucene version is part of the name because Lucene reads no index from a newer major
    version: Pyserini 2.x (Lucene 10) and 1.x (Lucene 9) installs that share a cache each keep their own index.
    It is built in a temporary folder beside it and renamed into place, so an interrupted
    build never leaves a half index. Analysis is Pyserini's default (Porter stemming, English stopwords); the raw
    JSON of each document is stored so hits carry their text.
    """
    corpus_path = Path(corpus_path).expanduser()
    root = (Path(cache_dir).expanduser() if cache_dir else cache_root()) / "indexes"
    final = root / f"{index_name(corpus_path)}-lucene{lucene_version()}-{corpus_digest(corpus_path)[:16]}"
    if is_lucene_index(final):
        return final
    root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=root))
    try:
        collection, index = work / "collection", work / "index"
        count, shards = _write_json_collection(corpus_path, collection)
        _index_collection(collection, index, threads=min(shards, os.cpu_count() or 1))
        indexed = _count_documents(index)
        if indexed != count:
            raise RuntimeError(f"Anserini indexed {indexed} of {count} documents of {corpus_path}")
        try:
            index.rename(final)
        except OSError:
            if not is_lucene_index(final):  # anything but "another process finished the same build first"
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return final


@functools.cache
def lucene_version() -> str:
    """The version of the Lucene on Anserini's classpath (``9.9.1`` in Pyserini 1.6), asked of Lucene itself."""
    return str(anserini_class("org.apache.lucene.util.Version").LATEST.toString())


def _write_json_collection(corpus_path: Path, folder: Path) -> tuple[int, int]:
    """Pyserini JsonCollection shards; returns (documents, shards)."""
    folder.mkdir(parents=True)
    count, shard, out = 0, 0, None
    try:
        for document in iter_documents(corpus_path, progress=True):
            if count % DOCS_PER_SHARD == 0:
                if out:
                    out.close()
                out = (folder / f"docs{shard:05d}.jsonl").open("w", encoding="utf-8")
                shard += 1
            raw = {"id": document.docid, "contents": document.contents}
            if document.title:  # beside the contents it begins, for prompts that place the title (DeAR)
                raw["title"] = document.title
            out.write(json.dumps(raw, ensure_ascii=False) + "\n")
            count += 1
    finally:
        if out:
            out.close()
    if count == 0:
        raise UserError(f"{corpus_path}: the corpus has no documents")
    return count, shard


def _index_collection(collection: Path, index: Path, threads: int) -> None:
    anserini_class("io.anserini.index.IndexCollection").main([
        "-collection", "JsonCollection",
        "-generator", "DefaultLuceneDocumentGenerator",
        "-input", str(collection),
        "-index", str(index),
        "-threads", str(max(threads, 1)),
        "-storeRaw",
        "-quiet",
    ])


def _count_documents(index: Path) -> int:
    reader = open_index_reader(index)
    try:
        return int(reader.numDocs())
    finally:
        reader.close()  # an open reader would pin the files


def open_index_reader(index: str | Path):
    """Lucene's reader of an index folder, as Pyserini's LuceneIndexReader opens it (Anserini's IndexReaderUtils)."""
    return anserini_class("io.anserini.index.IndexReaderUtils").getReader(str(index))
