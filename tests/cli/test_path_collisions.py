"""The path rule on every command: no output may be an input, lie inside an input folder or be another output.

Each case runs the real command in this process and fails fast (the rule is checked before any model loads):
exit 2, one ``error:`` line naming both flags, every file byte-identical (tests/collisions.py).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from collisions import LAYOUTS, collision_outcome, collisions, every_collision
from hypothesis import HealthCheck, given, settings

CASES = every_collision()


def test_every_command_with_outputs_is_covered():
    from reasonrank.cli import COMMANDS

    # evaluate and mcp write no file; docs and openai-server read no user file; java-build reads the project's own
    # sources (its test is below).
    assert set(COMMANDS) - set(LAYOUTS) == {"evaluate", "mcp", "java-build", "docs", "openai-server"}
    assert {case.command for case in CASES} == set(LAYOUTS)


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.command}-{c.output}-{c.target}-{c.spelling}")
def test_each_output_on_each_input_and_other_output_is_refused(case, tmp_path):
    assert collision_outcome(case, tmp_path) == "refused"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(collisions)
def test_any_pairing_through_any_spelling_is_refused(case):
    with tempfile.TemporaryDirectory() as folder:
        assert collision_outcome(case, Path(folder).resolve()) == "refused"


def test_a_cache_folder_inside_the_corpus_folder_is_refused(tmp_path, monkeypatch, capsys):
    """The first stage writes its index and embeddings under $REASONRANK_CACHE: a folder output like the others."""
    from reasonrank.cli.search import main
    from reasonrank.pipeline import embedded_collection

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "corpus.jsonl").write_bytes(embedded_collection().corpus.read_bytes())
    monkeypatch.setenv("REASONRANK_CACHE", str(corpus / "cache"))
    argv = ["--index", str(corpus), "--reranker", "none", "--quiet", "--output", str(tmp_path / "run.txt")]
    assert main(argv) == 2
    assert capsys.readouterr().err.startswith(f"error: $REASONRANK_CACHE {corpus / 'cache'} lies inside the --index")
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["corpus", "corpus.jsonl"]


@pytest.mark.parametrize("clean", [False, True])
def test_java_build_never_writes_over_or_removes_its_sources(clean, capsys):
    from reasonrank.cli.java_build import main
    from reasonrank.integrations.anserini import JAVA_SOURCES as sources

    before = {p: p.read_bytes() for p in sources.rglob("*") if p.is_file()}
    out = sources.parent if clean else sources
    assert main(["--out", str(out), *(["--clean"] if clean else [])]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and error.startswith("error: --")
    assert {p: p.read_bytes() for p in sources.rglob("*") if p.is_file()} == before
