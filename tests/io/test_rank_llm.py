"""rank_llm's request and result files, read and written by rank_llm's own classes (rank_llm.data) on the DL19 mini
collection: a candidate set moves between the two toolkits either way and keeps its ranking."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rank_llm.data import DataWriter, Result, read_requests_from_file

from reasonrank.cli.search import main
from reasonrank.io.corpus import read_documents
from reasonrank.pipeline import embedded_collection

HITS = 10


def search(*args: str) -> None:
    assert main([*args, "--quiet", "--no-evidence"]) == 0


def run_order(path: Path) -> list[tuple[str, str, int]]:
    return [(q, d, int(r)) for q, _, d, r, _, _ in (line.split() for line in path.read_text().splitlines())]


def test_rank_llm_requests_in_and_results_out_keep_the_ranking(tmp_path):
    embedded = embedded_collection()
    topics = tmp_path / "topics.tsv"
    topics.write_text("\n".join(embedded.topics.read_text().splitlines()[:3]) + "\n")
    corpus = {d.docid: d.contents for d in read_documents(embedded.corpus)}
    # reasonrank → rank_llm: BM25's candidates as a rank_llm file, which rank_llm reads as its requests.
    search("--topics", str(topics), "--hits", str(HITS), "--reranker", "none", "--output", str(tmp_path / "bm25.txt"),
           "--rank-llm-output", str(tmp_path / "bm25.jsonl"))
    requests = read_requests_from_file(str(tmp_path / "bm25.jsonl"))
    assert [(r.query.qid, c.docid, rank) for r in requests for rank, c in enumerate(r.candidates, 1)] == run_order(
        tmp_path / "bm25.txt")
    assert all(c.doc["contents"] == corpus[c.docid] for r in requests for c in r.candidates)
    # rank_llm → reasonrank: those requests written by rank_llm's DataWriter (its JSON format) and reranked here.
    DataWriter(requests).write_in_json_format(str(tmp_path / "requests.json"))
    search("--topics", str(tmp_path / "requests.json"), "--first-stage", f"rank-llm:{tmp_path / 'requests.json'}",
           "--hits", str(HITS), "--reranker", "minilm-bi", "--output", str(tmp_path / "reranked.txt"),
           "--rank-llm-output", str(tmp_path / "reranked.jsonl"))
    search("--topics", str(topics), "--hits", str(HITS), "--reranker", "minilm-bi",
           "--output", str(tmp_path / "direct.txt"))
    assert run_order(tmp_path / "reranked.txt") == run_order(tmp_path / "direct.txt")
    # Our result read back by rank_llm and written as its own TREC run: the same order as our run.
    results = [Result(r.query, r.candidates) for r in read_requests_from_file(str(tmp_path / "reranked.jsonl"))]
    DataWriter(results).write_in_trec_eval_format(str(tmp_path / "rank_llm.txt"))
    assert run_order(tmp_path / "rank_llm.txt") == run_order(tmp_path / "reranked.txt")
    assert run_order(tmp_path / "reranked.txt") != run_order(tmp_path / "bm25.txt")  # the reranker did move things


def test_titled_passages_round_trip_and_bad_requests_are_one_line(tmp_path, capsys):
    from reasonrank.io.rank_llm import read_rank_llm, write_rank_llm
    from reasonrank.pipeline import first_stage_ranking

    titled = {"query": {"text": "what is a tide", "qid": 7}, "candidates": [
        {"docid": "d1", "score": 2.0, "doc": {"title": "Tide", "text": "Tides are the rise and fall of the sea."}},
        {"docid": "d2", "score": 1.0, "doc": {"segment": "The moon pulls the ocean."}}]}
    source = tmp_path / "titled.jsonl"
    source.write_text(json.dumps(titled) + "\n")
    (request,) = read_rank_llm(source)
    assert [(c.text, c.title) for c in request.candidates] == [
        ("Tide Tides are the rise and fall of the sea.", "Tide"), ("The moon pulls the ocean.", "")]
    write_rank_llm(tmp_path / "back.jsonl", [first_stage_ranking(request, "x")])
    (back,) = read_requests_from_file(str(tmp_path / "back.jsonl"))
    assert back.candidates[0].doc == titled["candidates"][0]["doc"] and back.query.qid == "7"
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(titled) + "\n" + json.dumps({**titled, "query": {"qid": 8, "text": "x"},
                                                          "candidates": [{"docid": "d3", "doc": {"url": "u"}}]}))
    code = main(["--topics", str(bad), "--first-stage", f"rank-llm:{bad}", "--reranker", "none", "--output",
                 str(tmp_path / "out.txt"), "--quiet"])
    error = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and error == [f"error: {bad}:2: candidate 1: doc has no passage text (one of text, segment, "
                                   "contents, content, body, passage)"]
    assert not (tmp_path / "out.txt").exists()


@pytest.mark.parametrize("suffix", [".jsonl", ".json"])
def test_written_results_are_what_rank_llm_reads(tmp_path, suffix):
    from reasonrank.io.rank_llm import read_rank_llm, write_rank_llm
    from reasonrank.pipeline import first_stage_ranking

    embedded = embedded_collection()
    documents = read_documents(embedded.corpus)[:4]
    source = tmp_path / "source.jsonl"
    source.write_text(json.dumps({"query": {"qid": "q1", "text": "temperature"}, "candidates": [
        {"docid": d.docid, "score": 4.0 - i, "doc": {"contents": d.contents}} for i, d in enumerate(documents)]}))
    (request,) = read_rank_llm(source)
    target = tmp_path / f"written{suffix}"
    write_rank_llm(target, [first_stage_ranking(request, "x")])
    (read,) = read_requests_from_file(str(target))
    assert [(c.docid, c.score, c.doc["contents"]) for c in read.candidates] == [
        (d.docid, 4.0 - i, d.contents) for i, d in enumerate(documents)]
