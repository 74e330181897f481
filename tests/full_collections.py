"""The full collections the slices in tests/data were cut from, where a machine has them.

Tests never need them: a test may add a case on a full collection when it is present (``REASONRANK_FULL_DATA``,
or ``../shared/data`` beside the project root), e.g. to check a published figure that only the whole collection
reproduces.
"""

from __future__ import annotations

import os
from pathlib import Path

FULL_DATA = Path(os.environ.get("REASONRANK_FULL_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def full_collection(name: str) -> Path | None:
    """The folder of the full collection ``name`` when it is on this machine, else None (no case is added)."""
    folder = FULL_DATA / name
    return folder if (folder / "corpus.jsonl").is_file() else None
