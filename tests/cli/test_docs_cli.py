"""docs/cli.md is generated from the argument parsers and must match them."""

from __future__ import annotations

from pathlib import Path

from reasonrank.cli import COMMANDS, command_parser
from reasonrank.cli.docs_cli import main, render

CLI_MD = Path(__file__).resolve().parents[2] / "docs" / "cli.md"


def test_docs_cli_md_is_up_to_date():
    assert CLI_MD.read_text(encoding="utf-8") == render(), "run: python -m reasonrank.docs_cli"


def test_every_option_of_every_command_is_documented():
    text = render()
    for name in COMMANDS:
        parser = command_parser(name)
        assert f"## {name}" in text
        for action in parser._actions:
            for flag in action.option_strings:
                assert flag in {"-h", "--help"} or f"`{flag}" in text, f"{name} {flag}"


def test_check_mode_reports_a_stale_file(tmp_path):
    stale = tmp_path / "cli.md"
    stale.write_text("# old\n")
    assert main(["--check", "--output", str(stale)]) == 1
    assert main(["--output", str(stale)]) == 0
    assert main(["--check", "--output", str(stale)]) == 0
    assert stale.read_text() == render()
