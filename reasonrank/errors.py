"""User-facing errors: one line saying what is wrong, where, and what to do; exit code 2."""

from __future__ import annotations

import sys

EXIT_USER_ERROR = 2


class UserError(Exception):
    """A problem with the user's input or environment (never a bug in reasonrank).

    Command-line entry points catch it, print ``error: <message>`` on one line and exit 2.
    """


def report_error(error: UserError) -> int:
    """Print the one-line message the way every reasonrank command does; returns the exit code."""
    print(f"error: {error}", file=sys.stderr)
    return EXIT_USER_ERROR
