"""``python -m reasonrank.docs_cli``: write docs/cli.md from the command-line parsers, so the two never drift.

``--check`` writes nothing and exits 1 when the file is out of date (the test suite runs the same comparison).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

DEFAULT_OUTPUT = Path("docs") / "cli.md"
USAGE_WIDTH = 100  # fixed, so the usage lines do not depend on the terminal that generated the file


def search_parser() -> argparse.ArgumentParser:
    from reasonrank.cli import search

    parser = argparse.ArgumentParser(prog="python -m reasonrank.search", description=search.__doc__.splitlines()[0])
    search.define_search_args(parser)
    return parser


def evaluate_parser() -> argparse.ArgumentParser:
    from reasonrank.cli.evaluate import build_parser

    return build_parser()


def report_parser() -> argparse.ArgumentParser:
    from reasonrank.cli.report import build_parser

    return build_parser()


def merge_parser() -> argparse.ArgumentParser:
    from reasonrank.cli.merge import build_parser

    return build_parser()


# Heading (also the link anchor) -> parser, in the order a run flows through them.
COMMANDS: dict[str, Callable[[], argparse.ArgumentParser]] = {
    "search": search_parser,
    "evaluate": evaluate_parser,
    "report": report_parser,
    "merge": merge_parser,
}


def invocation(action: argparse.Action) -> str:
    """``--index INDEX``, ``--first-stage {bm25,dense}``, ``--runs RUN [RUN ...]``, ``--quiet``."""
    flags = ", ".join(action.option_strings)
    if action.nargs == 0:
        return flags
    if action.metavar is not None:
        metavar = str(action.metavar)
    elif action.choices:
        metavar = "{" + ",".join(map(str, action.choices)) + "}"
    else:
        metavar = action.dest.upper()
    value = {"+": f"{metavar} [{metavar} ...]", "*": f"[{metavar} ...]", "?": f"[{metavar}]"}.get(
        action.nargs, metavar  # type: ignore[arg-type]
    )
    return f"{flags} {value}" if flags else value


def default(action: argparse.Action) -> str:
    if action.required:
        return "required"
    if action.default in (None, False, [], argparse.SUPPRESS) or action.nargs == 0:
        return ""
    return f"`{action.default}`"


def cell(value: str) -> str:
    """A Markdown table cell (GFM reads ``\\|`` as a literal bar, also inside code spans)."""
    return value.replace("|", "\\|").replace("\n", " ")


def prose(value: str) -> str:
    """Help text as Markdown: ``<id>`` would otherwise vanish as an unknown HTML tag."""
    return cell(value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;"))


def command_section(name: str, parser: argparse.ArgumentParser) -> list[str]:
    parser.formatter_class = lambda prog: argparse.HelpFormatter(prog, width=USAGE_WIDTH)
    lines = [f"## {name}", "", prose(parser.description or ""), "", "```text", parser.format_usage().strip(), "```", ""]
    # argparse keeps its groups private; reading them is the only way to list the options group by group.
    for group in parser._action_groups:
        actions = [a for a in group._group_actions if not isinstance(a, argparse._HelpAction)]
        if not actions:
            continue
        title = "options" if group.title in ("options", "optional arguments") else group.title
        lines += [f"### {name}: {title}", "", "| option | default | description |", "|---|---|---|"]
        for action in actions:
            help_text = (action.help or "") % {"default": action.default, "prog": parser.prog}
            lines.append(f"| `{cell(invocation(action))}` | {cell(default(action))} | {prose(help_text)} |")
        lines.append("")
    return lines


def render() -> str:
    lines = [
        "# Command-line reference",
        "",
        "Generated from the argument parsers by `python -m reasonrank.docs_cli`; edit the parsers, not this file.",
        "Every command exits 2 with a one-line `error: ...` on bad input.",
        "",
        *(f"- [`python -m reasonrank.{name}`](#{name})" for name in COMMANDS),
        "",
    ]
    for name, build in COMMANDS.items():
        lines += command_section(name, build())
    return "\n".join(lines).rstrip("\n") + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reasonrank.docs_cli", description=__doc__.splitlines()[0])
    parser.add_argument("--output", default=str(DEFAULT_OUTPUT), help="the Markdown file to write")
    parser.add_argument("--check", action="store_true", help="only report whether the file is up to date")
    args = parser.parse_args(argv)
    text, output = render(), Path(args.output)
    current = output.read_text(encoding="utf-8") if output.is_file() else None
    if args.check:
        if current != text:
            print(f"{output} is out of date: run python -m reasonrank.docs_cli", file=sys.stderr)
            return 1
        return 0
    if current != text:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text, encoding="utf-8")
    print(f"wrote {output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
