"""User-facing errors: one line saying what is wrong, where, and what to do; exit code 2."""

from __future__ import annotations

EXIT_USER_ERROR = 2


class UserError(Exception):
    """A problem with the user's input or environment (never a bug in reasonrank).

    Command-line entry points catch it, print ``error: <message>`` on one line and exit 2.
    """
