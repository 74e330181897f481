"""Training inputs (corpus texts, topics, qrels, first-stage candidates) and resumable JSONL outputs.

Topics and qrels go through :mod:`reasonrank.io.topics` and documents through :mod:`reasonrank.io.corpus`, so training
accepts exactly the specs that search does.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reasonrank.errors import UserError
from reasonrank.io.corpus import iter_documents
from reasonrank.io.jsonl import parse_object
from reasonrank.io.runs import read_run
from reasonrank.io.text import numbered_lines
from reasonrank.io.topics import load_qrels, load_topics
from reasonrank.types import Candidate, Query

__all__ = [
    "ResumableJsonl", "content_word_list", "content_words", "load_candidates", "load_corpus", "load_qrels",
    "load_topics", "ranked_docids", "read_jsonl", "topics_by_id",
]
log = logging.getLogger("reasonrank")
_WORD = re.compile(r"[a-z0-9]+")


def load_corpus(path: str | Path, docids: set[str] | None = None) -> dict[str, Candidate]:
    """``docid -> candidate`` (text = title and text joined, with its title); ``docids`` keeps only those, so a
    large corpus costs no memory beyond what training reads."""
    return {
        d.docid: Candidate(d.docid, d.contents, title=d.title)
        for d in iter_documents(path)
        if docids is None or d.docid in docids
    }


def topics_by_id(spec: str) -> dict[str, Query]:
    return {q.qid: q for q in load_topics(spec)}


def ranked_docids(run: dict[str, dict[str, float]], depth: int) -> dict[str, list[str]]:
    """The first ``depth`` documents per query of a run already read, best first."""
    return {qid: [d for d, _ in sorted(docs.items(), key=lambda item: -item[1])][:depth] for qid, docs in run.items()}


def load_candidates(path: str | Path, depth: int) -> dict[str, list[str]]:
    """The first ``depth`` documents per query of a TREC run, best first."""
    return ranked_docids(read_run(path), depth)


def content_word_list(text: str) -> list[str]:
    """Lower-cased words of four or more letters or digits, in order: what quotes and explanations are compared by."""
    return [w for w in _WORD.findall(text.lower()) if len(w) > 3]


def content_words(text: str) -> set[str]:
    return set(content_word_list(text))


def read_jsonl(path: str | Path) -> Iterator[dict[str, Any]]:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"JSONL file {path} not found: check the path in the config")
    for number, line in numbered_lines(path, "JSONL file"):
        if line.strip():
            yield parse_object(line, f"{path}:{number}", "fix or delete that line")


@dataclass
class ResumableJsonl:
    """Append-only JSONL output that remembers which keys are already written, so a rerun skips them.

    Lines end at ``\\n`` only (:func:`reasonrank.io.text.numbered_lines`): records hold passages with U+0085 and
    U+2028, which ``str.splitlines`` would cut at, dropping the record and redoing it on every rerun. A last line cut
    off by a crash (possibly inside a UTF-8 character) and lines that are not JSON objects are dropped on open with
    one warning line (appending after them would corrupt the next record); their keys are written again.
    """

    path: Path
    key_fields: tuple[str, ...]

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.done: set[tuple[str, ...]] = set()
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        torn = bool(data) and not data.endswith(b"\n")
        if torn:
            with self.path.open("r+b") as out:
                out.truncate(data.rfind(b"\n") + 1)
        good: list[str] = []
        damaged: list[int] = []
        for number, line in numbered_lines(self.path, "JSONL output"):
            try:
                record = json.loads(line) if line.strip() else None
            except json.JSONDecodeError:
                record = None
            if isinstance(record, dict):
                good.append(line)
                self.done.add(self.key(record))
            elif line.strip():
                damaged.append(number)
        if damaged or torn:
            lines = ", ".join(map(str, damaged[:5]))
            what = [f"{len(damaged)} line(s) that are not JSON objects ({lines})"] * bool(damaged)
            what += ["a line cut short at the end"] * torn
            log.warning("%s: %s dropped; those records are written again", self.path, " and ".join(what))
            self.path.write_text("".join(f"{line}\n" for line in good), encoding="utf-8")

    def key(self, record: dict[str, Any]) -> tuple[str, ...]:
        return tuple(str(record.get(f, "")) for f in self.key_fields)

    def __contains__(self, key: tuple[str, ...]) -> bool:
        return key in self.done

    def write(self, records: Iterable[dict[str, Any]]) -> int:
        written = 0
        with self.path.open("a", encoding="utf-8") as out:
            for record in records:
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
                self.done.add(self.key(record))
                written += 1
        return written
