"""rank_llm's request and result files, so candidate sets move between rank_llm and reasonrank either way.

rank_llm (``rank_llm.data``) stores one ``Request`` per query, ``{"query": {"text", "qid"}, "candidates": [{"docid",
"score", "doc": {...}}]}``, as JSONL (one per line) or as one JSON array; its results have the same shape with the
candidates in their reranked order. ``doc`` holds the document's own fields: rank_llm reads the passage from the
first of ``text``, ``segment``, ``contents``, ``content``, ``body``, ``passage`` and puts a non-empty ``title`` before
it, and so does this reader (a titled passage's text is ``title text``, as reasonrank's corpora join them).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from reasonrank.errors import UserError
from reasonrank.io.jsonl import parse_object
from reasonrank.io.runs import atomic_write
from reasonrank.io.text import numbered_lines
from reasonrank.types import Candidate, Query, Ranking, Request

TEXT_FIELDS = ("text", "segment", "contents", "content", "body", "passage")  # rank_llm's order


def is_rank_llm_file(path: str | Path) -> bool:
    """Whether a JSON(L) file holds rank_llm requests: a JSON array, or a first record with a query and candidates."""
    path = Path(path)
    if not path.name.lower().endswith((".jsonl", ".json")):
        return False
    with path.open(encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if line.strip():
                if line.lstrip().startswith("["):
                    return True
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    return False
                return isinstance(record, dict) and isinstance(record.get("query"), dict) and "candidates" in record
    return False


def read_rank_llm(path: str | Path) -> list[Request]:
    """The requests of a rank_llm request (or result) file, candidates in the file's order."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"rank_llm file {path} does not exist: pass a rank_llm request file (JSON or JSONL)")
    requests, seen = [], set()
    for where, record in _records(path):
        request = _request(record, where)
        if request.query.qid in seen:
            raise UserError(f"{where}: query {request.query.qid!r} appears twice: one request per query")
        seen.add(request.query.qid)
        requests.append(request)
    if not requests:
        raise UserError(f"{path}: the rank_llm file holds no requests")
    return requests


def _records(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    advice = "a rank_llm request is {\"query\": {\"qid\", \"text\"}, \"candidates\": [...]}"
    if path.read_text(encoding="utf-8", errors="replace").lstrip().startswith("["):  # DataWriter's JSON format
        try:
            records = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise UserError(f"{path}: malformed JSON ({error})") from None
        for number, record in enumerate(records, start=1):
            if not isinstance(record, dict):
                raise UserError(f"{path}: request {number} is not an object: {advice}")
            yield f"{path}:request {number}", record
        return
    for number, line in numbered_lines(path, "rank_llm file"):
        if line.strip():
            yield f"{path}:{number}", parse_object(line, f"{path}:{number}", advice)


def _request(record: dict[str, Any], where: str) -> Request:
    query, candidates = record.get("query"), record.get("candidates")
    if not isinstance(query, dict) or "qid" not in query or not isinstance(query.get("text"), str):
        raise UserError(f"{where}: the request has no query {{\"qid\", \"text\"}}")
    if not isinstance(candidates, list):
        raise UserError(f"{where}: the request has no list of candidates")
    docids: set[str] = set()
    read = []
    for number, item in enumerate(candidates, start=1):
        candidate = _candidate(item, f"{where}: candidate {number}")
        if candidate.docid in docids:
            raise UserError(f"{where}: candidate {number}: document {candidate.docid} appears twice")
        docids.add(candidate.docid)
        read.append(candidate)
    return Request(Query(str(query["qid"]), query["text"]), tuple(read))


def _candidate(item: Any, where: str) -> Candidate:
    if not isinstance(item, dict) or "docid" not in item or not isinstance(item.get("doc"), dict):
        raise UserError(f"{where}: a candidate is {{\"docid\", \"score\", \"doc\": {{...}}}}")
    doc = item["doc"]
    body = next((doc[key] for key in TEXT_FIELDS if key in doc), None)
    if not isinstance(body, str):
        raise UserError(f"{where}: doc has no passage text (one of {', '.join(TEXT_FIELDS)})")
    title = doc.get("title") if isinstance(doc.get("title"), str) else ""
    try:
        score = float(item.get("score", 0.0))
    except (TypeError, ValueError):
        raise UserError(f"{where}: score {item.get('score')!r} is not a number") from None
    return Candidate(str(item["docid"]), f"{title} {body}" if title else body, score, title)


def rank_llm_record(ranking: Ranking) -> dict[str, Any]:
    """One query's ranking as a rank_llm result: the candidates in ranked order with this ranking's scores."""
    candidates = []
    for item in ranking.items:
        title, text = item.candidate.title, item.text
        body = text[len(title) + 1 :] if title and text.startswith(title + " ") else None
        doc = {"title": title, "text": body} if body is not None else {"contents": text}
        candidates.append({"docid": item.docid, "score": item.score, "doc": doc})
    return {"query": {"text": ranking.query.text, "qid": ranking.query.qid}, "candidates": candidates}


def write_rank_llm(path: str | Path, rankings: Iterable[Ranking]) -> None:
    """rank_llm's JSONL result format (``DataWriter.write_in_jsonl_format``), or its JSON array for a ``.json``."""
    records = [rank_llm_record(ranking) for ranking in rankings]
    with atomic_write(path) as out:
        if str(path).lower().endswith(".json"):
            out.write(json.dumps(records, indent=2, ensure_ascii=False))
        else:
            out.writelines(json.dumps(record, ensure_ascii=False) + "\n" for record in records)
