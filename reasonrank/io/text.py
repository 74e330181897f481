"""Text files read line by line the one way every reader needs: strict UTF-8, numbered lines, visible repairs.

Lines end at ``\\n`` (``\\r\\n`` and a lone ``\\r`` too, as Python's text files read them) and nowhere else:
``str.splitlines()`` would also cut at U+0085, U+2028 and friends, which real passages contain. A UTF-8
byte-order mark at the start is dropped with a note, never glued to the first query or document id.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

from reasonrank.errors import UserError

BOM = "\ufeff"
log = logging.getLogger("reasonrank")


def is_run_token(identifier: str) -> bool:
    """Whether an id survives a TREC run line (split on whitespace) unchanged and visible."""
    return bool(identifier) and identifier.isprintable() and identifier.split() == [identifier]


def numbered_lines(path: str | Path, kind: str) -> Iterator[tuple[int, str]]:
    """``(line number, line without its end)`` for every line of a UTF-8 file; ``kind`` names it in errors."""
    path = Path(path)
    try:
        with path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if number == 1 and line.startswith(BOM):
                    log.warning("%s: starts with a byte-order mark (U+FEFF); ignored", path)
                    line = line[1:]
                yield number, line.rstrip("\r\n")
    except UnicodeDecodeError as error:
        raise UserError(
            f"{path}: not UTF-8 text ({error.reason} at byte {error.start}): pass the {kind} as UTF-8"
        ) from None
    except OSError as error:
        raise UserError(f"cannot read {kind} {path} ({error.strerror}): pass a readable file") from None


def check_writable(path: str | Path, flag: str) -> None:
    """Refuse an output path that cannot be written, before any work is spent on what would go there.

    Nothing is created: the nearest existing folder on the way must be a writable folder.
    """
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{flag} {path} is a folder: pass a file path")
    existing = path.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"{flag} {path}: {existing} is a file, not a folder: pass a writable path")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"{flag} {path}: {existing} is not writable: pass a writable path")
