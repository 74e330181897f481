"""Per-query checkpoints so that a killed run continues where it stopped.

Each finished query is appended as one line, ``<JSON record><TAB><CRC-32 of the JSON>``, flushed and synced to
disk. The checkpoint's name carries a hash of the settings (and of this format), so a changed command never
resumes from another configuration's results. On reading, lines end at ``\n`` only (passages hold U+0085 and
U+2028, which ``str.splitlines`` would cut at); a line cut short by a kill, or one whose checksum, JSON or shape
is wrong, is dropped with one warning line and its query is reranked again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import zlib
from collections.abc import Mapping
from pathlib import Path

from reasonrank.errors import UserError
from reasonrank.io import runs
from reasonrank.types import Query, RankedCandidate, Ranking

FORMAT = 3  # part of the settings hash: checkpoints of another line format are never read
log = logging.getLogger("reasonrank")


def ranking_to_record(ranking: Ranking) -> dict:
    return {
        "qid": ranking.query.qid,
        "query": ranking.query.text,
        "model": ranking.model,
        "stats": ranking.stats,
        "items": [item_record(item) for item in ranking.items],
    }


def item_record(item: RankedCandidate) -> dict:
    return {**runs.item_record(item), "text": item.text, "first_stage_score": item.candidate.score}


def ranking_from_record(record: dict, query: Query) -> Ranking:
    items = tuple(runs.ranked_item(item, item["text"], item["first_stage_score"]) for item in record["items"])
    return Ranking(query, items, record["model"], dict(record["stats"]))


def checkpoint_line(ranking: Ranking) -> bytes:
    payload = json.dumps(ranking_to_record(ranking), ensure_ascii=False).encode("utf-8")
    return payload + b"\t" + f"{zlib.crc32(payload):08x}".encode() + b"\n"


def parse_checkpoint_line(line: bytes, queries: Mapping[str, Query]) -> Ranking | None:
    """The ranking on one complete line, None for a query not asked for; ValueError when the line is damaged.

    JSON escapes every tab inside strings, so the last tab of an intact line separates record and checksum.
    """
    payload, tab, checksum = line.rpartition(b"\t")
    if not tab or checksum != f"{zlib.crc32(payload):08x}".encode():
        raise ValueError("checksum mismatch")
    try:
        record = json.loads(payload.decode("utf-8"))
        query = queries.get(record["qid"])
        return None if query is None else ranking_from_record(record, query)
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
        raise ValueError(f"unreadable record ({type(error).__name__})") from None


class Checkpoint:
    def __init__(self, output: str | Path, settings: Mapping[str, object]):
        settings = {**settings, "checkpoint_format": FORMAT}
        digest = hashlib.sha1(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:12]
        output = Path(output)
        self.path = output.with_name(f".{output.name}.{digest}.partial.jsonl")

    def load(self, queries: Mapping[str, Query]) -> dict[str, Ranking]:
        """Finished rankings by qid; damaged lines are reported in one warning, dropped from the file and redone."""
        done: dict[str, Ranking] = {}
        if not self.path.is_file():
            return done
        try:
            data = self.path.read_bytes()
        except OSError as error:
            raise UserError(f"cannot read the checkpoint {self.path} ({error.strerror}): pass --no-resume") from None
        lines = data.split(b"\n")
        torn = lines.pop()  # b"" when the file ends with its newline, else a line cut short by a kill
        kept: list[bytes] = []
        damaged: list[int] = []
        for number, line in enumerate(lines, start=1):
            try:
                ranking = parse_checkpoint_line(line, queries)
            except ValueError:
                damaged.append(number)
                continue
            kept.append(line + b"\n")
            if ranking is not None:
                done[ranking.query.qid] = ranking
        if damaged or torn:
            where = ", ".join(map(str, damaged[:5])) + (" …" if len(damaged) > 5 else "")
            what = [f"{len(damaged)} damaged line(s) ({where})"] if damaged else []
            what += ["a line cut short at the end"] if torn else []
            log.warning("checkpoint %s: %s dropped; those queries are reranked again", self.path, " and ".join(what))
            self._rewrite(b"".join(kept))
        return done

    def _rewrite(self, data: bytes) -> None:
        temporary = self.path.with_name(self.path.name + ".tmp")
        try:
            with temporary.open("wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, self.path)
        except OSError as error:
            temporary.unlink(missing_ok=True)
            raise UserError(f"cannot repair the checkpoint {self.path} ({error.strerror}): pass --no-resume") from None

    def append(self, rankings: list[Ranking]) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("ab") as out:
                out.write(b"".join(checkpoint_line(ranking) for ranking in rankings))
                out.flush()
                os.fsync(out.fileno())
        except OSError as error:
            raise UserError(
                f"cannot write the checkpoint {self.path} ({error.strerror}): free space or pass another --output; "
                "the queries finished so far are kept and a re-run continues from them"
            ) from None

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
