"""Join the shard runs of ``search --shard I/N`` into one run (the command: ``python -m reasonrank.merge``).

Lines are copied as they are (never re-formatted), so merged shards equal the unsharded run byte for byte.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from reasonrank.errors import UserError
from reasonrank.io.runs import atomic_write


@dataclass(frozen=True, slots=True)
class Merged:
    """Lines of the merged file grouped by qid, in output order, and which input each qid came from."""

    lines: dict[str, list[str]]
    sources: dict[str, Path]


def run_qid(line: str, where: str) -> str:
    fields = line.split()
    if len(fields) != 6:
        raise UserError(f"{where}: expected 6 fields 'qid Q0 docid rank score tag', got {len(fields)}")
    return fields[0]


def explanation_qid(line: str, where: str) -> str:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        raise UserError(f"{where}: malformed JSON ({error.msg}): pass the file written by --explanations") from None
    if not isinstance(record, dict) or "qid" not in record:
        raise UserError(f"{where}: an explanation line is a JSON object with a 'qid' key")
    return str(record["qid"])


def group_lines(paths: Sequence[str | Path], qid_of: Callable[[str, str], str], kind: str) -> Merged:
    """Every input's lines grouped by qid, qids in order of first appearance; a qid in two inputs is an error."""
    lines: dict[str, list[str]] = {}
    sources: dict[str, Path] = {}
    for path in map(Path, paths):
        if not path.is_file():
            raise UserError(f"{kind} file {path} does not exist: pass the files written by each shard")
        with path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                qid = qid_of(line, f"{path}:{number}")
                if sources.setdefault(qid, path) != path:
                    raise UserError(f"{path}:{number}: query {qid} is also in {sources[qid]}: each shard must hold "
                                    "different queries (were two files given twice or from the same --shard?)")
                # A last line without its newline would otherwise be glued to the next file's first line.
                lines.setdefault(qid, []).append(line if line.endswith("\n") else line + "\n")
    if not lines:
        raise UserError(f"the {kind} files {', '.join(map(str, paths))} are empty")
    return Merged(lines, sources)


def ordered(merged: Merged, order: Sequence[str] | None, kind: str) -> list[str]:
    """Qids in topic order when ``order`` is given (queries without lines are skipped), else as they came."""
    if order is None:
        return list(merged.lines)
    rank = {qid: position for position, qid in enumerate(order)}
    stray = [qid for qid in merged.lines if qid not in rank]
    if stray:
        raise UserError(f"query {stray[0]} of {merged.sources[stray[0]]} is not in --topics: pass the topics the "
                        f"{kind} files were made from")
    return sorted(merged.lines, key=rank.__getitem__)


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
    if explanations_output is not None:
        notes = group_lines(explanations, explanation_qid, "explanations")
        unknown = [qid for qid in notes.lines if qid not in merged.lines]
        if unknown:
            raise UserError(f"query {unknown[0]} of {notes.sources[unknown[0]]} is in no run: pass the explanation "
                            "files of the same shards as --runs")
        write_lines(explanations_output, notes, [qid for qid in qids if qid in notes.lines])
    write_lines(output, merged, qids)
    return len(qids)
