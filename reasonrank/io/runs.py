"""TREC run files and explanation files: written atomically, read back with line-level validation."""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from reasonrank.errors import UserError
from reasonrank.io.text import numbered_lines
from reasonrank.types import Candidate, Evidence, ExplanationFrom, RankedCandidate, Ranking

Run = dict[str, dict[str, float]]  # qid -> docid -> score


@contextmanager
def atomic_write(path: str | Path) -> Iterator:
    """Write to a temporary file beside ``path`` and rename it into place only on success.

    A full disk, a read-only folder or a size limit is one ``UserError`` line, and no file is left behind. The
    temporary file's name holds the writer's process id, so a later successful write removes what a writer killed
    mid-write (SIGKILL, power loss) left behind, and never a live writer's file.
    """
    path = Path(path)
    temporary: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(
            dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp"
        )
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            yield handle
        os.chmod(temporary, 0o666 & ~_umask())  # mkstemp makes the file owner-only; give it a normal file's mode
        os.replace(temporary, path)
        _remove_orphans(path)
    except OSError as error:
        if temporary is not None:
            Path(temporary).unlink(missing_ok=True)
        reason = error.strerror or str(error)
        raise UserError(f"cannot write {path} ({reason}): free space or pass a writable path") from None
    except BaseException:
        if temporary is not None:
            Path(temporary).unlink(missing_ok=True)
        raise


def _remove_orphans(path: Path) -> None:
    """Delete temporary files of ``path`` whose writer process no longer exists."""
    prefix = f".{path.name}."
    for temporary in path.parent.iterdir():
        name = temporary.name
        if not (name.startswith(prefix) and name.endswith(".tmp")):
            continue
        pid = name[len(prefix) :].split(".", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            temporary.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def run_lines(ranking: Ranking, tag: str | None = None) -> Iterator[str]:
    """TREC lines ``qid Q0 docid rank score tag``; the ranking's order is the rank (ties already resolved)."""
    tag = (tag or ranking.model).replace(" ", "_")
    for item in ranking.items:
        yield f"{ranking.query.qid} Q0 {item.docid} {item.rank} {item.score:.6f} {tag}\n"


def first_repeated_pair(pairs: Iterable[tuple[str, str]]) -> tuple[str, str] | None:
    """The first (qid, docid) that comes twice: a TREC run holds each pair once, and trec_eval would count both."""
    seen: set[tuple[str, str]] = set()
    for pair in pairs:
        if pair in seen:
            return pair
        seen.add(pair)
    return None


def unique_rankings(rankings: Iterable[Ranking], path: str | Path) -> Iterator[Ranking]:
    """``rankings`` as they come, refusing (before the file is renamed into place) a query ranked twice or a
    ranking that lists one document twice: no command writes a run with a repeated (query, document) pair."""
    queries: set[str] = set()
    for ranking in rankings:
        qid = ranking.query.qid
        repeated = first_repeated_pair((qid, item.docid) for item in ranking.items)
        if qid in queries or repeated:
            what = f"document {repeated[1]} twice" if repeated else "its documents a second time"
            raise UserError(f"cannot write {path}: query {qid} would list {what} (two documents with one id in the "
                            "corpus or candidates?): a TREC run holds each (query, document) pair once")
        queries.add(qid)
        yield ranking


def write_run(path: str | Path, rankings: Iterable[Ranking], tag: str | None = None) -> None:
    with atomic_write(path) as out:
        for ranking in unique_rankings(rankings, path):
            out.writelines(run_lines(ranking, tag))


def write_run_and_explanations(
    run: str | Path, explanations: str | Path | None, rankings: Iterable[Ranking], depth: int | None = None
) -> None:
    """The run and its explanations, both written in full before either is renamed into place (explanations
    first, then the run), so a kill or a full disk leaves both files or neither, never a run without its notes."""
    with ExitStack() as stack:
        run_out = stack.enter_context(atomic_write(run))
        notes_out = stack.enter_context(atomic_write(explanations)) if explanations else None
        for ranking in unique_rankings(rankings, run):
            run_out.writelines(run_lines(ranking))
            if notes_out is not None:
                notes_out.writelines(explanation_lines(ranking, depth))


def item_record(item: RankedCandidate) -> dict:
    """The named fields of one ranked document, shared by explanation lines and checkpoints (which add the
    passage and first-stage score); ``ranked_item`` reads them back."""
    return {
        "docid": item.docid,
        "rank": item.rank,
        "score": item.score,
        "label": item.label,
        "explanation": item.explanation,
        "explanation_from": item.explanation_from,
        "explanation_pair": list(item.explanation_pair) if item.explanation_pair else None,
        "evidence": [{"start": span.start, "end": span.end, "score": span.score} for span in item.evidence],
    }


def ranked_item(record: Mapping[str, Any], text: str, first_stage_score: float) -> RankedCandidate:
    """The ranked document of an ``item_record``; KeyError or TypeError when a field is missing or malformed.

    A record written before explanations named their source has no ``explanation_from``: it reads as None.
    """
    pair = record.get("explanation_pair")
    return RankedCandidate(
        Candidate(record["docid"], text, first_stage_score),
        record["score"],
        record["rank"],
        record["explanation"],
        record["label"],
        tuple(Evidence(**span) for span in record["evidence"]),
        ExplanationFrom.read(record.get("explanation_from")),
        (str(pair[0]), str(pair[1])) if isinstance(pair, list) and len(pair) == 2 else None,
    )


def explanation_records(ranking: Ranking, depth: int | None = None) -> Iterator[dict]:
    """The first ``depth`` documents' records (all when None).

    ``evidence``: character offsets into the passage text with the model's score, best first (scoring
    rerankers). ``explanation_from``: where the explanation comes from (``ExplanationFrom``), with
    ``explanation_pair`` the compared pair for a pairwise comparison. ``grounded`` / ``ungrounded``: the quotations
    of a written explanation (generative rerankers) that occur in this passage, with their offsets, and those that
    do not; the explanation is the part of any shared reasoning about this passage, so they are checked against it.
    """
    from reasonrank.prompts.readers import quoted_spans

    for item in ranking.items[:depth]:
        quotes = quoted_spans(item.explanation, item.text) if item.explanation and not item.evidence else []
        yield {
            "qid": ranking.query.qid,
            **item_record(item),
            "grounded": [{"text": q.text, "start": q.start, "end": q.end} for q in quotes if q.grounded],
            "ungrounded": [q.text for q in quotes if not q.grounded],
            "model": ranking.model,
        }


def explanation_lines(ranking: Ranking, depth: int | None = None) -> Iterator[str]:
    """One JSON line per (qid, docid) of the first ``depth`` ranks (all when None), in run order, so each query's
    lines align with the head of its run lines."""
    for record in explanation_records(ranking, depth):
        yield json.dumps(record, ensure_ascii=False) + "\n"


def write_explanations(path: str | Path, rankings: Iterable[Ranking], depth: int | None = None) -> None:
    with atomic_write(path) as out:
        for ranking in rankings:
            out.writelines(explanation_lines(ranking, depth))


def run_fields(line: str, where: str) -> list[str]:
    """The six fields of a TREC run line; ``where`` is ``file:line`` for the error message."""
    fields = line.split()
    if len(fields) != 6:
        raise UserError(f"{where}: expected 6 fields 'qid Q0 docid rank score tag', got {len(fields)}")
    return fields


def read_run(path: str | Path) -> Run:
    return read_tagged_run(path)[0]


def read_tagged_run(path: str | Path) -> tuple[Run, str]:
    """The run and the tag of its first line."""
    run: Run = {}
    tag = ""
    for qid, docid, value, line_tag in iter_run(path):
        tag = tag or line_tag
        run.setdefault(qid, {})[docid] = value
    return run, tag


def iter_run(path: str | Path, unique: bool = True) -> Iterator[tuple[str, str, float, str]]:
    """(qid, docid, score, tag) of each line of a TREC run, checked; ``unique=False`` leaves the check that no
    document appears twice for a query to the caller (it needs every qid's docids in memory)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"run file {path} does not exist: pass the path of a TREC run (qid Q0 docid rank score tag)")
    seen: dict[str, set[str]] = {}
    lines = 0
    for number, line in numbered_lines(path, "run file"):
        if not line.strip():
            continue
        qid, _, docid, _, score, tag = run_fields(line, f"{path}:{number}")
        try:
            value = float(score)
        except ValueError:
            raise UserError(f"{path}:{number}: score {score!r} is not a number") from None
        if not math.isfinite(value):
            # trec_eval would order NaN and infinite scores arbitrarily: a metric computed over them means nothing.
            raise UserError(f"{path}:{number}: score {score!r} is not a finite number: fix the run that wrote it")
        if unique:
            if docid in seen.setdefault(qid, set()):
                raise UserError(f"{path}:{number}: document {docid} appears twice for query {qid}")
            seen[qid].add(docid)
        lines += 1
        yield qid, docid, value, tag
    if not lines:
        raise UserError(f"run file {path} is empty")


def rankings_to_run(rankings: Iterable[Ranking]) -> Run:
    return {r.query.qid: {item.docid: item.score for item in r.items} for r in rankings}
