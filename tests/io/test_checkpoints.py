"""Checkpoints: a killed run resumes on the bundled collection, and a damaged checkpoint is reported and redone."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from reasonrank.io.checkpoints import Checkpoint, checkpoint_line, parse_checkpoint_line
from reasonrank.io.runs import explanation_records
from reasonrank.pipeline import SearchSettings, embedded_collection, run_search
from reasonrank.rerank.base import Reranker
from reasonrank.types import Candidate, Evidence, ExplanationFrom, Query, RankedCandidate, Ranking, Request


class Reversing(Reranker):
    """Reverses the first-stage order; raises KeyboardInterrupt (a Ctrl-C) when asked to rerank ``stop_at``."""

    def __init__(self, stop_at: str | None = None):
        self.name = "reversing"
        self.stop_at = stop_at
        self.reranked: list[str] = []

    def rerank_request(self, request: Request) -> Ranking:
        if request.query.qid == self.stop_at:
            raise KeyboardInterrupt
        self.reranked.append(request.query.qid)
        reverse = request.candidates[::-1]
        items = tuple(RankedCandidate(c, float(-rank), rank, f"was {c.docid}", 1) for rank, c in enumerate(reverse, 1))
        return Ranking(request.query, items, self.name)


def search_settings(tmp_path: Path, name: str) -> SearchSettings:
    return SearchSettings(hits=20, batch_size=4, progress=False, output=str(tmp_path / f"{name}.txt"),
                          explanations=str(tmp_path / f"{name}.jsonl"))


def test_interrupted_run_on_the_bundled_collection_resumes_to_the_same_bytes(tmp_path):
    """Four bundled passages hold U+0085, which str.splitlines() cuts at: queries 1103812 and 1114819 retrieve two
    of them, so a checkpoint holding those queries used to fail on every rerun with a JSONDecodeError."""
    topics = [line.split("\t")[0] for line in embedded_collection().topics.read_text().strip().split("\n")]
    assert topics.index("1114819") < 40 and topics.index("1103812") < 40

    run_search(search_settings(tmp_path, "full"), reranker=Reversing())

    interrupted = search_settings(tmp_path, "resumed")
    with pytest.raises(KeyboardInterrupt):
        run_search(interrupted, reranker=Reversing(stop_at=topics[40]))
    checkpoint = next(tmp_path.glob(".resumed.txt.*.partial.jsonl"))
    assert "\u0085" in checkpoint.read_text(encoding="utf-8")
    assert not (tmp_path / "resumed.txt").exists()

    rest = Reversing()
    run_search(interrupted, reranker=rest)
    assert rest.reranked == topics[40:]  # only the unfinished step is redone
    assert (tmp_path / "resumed.txt").read_bytes() == (tmp_path / "full.txt").read_bytes()
    assert (tmp_path / "resumed.jsonl").read_bytes() == (tmp_path / "full.jsonl").read_bytes()
    assert not checkpoint.exists()


def ranking(qid: str, text: str) -> Ranking:
    candidate = Candidate("d1", text, 1.5)
    return Ranking(Query(qid, f"query {qid}"), (RankedCandidate(candidate, 0.25, 1, "because", 2),), "m")


def test_damaged_and_torn_lines_are_reported_once_and_their_queries_redone(tmp_path, caplog):
    checkpoint = Checkpoint(tmp_path / "run.txt", {"reranker": "m"})
    texts = {"q1": "line\u2028separator", "q2": "next\u0085line", "q3": "tab\tand \"quotes\"", "q4": "plain"}
    for qid, text in texts.items():
        checkpoint.append([ranking(qid, text)])
    lines = checkpoint.path.read_bytes().split(b"\n")
    lines[1] = lines[1].replace(b"0.25", b"0.75")  # still valid JSON: only the checksum catches it
    lines[2] = lines[2][:40]  # a line cut in the middle of the file
    damaged = b"\n".join(lines[:4]) + b"\n" + lines[3][:25]  # and a torn last line
    checkpoint.path.write_bytes(damaged)
    queries = {qid: Query(qid, f"query {qid}") for qid in texts}

    with caplog.at_level(logging.WARNING, logger="reasonrank"):
        done = checkpoint.load(queries)
    assert sorted(done) == ["q1", "q4"]
    assert done["q1"] == ranking("q1", texts["q1"])
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "2 damaged line(s) (2, 3)" in warnings[0] and "cut short" in warnings[0]
    assert "\n" not in warnings[0]

    checkpoint.append([ranking("q2", texts["q2"])])  # the repaired file takes appends cleanly
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="reasonrank"):
        assert sorted(checkpoint.load(queries)) == ["q1", "q2", "q4"]
    assert not caplog.records


def test_a_checkpoint_of_other_settings_is_never_read(tmp_path):
    first = Checkpoint(tmp_path / "run.txt", {"reranker": "a"})
    first.append([ranking("q1", "x")])
    assert Checkpoint(tmp_path / "run.txt", {"reranker": "b"}).load({"q1": Query("q1", "query q1")}) == {}


def test_a_checkpoint_line_gives_back_the_ranking_and_the_same_explanation_records():
    """Checkpoints and explanation files share one item record: what is resumed explains itself identically."""
    query = Query("q1", "aspirin")
    passage = "Aspirin\u2028thins blood.\u0085 Tab\there."  # line and paragraph separators, as real passages hold
    items = (
        RankedCandidate(Candidate("d2", passage, 3.25), 0.75, 1, 'It says "thins blood"', 2,
                        explanation_from=ExplanationFrom.PAIRWISE_COMPARISON, explanation_pair=("d2", "d1")),
        RankedCandidate(Candidate("d1", "other text", 7.5), 0.5, 2, "Evidence …", None, (Evidence(8, 19, 0.9),),
                        ExplanationFrom.EVIDENCE),
    )
    ranking = Ranking(query, items, "bi", {"calls": 2})
    line = checkpoint_line(ranking)
    assert line.count(b"\n") == 1 and line.endswith(b"\n")
    resumed = parse_checkpoint_line(line[:-1], {"q1": query})
    assert resumed == ranking
    assert list(explanation_records(resumed)) == list(explanation_records(ranking))


def test_a_checkpoint_written_before_explanations_named_their_source_still_resumes(tmp_path):
    """An item record without ``explanation_from`` / ``explanation_pair`` (older checkpoints) reads as unknown."""
    import json
    import zlib

    record = {"qid": "q1", "query": "aspirin", "model": "m", "stats": {}, "items": [
        {"docid": "d1", "rank": 1, "score": 0.5, "label": 2, "explanation": "why", "evidence": [],
         "text": "Aspirin thins blood.", "first_stage_score": 1.5}]}
    payload = json.dumps(record).encode()
    checkpoint = Checkpoint(tmp_path / "run.txt", {"reranker": "m"})
    checkpoint.path.write_bytes(payload + b"\t" + f"{zlib.crc32(payload):08x}".encode() + b"\n")
    (item,) = checkpoint.load({"q1": Query("q1", "aspirin")})["q1"].items
    assert (item.explanation, item.label, item.explanation_from, item.explanation_pair) == ("why", 2, None, None)
    (line,) = explanation_records(Ranking(Query("q1", "aspirin"), (item,), "m"))
    assert line["explanation_from"] is None and line["explanation_pair"] is None
