"""Corpora on disk, and the Lucene index built from one (cached by content).

Readable formats: Pyserini JSONL (``id``, ``contents``), BEIR ``corpus.jsonl`` (``_id``, ``title``, ``text``; the
contents are title + text as in Pyserini's BEIR indexes), TREC CAR paragraph ``.cbor`` files, ``.gz`` of the
JSON ones, and a folder of such files.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from tqdm import tqdm

from reasonrank.errors import UserError
from reasonrank.java import import_pyserini_search
from reasonrank.jsonl import parse_object

JSON_SUFFIXES = (".jsonl", ".json", ".jsonl.gz", ".json.gz")
CBOR_SUFFIXES = (".cbor",)
# Bump when the conversion to Pyserini JSON or the indexing options change, so cached indexes are rebuilt.
INDEX_FORMAT = "reasonrank-bm25-v1"
DOCS_PER_SHARD = 200_000  # Anserini indexes one collection file per thread


@dataclass(frozen=True, slots=True)
class Document:
    docid: str
    contents: str


def cache_root() -> Path:
    """``$REASONRANK_CACHE``, else ``~/.cache/reasonrank``."""
    return Path(os.environ.get("REASONRANK_CACHE") or Path.home() / ".cache" / "reasonrank").expanduser()


def corpus_files(path: str | Path) -> list[Path]:
    """The corpus files under ``path`` (itself, or a folder's supported files, sorted)."""
    path = Path(path).expanduser()
    if path.is_file():
        if not is_corpus_file(path):
            raise UserError(
                f"{path}: unsupported corpus format: use Pyserini/BEIR JSONL "
                f"({', '.join(JSON_SUFFIXES)}) or TREC CAR .cbor"
            )
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and is_corpus_file(p) and not p.name.startswith("."))
        if not files:
            raise UserError(f"{path}: no corpus files (*.jsonl, *.json, *.jsonl.gz, *.cbor) in the folder")
        return files
    raise UserError(f"corpus not found: {path}")


def is_corpus_file(path: Path) -> bool:
    """Whether the file name has a corpus suffix (the file need not exist)."""
    return path.name.lower().endswith(JSON_SUFFIXES + CBOR_SUFFIXES)


def iter_documents(path: str | Path, progress: bool = False) -> Iterator[Document]:
    """Every document of a corpus file or folder, validated: ids present and unique, text non-empty."""
    first_seen: dict[str, str] = {}
    files = corpus_files(path)
    with tqdm(desc="reading corpus", unit=" docs", disable=not progress) as bar:
        for file in files:
            reader = _cbor_documents if file.name.lower().endswith(CBOR_SUFFIXES) else _json_documents
            for where, document in reader(file):
                if document.docid in first_seen:
                    first = first_seen[document.docid]
                    raise UserError(f"{where}: duplicate document id {document.docid!r} (first at {first})")
                first_seen[document.docid] = where
                bar.update()
                yield document


def read_documents(path: str | Path) -> list[Document]:
    """A whole corpus in memory, in file order (for small corpora and dense encoders)."""
    return list(iter_documents(path))


def _open_text(path: Path) -> IO[str]:
    # Lines end at "\n" only, as for Anserini's JsonCollection; a stray "\r" must not split a document.
    if path.name.lower().endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8", newline="\n")
    return path.open(encoding="utf-8", newline="\n")


def _json_documents(path: Path) -> Iterator[tuple[str, Document]]:
    try:
        with _open_text(path) as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                where = f"{path}:{number}"
                yield where, _document_from_json(parse_object(line, where), where)
    except (UnicodeDecodeError, gzip.BadGzipFile, EOFError) as error:
        raise UserError(f"{path}: cannot read the corpus file ({error})") from None


def _document_from_json(record: dict, where: str) -> Document:
    docid = record.get("id", record.get("_id", record.get("docid")))
    if docid is None or not str(docid).strip():
        raise UserError(f"{where}: document has no id (expected `id` as in Pyserini JSONL or `_id` as in BEIR)")
    if "contents" in record:
        contents = str(record["contents"])
    elif "content" in record:  # BRIGHT's document files
        contents = str(record["content"])
    elif "text" in record or "title" in record:
        contents = " ".join(str(record[key]).strip() for key in ("title", "text") if record.get(key))
    else:
        raise UserError(f"{where}: document {docid!r} has no text (expected `contents`, `content`, or `title`/`text`)")
    if not contents.strip():
        raise UserError(f"{where}: document {docid!r} is empty: remove it from the corpus")
    return Document(str(docid), contents)


def _cbor_documents(path: Path) -> Iterator[tuple[str, Document]]:
    from trec_car.read_data import iter_paragraphs

    with path.open("rb") as handle:
        try:
            for number, paragraph in enumerate(iter_paragraphs(handle), start=1):
                where = f"{path}:paragraph {number}"
                text = paragraph.get_text()
                if not text.strip():
                    raise UserError(f"{where}: paragraph {paragraph.para_id!r} is empty: remove it from the corpus")
                yield where, Document(paragraph.para_id, text)
        except UserError:
            raise
        except Exception as error:  # trec-car-tools raises bare Exceptions, cbor decode and index errors
            raise UserError(f"{path}: not a TREC CAR paragraphs file ({type(error).__name__}: {error})") from None


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

    The index lives in ``<cache>/indexes/<name>-<content hash>``, ``<cache>`` being ``cache_dir`` or
    :func:`cache_root`. It is built in a temporary folder beside it and renamed into place, so an interrupted
    build never leaves a half index. Analysis is Pyserini's default (Porter stemming, English stopwords); the raw
    JSON of each document is stored so hits carry their text.
    """
    corpus_path = Path(corpus_path).expanduser()
    root = (Path(cache_dir).expanduser() if cache_dir else cache_root()) / "indexes"
    final = root / f"{index_name(corpus_path)}-{corpus_digest(corpus_path)[:16]}"
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
            out.write(json.dumps({"id": document.docid, "contents": document.contents}, ensure_ascii=False) + "\n")
            count += 1
    finally:
        if out:
            out.close()
    if count == 0:
        raise UserError(f"{corpus_path}: the corpus has no documents")
    return count, shard


def _index_collection(collection: Path, index: Path, threads: int) -> None:
    import_pyserini_search()  # sets Anserini's classpath before jnius starts the JVM
    from pyserini.pyclass import autoclass

    index_collection = autoclass("io.anserini.index.IndexCollection")
    index_collection.main([
        "-collection", "JsonCollection",
        "-generator", "DefaultLuceneDocumentGenerator",
        "-input", str(collection),
        "-index", str(index),
        "-threads", str(max(threads, 1)),
        "-storeRaw",
        "-quiet",
    ])


def _count_documents(index: Path) -> int:
    import_pyserini_search()  # sets Anserini's classpath before jnius starts the JVM
    from pyserini.index.lucene import LuceneIndexReader

    reader = LuceneIndexReader(str(index))
    try:
        return int(reader.stats()["documents"])
    finally:
        reader.reader.close()  # Pyserini's reader has no close(); an open reader would pin the files
