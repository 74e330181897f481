"""The one wrapper every command runs in: a user's mistake is one ``error:`` line (exit 2); anything else is one
line saying it is a bug and naming the log file that holds the traceback (exit 1), never a raw traceback."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from reasonrank.errors import EXIT_BUG, EXIT_USER_ERROR, UserError, command


def _command(failure: Exception):
    def run(args: argparse.Namespace) -> int:
        raise failure

    return command(lambda: argparse.ArgumentParser(prog="reasonrank demo"), run)


def test_an_unexpected_exception_is_one_line_and_its_traceback_goes_to_a_log(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr("tempfile.tempdir", None)  # re-read TMPDIR
    assert _command(TypeError("unexpected keyword argument 'seed'"))([]) == EXIT_BUG
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "Traceback" not in error
    assert error.startswith("error: unexpected TypeError (unexpected keyword argument 'seed'): this is a bug")
    log = Path(re.search(r"the full traceback is in (\S+):", error).group(1))
    assert log.parent == tmp_path
    text = log.read_text()
    assert text.startswith("reasonrank demo") and "Traceback (most recent call last)" in text
    assert "TypeError: unexpected keyword argument 'seed'" in text and "in run" in text


def test_a_user_error_is_never_reported_as_a_bug(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr("tempfile.tempdir", None)
    assert _command(UserError("--topics x.tsv does not exist"))([]) == EXIT_USER_ERROR
    assert capsys.readouterr().err == "error: --topics x.tsv does not exist\n"
    unreadable = PermissionError(13, "Permission denied", str(tmp_path / "run.txt"))
    assert _command(unreadable)([]) == EXIT_USER_ERROR
    assert capsys.readouterr().err == f"error: {tmp_path / 'run.txt'}: Permission denied: check the path and its " \
                                      "permissions\n"
    assert list(tmp_path.iterdir()) == []  # no log: nothing went wrong inside reasonrank
