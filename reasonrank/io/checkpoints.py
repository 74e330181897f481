"""Per-query checkpoints so that a killed run continues where it stopped.

Each finished query is appended as one JSON line and flushed to disk. The checkpoint's name carries a
hash of the settings, so a changed command never resumes from another configuration's results. A
line cut short by a kill is ignored on reading.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path

from reasonrank.types import Candidate, Evidence, Query, RankedCandidate, Ranking


def ranking_to_record(ranking: Ranking) -> dict:
    return {
        "qid": ranking.query.qid,
        "query": ranking.query.text,
        "model": ranking.model,
        "stats": ranking.stats,
        "items": [item_record(item) for item in ranking.items],
    }


def item_record(item: RankedCandidate) -> list:
    evidence = [[span.start, span.end, span.score] for span in item.evidence]
    return [item.docid, item.text, item.candidate.score, item.score, item.explanation, item.label, evidence]


def ranking_from_record(record: dict, query: Query) -> Ranking:
    items = tuple(
        RankedCandidate(
            Candidate(docid, text, first), score, rank, explanation, label, tuple(Evidence(*e) for e in evidence)
        )
        for rank, (docid, text, first, score, explanation, label, evidence) in enumerate(record["items"], start=1)
    )
    return Ranking(query, items, record["model"], dict(record["stats"]))


class Checkpoint:
    def __init__(self, output: str | Path, settings: Mapping[str, object]):
        digest = hashlib.sha1(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:12]
        output = Path(output)
        self.path = output.with_name(f".{output.name}.{digest}.partial.jsonl")

    def load(self, queries: Mapping[str, Query]) -> dict[str, Ranking]:
        done: dict[str, Ranking] = {}
        if not self.path.is_file():
            return done
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            # A kill mid-write leaves a partial last line; cut it so the next append starts clean.
            data = data[: data.rfind(b"\n") + 1]
            with self.path.open("r+b") as out:
                out.truncate(len(data))
        for line in data.decode("utf-8").splitlines():
            record = json.loads(line)
            if record.get("qid") in queries:
                done[record["qid"]] = ranking_from_record(record, queries[record["qid"]])
        return done

    def append(self, rankings: list[Ranking]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as out:
            for ranking in rankings:
                out.write(json.dumps(ranking_to_record(ranking), ensure_ascii=False) + "\n")
            out.flush()
            os.fsync(out.fileno())

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
