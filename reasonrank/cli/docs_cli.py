"""Write docs/cli.md from the parsers of every command, so the two never drift.

``python -m reasonrank.docs_cli``.

``--check`` writes nothing and exits 1 when the file is out of date (the test suite runs the same comparison).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from reasonrank.cli import COMMANDS, command_parser
from reasonrank.errors import command

DEFAULT_OUTPUT = Path("docs") / "cli.md"
USAGE_WIDTH = 100  # fixed, so the usage lines do not depend on the terminal that generated the file


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
    module_form, parser.prog = parser.prog, f"reasonrank {name}"
    parser.formatter_class = lambda prog: argparse.HelpFormatter(prog, width=USAGE_WIDTH)
    lines = [f"## {name}", "", prose(parser.description or ""), ""]
    if module_form != parser.prog:
        lines += [f"Also `{module_form}`.", ""]
    lines += ["```text", parser.format_usage().strip(), "```", ""]
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
        "`reasonrank` (or `python -m reasonrank`) with no command lists them; every command exits 2 with a one-line",
        "`error: ...` on bad input.",
        "",
        *(f"- [`reasonrank {name}`](#{name})" for name in COMMANDS),
        "",
    ]
    for name in COMMANDS:
        lines += command_section(name, command_parser(name))
    return "\n".join(lines).rstrip("\n") + "\n"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m reasonrank.docs_cli", description=__doc__.splitlines()[0])
    parser.add_argument("--output", default=str(DEFAULT_OUTPUT), help="the Markdown file to write")
    parser.add_argument("--check", action="store_true", help="only report whether the file is up to date")
    return parser


def run(args: argparse.Namespace) -> int:
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


main = command(build_parser, run)

if __name__ == "__main__":
    sys.exit(main())
