"""Robustness findings, each pinned: unwritable and full outputs, non-UTF-8 and non-finite inputs, byte-order marks,
missing shards, runs over different query sets, NaN scores sent to the service."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from reasonrank.cli import evaluate, merge, report, search
from reasonrank.errors import UserError
from reasonrank.io.runs import read_run
from reasonrank.io.topics import load_topics
from reasonrank.pipeline import embedded_collection
from reasonrank.report import load_explanations

ROOT = Path(__file__).resolve().parents[2]
RUN = "q1 Q0 d1 1 2.5 t\nq1 Q0 d2 2 1.0 t\nq2 Q0 d1 1 0.5 t\n"


def one_error_line(capsys, *needles: str) -> str:
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert all(needle in lines[0] for needle in needles), lines[0]
    return lines[0]


@pytest.mark.parametrize("flag", ["--output", "--explanations"])
def test_unwritable_output_is_refused_before_any_work(tmp_path, capsys, flag):
    (tmp_path / "afile").write_text("")
    paths = {"--output": tmp_path / "run.txt", "--explanations": tmp_path / "explanations.jsonl"}
    paths[flag] = tmp_path / "afile" / "out"
    argv = ["--reranker", "no-such-reranker", "--quiet"]  # refused first, so no model or index is touched
    for name, path in paths.items():
        argv += [name, str(path)]
    assert search.main(argv) == 2
    one_error_line(capsys, flag, "is a file")
    assert not (tmp_path / "run.txt").exists() and not (tmp_path / "explanations.jsonl").exists()


def limited_run(argv: list[str], limit: int, cwd: Path) -> subprocess.CompletedProcess:
    """A command under RLIMIT_FSIZE: a write past ``limit`` bytes fails with EFBIG, as on a full disk."""
    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", *argv], cwd=cwd, env=env, preexec_fn=cap, capture_output=True,
                          text=True, timeout=600)


def test_full_disk_is_one_line_and_leaves_no_file(tmp_path):
    shard = "".join(f"q{q} Q0 d{d} {d} {100 - d}.0 tag\n" for q in range(40) for d in range(1, 100))
    (tmp_path / "shard.txt").write_text(shard)
    done = limited_run(["reasonrank.merge", "--runs", "shard.txt", "--output", "out/merged.txt"], 64 * 1024, tmp_path)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot write out/merged.txt") and "too large" in lines[0]
    assert list((tmp_path / "out").iterdir()) == []  # neither the run nor its temporary file


def test_search_on_a_full_disk_keeps_no_partial_run(tmp_path, capsys):
    embedded = embedded_collection()
    warm = ["--reranker", "none", "--hits", "1", "--quiet", "--output", str(tmp_path / "warm.txt")]
    assert search.main(warm) == 0  # builds the index cache outside the limit
    capsys.readouterr()
    done = limited_run(["reasonrank.search", "--reranker", "none", "--hits", "100", "--quiet", "--topics",
                        str(embedded.topics), "--output", "full/run.txt"], 32 * 1024, tmp_path)
    assert done.returncode == 2, done.stderr[-2000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("error")]
    assert len(errors) == 1 and "cannot write full/run.txt" in errors[0] and "Traceback" not in done.stderr
    assert list((tmp_path / "full").iterdir()) == []

    # A run that fits and explanations that do not: both or neither, never a run without its explanations.
    done = limited_run(["reasonrank.search", "--reranker", "none", "--hits", "5", "--quiet", "--topics",
                        str(embedded.topics), "--output", "half/run.txt", "--explanations", "half/notes.jsonl"],
                       16 * 1024, tmp_path)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "cannot write half/notes.jsonl" in done.stderr and "Traceback" not in done.stderr
    assert list((tmp_path / "half").iterdir()) == []


@pytest.mark.parametrize("content", [b"q1 Q0 d1 1 nan t\n", b"q1 Q0 d1 1 inf t\n", b"q1 Q0 d\xe9 1 1.0 t\n"])
def test_run_with_non_finite_score_or_latin1_bytes_is_refused(tmp_path, content):
    path = tmp_path / "run.txt"
    path.write_bytes(content)
    with pytest.raises(UserError, match=r"run.txt(:1: score .* is not a finite number|: not UTF-8 text)"):
        read_run(path)


def test_explanations_that_are_not_utf8_are_one_line(tmp_path):
    path = tmp_path / "explanations.jsonl"
    path.write_bytes(b'{"qid": "q1", "docid": "d1", "explanation": "caf\xe9"}\n')
    with pytest.raises(UserError, match="not UTF-8 text"):
        load_explanations(path)


def test_byte_order_mark_is_dropped_with_a_note(tmp_path, caplog):
    path = tmp_path / "topics.tsv"
    path.write_bytes("\ufeff19335\tanthropological definition of environment\n".encode())
    queries = load_topics(str(path))
    assert [q.qid for q in queries] == ["19335"]
    assert any("byte-order mark" in record.getMessage() for record in caplog.records)


def test_merge_says_when_a_shard_is_missing(tmp_path, caplog):
    (tmp_path / "topics.tsv").write_text("q1\tx\nq2\ty\nq3\tz\n")
    (tmp_path / "shard0.txt").write_text("q1 Q0 d1 1 1.0 t\nq3 Q0 d1 1 1.0 t\n")
    argv = ["--runs", str(tmp_path / "shard0.txt"), "--topics", str(tmp_path / "topics.tsv"),
            "--output", str(tmp_path / "merged.txt")]
    assert merge.main(argv) == 0
    notes = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(notes) == 1 and "1 of the 3 queries" in notes[0] and "q2" in notes[0]


def test_report_refuses_a_baseline_over_other_queries(tmp_path, capsys):
    (tmp_path / "run.txt").write_text(RUN)
    (tmp_path / "baseline.txt").write_text("q1 Q0 d2 1 3.0 bm25\n")
    argv = ["--run", str(tmp_path / "run.txt"), "--baseline", str(tmp_path / "baseline.txt"),
            "--out", str(tmp_path / "report.html")]
    assert report.main(argv) == 2
    one_error_line(capsys, "covers 2 queries", "1 in common")
    assert not (tmp_path / "report.html").exists()


def test_evaluate_refuses_a_nan_run(tmp_path, capsys):
    (tmp_path / "run.txt").write_text("q1 Q0 d1 1 NaN t\n")
    (tmp_path / "qrels.txt").write_text("q1 0 d1 1\n")
    assert evaluate.main(["--run", str(tmp_path / "run.txt"), "--qrels", str(tmp_path / "qrels.txt")]) == 2
    one_error_line(capsys, "not a finite number")


@pytest.mark.slow
def test_service_with_minilm_hybrid_refuses_non_finite_scores():
    from fastapi.testclient import TestClient

    from reasonrank.rerank.registry import load_reranker
    from reasonrank.serve.app import create_app

    client = TestClient(create_app(load_reranker("minilm-hybrid")))
    candidates = [{"docid": "d1", "text": "the sun is a star", "score": 3.0},
                  {"docid": "d2", "text": "a star is a ball of plasma", "score": 1.0}]
    assert client.post("/rerank", json={"query": "what is a star", "candidates": candidates}).status_code == 200
    for bad in ("NaN", "Infinity", "-Infinity"):
        body = json.dumps({"query": "what is a star", "candidates": candidates}).replace("1.0", bad)
        answer = client.post("/rerank", content=body, headers={"content-type": "application/json"})
        assert answer.status_code == 422, (bad, answer.text)
        assert "candidates.1.score" in answer.json()["error"]
