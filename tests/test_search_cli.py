"""The search command end to end on the real DL19 mini collection: runs, metrics, bad input, resume."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reasonrank.search import embedded_collection, main

ROOT = Path(__file__).resolve().parent.parent


def test_bm25_run_and_metrics_table(tmp_path, capsys):
    embedded = embedded_collection()
    output = tmp_path / "bm25.txt"
    code = main(["--index", str(embedded.corpus), "--topics", str(embedded.topics), "--output", str(output),
                 "--hits", "100", "--reranker", "none", "--qrels", str(embedded.qrels), "--quiet"])
    assert code == 0
    lines = output.read_text().splitlines()
    assert len(lines) == 43 * 100
    table = capsys.readouterr().out
    ndcg = float(next(line for line in table.splitlines() if line.startswith("nDCG@10")).split()[1])
    assert ndcg == pytest.approx(0.732, abs=0.005)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--topics", "missing-topics.tsv"], "missing-topics.tsv"),
        (["--qrels", "missing-qrels.txt"], "missing-qrels.txt"),
        (["--cascade", "minilm-bi"], "NAME:DEPTH"),
        (["--reranker", "no-such-reranker"], "unknown reranker"),
        (["--shard", "3/2"], "--shard"),
        (["--hits", "0"], "at least 1"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, args, message):
    output = tmp_path / "run.txt"
    assert main(["--output", str(output), "--quiet", *args]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("error: ") and message in error[0]
    assert not output.exists()


def run_cli(args: list[str], **kwargs) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "reasonrank.search", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


@pytest.mark.slow
def test_killed_run_resumes_to_an_identical_run(tmp_path):
    common = ["--reranker", "minilm-bi", "--hits", "30", "--batch-size", "1", "--quiet",
              "--explanations"]
    full, resumed = tmp_path / "full.txt", tmp_path / "resumed.txt"
    assert run_cli(["--output", str(full), *common, str(tmp_path / "full.jsonl")]).wait(timeout=600) == 0

    args = ["--output", str(resumed), *common, str(tmp_path / "resumed.jsonl")]
    process = run_cli(args)
    deadline = time.monotonic() + 300
    checkpoint: list[Path] = []
    while time.monotonic() < deadline and process.poll() is None:
        checkpoint = list(tmp_path.glob(".resumed.txt.*.partial.jsonl"))
        if checkpoint and len(checkpoint[0].read_text().splitlines()) >= 5:
            break
        time.sleep(0.2)
    assert process.poll() is None, "the run finished before it could be interrupted"
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not resumed.exists()
    finished_before = len(checkpoint[0].read_text().splitlines())
    assert 5 <= finished_before < 43

    assert run_cli(args).wait(timeout=600) == 0
    assert resumed.read_text() == full.read_text()
    assert (tmp_path / "resumed.jsonl").read_text() == (tmp_path / "full.jsonl").read_text()
    assert not list(tmp_path.glob(".resumed.txt.*.partial.jsonl"))
