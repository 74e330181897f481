"""One JSON object per line, read with errors that name the file and line."""

from __future__ import annotations

import json
from typing import Any

from reasonrank.errors import UserError


def parse_object(line: str, where: str, advice: str = "") -> dict[str, Any]:
    """The JSON object on one line; ``where`` is ``file:line`` and ``advice`` what to do, for the error message."""
    advice = f": {advice}" if advice else ""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        raise UserError(f"{where}: malformed JSON ({error.msg}){advice}") from None
    if not isinstance(record, dict):
        raise UserError(f"{where}: expected one JSON object per line{advice}")
    return record
