"""Turning what an index stores into the text a reranker reads, and Pyserini hits into candidates."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from reasonrank.io.corpus import title_of
from reasonrank.types import Candidate, Query, Request


def read_raw(raw: str) -> tuple[str, str]:
    """The passage text of a stored raw document and the title that text begins with ("" if untitled).

    Pyserini JSONL stores ``contents`` (reasonrank's own indexes add the ``title`` it begins with); BEIR-style
    prebuilt indexes store ``title`` and ``text``, joined as ``title text``; anything else (plain text, TREC SGML)
    is returned as it is, untitled.
    """
    try:
        doc = json.loads(raw)
    except (json.JSONDecodeError, TypeError):
        return raw, ""
    if not isinstance(doc, dict):
        return raw, ""
    if "contents" in doc:
        text, title = str(doc["contents"]), str(doc.get("title") or "")
        return text, title if title and text.startswith(title + " ") else ""
    parts = [str(doc[key]).strip() for key in ("title", "text") if doc.get(key)]
    return (" ".join(parts), title_of(doc)) if parts else (raw, "")


def text_from_raw(raw: str) -> str:
    """The passage text of a stored raw document (see :func:`read_raw`)."""
    return read_raw(raw)[0]


def _candidate_from(item: Any) -> Candidate:
    if isinstance(item, Candidate):
        return item
    if isinstance(item, str):
        raise TypeError("a candidate needs a docid: pass (docid, text) pairs, not bare strings")
    if isinstance(item, tuple | list):
        if len(item) == 2:
            return Candidate(str(item[0]), str(item[1]))
        if len(item) == 3:
            return Candidate(str(item[0]), str(item[1]), float(item[2]))
        raise TypeError(f"a candidate tuple is (docid, text) or (docid, text, score), got {len(item)} fields")
    if hasattr(item, "docid") and hasattr(item, "score"):  # a Pyserini hit (JScoredDoc or JLuceneSearcherResult)
        raw = item.lucene_document.get("raw") if getattr(item, "lucene_document", None) is not None else None
        if raw is None:
            raw = getattr(item, "raw", None) or ""
        text, title = read_raw(raw)
        return Candidate(str(item.docid), text, float(item.score), title)
    if isinstance(item, dict) and "docid" in item:
        return Candidate(
            str(item["docid"]), str(item.get("text", "")), float(item.get("score", 0.0)), str(item.get("title", ""))
        )
    raise TypeError(f"cannot use {type(item).__name__} as a candidate")


def as_candidates(items: Iterable[Any]) -> tuple[Candidate, ...]:
    """Accept Pyserini hits, ``(docid, text[, score])`` tuples, dicts or candidates, in one place."""
    return tuple(_candidate_from(item) for item in items)


def as_request(query: str | Query, candidates: Iterable[Any] | Sequence[Candidate], qid: str = "q") -> Request:
    if not isinstance(query, Query):
        query = Query(qid, str(query))
    return Request(query, as_candidates(candidates))
