"""User-facing errors: one line saying what is wrong, where, and what to do; exit code 2.

:func:`command` is the one wrapper every command runs in (``python -m reasonrank <command>``, the
``python -m reasonrank.X`` forms and the console scripts alike).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


class UserError(Exception):
    """A problem with the user's input or environment (never a bug in reasonrank).

    Command-line entry points catch it, print ``error: <message>`` on one line and exit 2.
    """


def report_error(error: UserError) -> int:
    """Print the one-line message the way every reasonrank command does; returns the exit code."""
    print(f"error: {error}", file=sys.stderr)
    return EXIT_USER_ERROR


CommandMain = Callable[..., int]


def command(
    build_parser: Callable[[], argparse.ArgumentParser],
    run: Callable[[argparse.Namespace], int | None],
    *,
    on_interrupt: str = "interrupted",
    log_level: int = logging.WARNING,
    log_format: str = "%(levelname)s %(name)s: %(message)s",
) -> CommandMain:
    """A command's ``main(argv=None, prog=None) -> exit code``: parse, set up logging, run; a :class:`UserError`
    is one ``error: ...`` line and exit 2, Ctrl-C prints ``on_interrupt`` and exits 130."""

    def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
        parser = build_parser()
        if prog:
            parser.prog = prog
        args = parser.parse_args(argv)
        logging.basicConfig(level=log_level, format=log_format)
        try:
            return run(args) or 0
        except UserError as error:
            return report_error(error)
        except KeyboardInterrupt:
            print(on_interrupt, file=sys.stderr)
            return EXIT_INTERRUPTED

    return main
