"""The search command end to end on the real DL19 mini collection: runs, metrics, bad input, resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reasonrank.cli.search import build_parser, main, settings_from
from reasonrank.pipeline import embedded_collection, run_search
from reasonrank.rerank.base import Reranker
from reasonrank.rerank.cascade import Cascade
from reasonrank.types import RankedCandidate, Ranking, Request

ROOT = Path(__file__).resolve().parents[2]


def test_bm25_run_and_metrics_table(tmp_path, capsys):
    embedded = embedded_collection()
    output = tmp_path / "bm25.txt"
    code = main(
        [
            "--index",
            str(embedded.corpus),
            "--topics",
            str(embedded.topics),
            "--output",
            str(output),
            "--hits",
            "100",
            "--reranker",
            "none",
            "--qrels",
            str(embedded.qrels),
            "--quiet",
        ]
    )
    assert code == 0
    lines = output.read_text().splitlines()
    assert len(lines) == 43 * 100
    table = capsys.readouterr().out
    ndcg = float(next(line for line in table.splitlines() if line.startswith("nDCG@10")).split()[1])
    assert ndcg == pytest.approx(0.732, abs=0.005)


class ReversingReranker(Reranker):
    """Puts the candidates in reverse order and records the (docid, text) pairs it was given."""

    def __init__(self, name: str):
        self.name = name
        self.seen: dict[str, list[tuple[str, str]]] = {}

    def rerank_request(self, request: Request) -> Ranking:
        self.seen[request.query.qid] = [(c.docid, c.text) for c in request.candidates]
        reverse = request.candidates[::-1]
        items = tuple(RankedCandidate(c, float(-rank), rank) for rank, c in enumerate(reverse, start=1))
        return Ranking(request.query, items, self.name)


def test_cascade_stages_read_the_passages_they_rerank(tmp_path):
    """The first stage fetches text as deep as the deepest stage reads: every passage a stage gets is real."""
    embedded = embedded_collection()
    lines = embedded.corpus.read_text(encoding="utf-8").strip("\n").split("\n")  # "\u2028" is no line end
    corpus = {r["_id"]: r["text"] for r in map(json.loads, lines)}
    wide, narrow = ReversingReranker("wide"), ReversingReranker("narrow")
    args = build_parser().parse_args(["--hits", "30", "--output", str(tmp_path / "run.txt"), "--quiet"])
    result = run_search(settings_from(args), reranker=Cascade([(wide, 20), (narrow, 5)]))
    assert result.output.is_file() and result.reranker_name == "wide+narrow"
    assert len(wide.seen) == len(narrow.seen) == 43
    for stage, depth in ((wide, 20), (narrow, 5)):
        for pairs in stage.seen.values():
            assert len(pairs) == depth
            assert [text for _, text in pairs] == [corpus[docid] for docid, _ in pairs]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--topics", "missing-topics.tsv"], "missing-topics.tsv"),
        (["--qrels", "missing-qrels.txt"], "missing-qrels.txt"),
        (["--cascade", "minilm-bi"], "NAME:DEPTH"),
        (["--reranker", "no-such-reranker"], "unknown reranker"),
        (["--shard", "3/2"], "--shard"),
        (["--hits", "0"], "at least 1"),
        (["--reranker", "minilm-bi", "--option", "batch_sise=4"], "valid options are"),
        (["--reranker", "smollm2-pointwise", "--option", "batch_size=abc"], "expected an integer"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, monkeypatch, args, message):
    def no_bm25(*args, **kwargs):
        raise AssertionError("BM25 ran before the bad input was reported")

    monkeypatch.setattr("reasonrank.retrieval.bm25.Bm25FirstStage.search", no_bm25)
    output = tmp_path / "run.txt"
    assert main(["--output", str(output), "--quiet", *args]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("error: ") and message in error[0]
    assert not output.exists()


def run_cli(args: list[str], **kwargs) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "reasonrank.search", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


@pytest.mark.slow
def test_killed_run_resumes_to_an_identical_run(tmp_path, monkeypatch):
    # Every run computes its vectors: with the embedding cache the second run would finish before it is killed.
    monkeypatch.setenv("REASONRANK_EMBEDDING_CACHE", "0")
    common = ["--reranker", "minilm-bi", "--hits", "30", "--batch-size", "1", "--quiet", "--explanations"]
    full, resumed = tmp_path / "full.txt", tmp_path / "resumed.txt"
    assert run_cli(["--output", str(full), *common, str(tmp_path / "full.jsonl")]).wait(timeout=600) == 0

    args = ["--output", str(resumed), *common, str(tmp_path / "resumed.jsonl")]
    process = run_cli(args)
    deadline = time.monotonic() + 300
    checkpoint: list[Path] = []
    while time.monotonic() < deadline and process.poll() is None:
        checkpoint = list(tmp_path.glob(".resumed.txt.*.partial.jsonl"))
        # Lines end at "\n" only: passages hold U+0085, which str.splitlines would also cut at.
        if checkpoint and checkpoint[0].read_bytes().count(b"\n") >= 5:
            break
        time.sleep(0.2)
    assert process.poll() is None, "the run finished before it could be interrupted"
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not resumed.exists()
    finished_before = checkpoint[0].read_bytes().count(b"\n")
    assert 5 <= finished_before < 43

    assert run_cli(args).wait(timeout=600) == 0
    assert resumed.read_text() == full.read_text()
    assert (tmp_path / "resumed.jsonl").read_text() == (tmp_path / "full.jsonl").read_text()
    # Evidence (offsets and scores) went through the checkpoint too: the top 10 of each of the 43 queries.
    records = [json.loads(line) for line in (tmp_path / "full.jsonl").read_text().split("\n") if line]
    assert len(records) == 43 * 10 and all(record["evidence"] for record in records)
    assert not list(tmp_path.glob(".resumed.txt.*.partial.jsonl"))
