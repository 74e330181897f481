"""The commands: ``reasonrank <command>`` (or ``python -m reasonrank <command>``) runs one; alone, it lists them.

Each command is a module with ``build_parser()`` and ``run(args)``, wrapped once by :func:`reasonrank.errors.command`
into its ``main``; adding a command is that module plus one line in :data:`COMMANDS`. The documented
``python -m reasonrank.X`` forms run the same ``main``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from types import ModuleType

from reasonrank.errors import EXIT_USER_ERROR

# command -> module with build_parser(), run(args) and main; in the order a run flows through them.
COMMANDS: dict[str, str] = {
    "search": "reasonrank.cli.search",
    "evaluate": "reasonrank.cli.evaluate",
    "report": "reasonrank.cli.report",
    "merge": "reasonrank.cli.merge",
    "bright": "reasonrank.cli.bright",
    "serve": "reasonrank.cli.serve",
    "mcp": "reasonrank.cli.mcp",
    "openai-server": "reasonrank.serve.openai_server",
    "java-build": "reasonrank.cli.java_build",
    "export-hf": "reasonrank.cli.export_hf",
    "teacher": "reasonrank.train.teacher",
    "sft": "reasonrank.train.sft",
    "distill": "reasonrank.train.distill",
    "reward": "reasonrank.train.reward",
    "docs": "reasonrank.cli.docs_cli",
}


def command_module(name: str) -> ModuleType:
    return importlib.import_module(COMMANDS[name])


def command_parser(name: str) -> argparse.ArgumentParser:
    return command_module(name).build_parser()


def listing() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: reasonrank <command> [options]   (reasonrank <command> --help for its options)", "", "commands:"]
    lines += [f"  {name:<{width}}  {command_parser(name).description or ''}" for name in COMMANDS]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(listing())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"error: unknown command {name!r}: use one of {', '.join(COMMANDS)}", file=sys.stderr)
        return EXIT_USER_ERROR
    return command_module(name).main(rest, prog=f"reasonrank {name}")
