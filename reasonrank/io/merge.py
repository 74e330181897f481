"""Join the shard runs of ``search --shard I/N`` into one run (the command: ``python -m reasonrank.merge``).

Lines are copied as they are (never re-formatted), so merged shards equal the unsharded run byte for byte.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from reasonrank.errors import UserError
from reasonrank.io.jsonl import parse_object
from reasonrank.io.runs import atomic_write, first_repeated_pair, run_fields
from reasonrank.io.text import numbered_lines

log = logging.getLogger("reasonrank")


@dataclass(frozen=True, slots=True)
class Merged:
    """Lines of the merged file grouped by qid, in output order, and which input each qid came from."""

    lines: dict[str, list[str]]
    sources: dict[str, Path]


def run_qid(line: str, where: str) -> str:
    return run_fields(line, where)[0]


def explanation_qid(line: str, where: str) -> str:
    record = parse_object(line, where, "pass the file written by --explanations")
    if "qid" not in record:
        raise UserError(f"{where}: an explanation line is a JSON object with a 'qid' key")
    return str(record["qid"])


def group_lines(paths: Sequence[str | Path], qid_of: Callable[[str, str], str], kind: str) -> Merged:
    """Every input's lines grouped by qid, qids in order of first appearance; a qid in two inputs is an error."""
    lines: dict[str, list[str]] = {}
    sources: dict[str, Path] = {}
    for path in map(Path, paths):
        if not path.is_file():
            raise UserError(f"{kind} file {path} does not exist: pass the files written by each shard")
        for number, line in numbered_lines(path, f"{kind} file"):
            if not line.strip():
                continue
            qid = qid_of(line, f"{path}:{number}")
            if sources.setdefault(qid, path) != path:
                raise UserError(f"{path}:{number}: query {qid} is also in {sources[qid]}: each shard must hold "
                                "different queries (were two files given twice or from the same --shard?)")
            lines.setdefault(qid, []).append(line + "\n")
    if not lines:
        raise UserError(f"the {kind} files {', '.join(map(str, paths))} are empty")
    return Merged(lines, sources)


def ordered(merged: Merged, order: Sequence[str] | None, kind: str) -> list[str]:
    """Qids in topic order when ``order`` is given, else as they came; topics without lines get a warning line
    (a shard left out would otherwise vanish from the merged run without a word)."""
    if order is None:
        return list(merged.lines)
    rank = {qid: position for position, qid in enumerate(order)}
    stray = [qid for qid in merged.lines if qid not in rank]
    if stray:
        raise UserError(f"query {stray[0]} of {merged.sources[stray[0]]} is not in --topics: pass the topics the "
                        f"{kind} files were made from")
    missing = [qid for qid in order if qid not in merged.lines]
    if missing:
        log.warning("%d of the %d queries of --topics (first: %s) are in no %s file: merged without them; "
                    "pass every shard's file if one is missing", len(missing), len(order), missing[0], kind)
    return sorted(merged.lines, key=rank.__getitem__)


def check_pairs(merged: Merged) -> None:
    """Refuse, before anything is written, a (query, document) pair that would be in the merged run twice."""
    for qid, lines in merged.lines.items():
        repeated = first_repeated_pair((qid, line.split()[2]) for line in lines)
        if repeated:
            raise UserError(f"{merged.sources[qid]}: query {qid} lists document {repeated[1]} twice: a TREC run "
                            "holds each (query, document) pair once; fix the run that wrote it")


def write_lines(path: str | Path, merged: Merged, qids: Sequence[str]) -> None:
    with atomic_write(path) as out:
        for qid in qids:
            out.writelines(merged.lines[qid])


def merge(
    runs: Sequence[str | Path],
    output: str | Path,
    topics: Sequence[str] | None = None,
    explanations: Sequence[str | Path] = (),
    explanations_output: str | Path | None = None,
) -> int:
    """Merge shard runs (and their explanation files) into ``output``; returns the number of queries.

    ``topics`` is the qid order of the unsharded run. Both outputs are checked before either is written.
    """
    if bool(explanations) != (explanations_output is not None):
        raise UserError("--explanations and --explanations-output go together: pass both or neither")
    merged = group_lines(runs, run_qid, "run")
    qids = ordered(merged, topics, "run")
    check_pairs(merged)
    if explanations_output is not None:
        notes = group_lines(explanations, explanation_qid, "explanations")
        unknown = [qid for qid in notes.lines if qid not in merged.lines]
        if unknown:
            raise UserError(f"query {unknown[0]} of {notes.sources[unknown[0]]} is in no run: pass the explanation "
                            "files of the same shards as --runs")
        unexplained = [qid for qid in qids if qid not in notes.lines]
        if unexplained:
            raise UserError(f"query {unexplained[0]} of {merged.sources[unexplained[0]]} has no explanations: pass "
                            "the explanation files of the same shards as --runs")
        write_lines(explanations_output, notes, [qid for qid in qids if qid in notes.lines])
    write_lines(output, merged, qids)
    return len(qids)
