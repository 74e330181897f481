"""Corpora on disk: one reader for every format a collection comes in.

Readable formats: Pyserini JSONL (``id``, ``contents``), BEIR ``corpus.jsonl`` (``_id``, ``title``, ``text``; the
contents are title + text as in Pyserini's BEIR indexes), TREC CAR paragraph ``.cbor`` files, ``.gz`` of the
JSON ones, and a folder of such files.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from tqdm import tqdm

from reasonrank.errors import UserError
from reasonrank.io.jsonl import parse_object
from reasonrank.io.text import is_run_token
from reasonrank.types import Document

JSON_SUFFIXES = (".jsonl", ".json", ".jsonl.gz", ".json.gz")
CBOR_SUFFIXES = (".cbor",)



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
    if not is_run_token(str(docid)):
        raise UserError(f"{where}: document id {str(docid)!r} holds whitespace or an invisible mark: a TREC run "
                        "line needs ids of one visible word")
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
    return Document(str(docid), contents, title_of(record))


def title_of(record: dict) -> str:
    """The title a BEIR-style record's text begins with: its ``title`` when it has both a title and a text."""
    title, text = str(record.get("title") or "").strip(), str(record.get("text") or "").strip()
    return title if title and text else ""


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
