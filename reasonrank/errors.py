"""User-facing errors: one line saying what is wrong, where, and what to do; exit code 2.

:func:`command` is the one wrapper every command runs in (``python -m reasonrank <command>``, the
``python -m reasonrank.X`` forms and the console scripts alike).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence

EXIT_BUG = 1
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


def report_bug(error: Exception, prog: str) -> int:
    """An exception no check foresaw: one line saying it is a bug and where its full traceback was written.

    The traceback goes to a new file in the temporary folder (``$TMPDIR``), never to the terminal; an
    ``OSError`` naming a file (unreadable, a folder where a file belongs) is the user's to fix and gets the
    ``error:`` line and exit 2 instead.
    """
    if isinstance(error, OSError) and error.filename is not None:
        print(f"error: {error.filename}: {error.strerror or error}: check the path and its permissions",
              file=sys.stderr)
        return EXIT_USER_ERROR
    stamp = time.strftime("%Y%m%d-%H%M%S")
    descriptor, log = tempfile.mkstemp(prefix=f"reasonrank-bug-{stamp}-", suffix=".log")
    with os.fdopen(descriptor, "w", encoding="utf-8") as out:
        out.write(f"{prog} {' '.join(sys.argv[1:])}\n\n")
        out.write("".join(traceback.format_exception(error)))
    summary = (str(error).splitlines() or [""])[0][:200]
    print(f"error: unexpected {type(error).__name__} ({summary}): this is a bug in reasonrank, not in your input; "
          f"the full traceback is in {log}: please report it with that file", file=sys.stderr)
    return EXIT_BUG


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
    is one ``error: ...`` line and exit 2, Ctrl-C prints ``on_interrupt`` and exits 130, and any other exception
    is :func:`report_bug`'s one line (exit 1), its traceback in a log file."""

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
        except BrokenPipeError:  # the reader of our output left (`| head`): nobody to tell, and no bug
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit flush does not fail too
            return EXIT_BUG
        except Exception as error:  # the last resort: a bug, reported without a raw traceback
            return report_bug(error, parser.prog)

    return main
