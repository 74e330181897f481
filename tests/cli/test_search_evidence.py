"""The default search explains what it shows: on the bundled DL19 collection and on SciFact test, every line of
its explanations file has an explanation and evidence offsets inside the passage text."""

from __future__ import annotations

import json

import pytest

from reasonrank.cli.search import main as search_main
from reasonrank.io.corpus import iter_documents
from reasonrank.io.runs import read_run

TOPICS = 3
SHOWN = 10  # --explanations-depth default: as many as the report shows


def check_explanations(run_path, explanations_path, corpus_path) -> None:
    run = read_run(run_path)
    records = [json.loads(line) for line in explanations_path.read_text().splitlines()]
    heads = [(qid, docid) for qid, docs in run.items() for docid in sorted(docs, key=docs.get, reverse=True)[:SHOWN]]
    assert [(r["qid"], r["docid"]) for r in records] == heads  # aligned with the head of each query's run lines
    texts = {d.docid: d.contents for d in iter_documents(corpus_path) if d.docid in {r["docid"] for r in records}}
    tag = run_path.read_text().split("\n", 1)[0].split()[5]  # the default reranker's name, as the run names it
    for record in records:
        text = texts[record["docid"]]
        assert record["explanation"] and record["model"] == tag
        # The default fuses the bi-encoder with BM25, and so does its evidence (reasonrank.rerank.fusion).
        assert record["explanation"].startswith("Evidence by minilm-bi+bm25@0.8 (sentence score 0.8·z(minilm-bi)")
        assert record["evidence"], record
        for span in record["evidence"]:
            assert 0 <= span["start"] < span["end"] <= len(text)
            assert f'"{text[span["start"]:span["end"]]}"' in record["explanation"]


@pytest.mark.slow
def test_default_search_explains_every_shown_passage_on_dl19(tmp_path, test_data, monkeypatch):
    data = test_data / "msmarco-dl19-mini"
    topics = tmp_path / "topics.tsv"
    topics.write_text("\n".join((data / "topics.dl19-passage.tsv").read_text().splitlines()[:TOPICS]) + "\n")
    monkeypatch.chdir(tmp_path)  # the default run and its explanations go to runs/ here
    # The embedded collection and the default reranker; 30 hits instead of 100 keep the test short.
    assert search_main(["--topics", str(topics), "--hits", "30", "--quiet"]) == 0
    run = tmp_path / "runs" / "run.msmarco-dl19-mini.minilm-hybrid.txt"
    check_explanations(run, run.with_name(f"{run.stem}.explanations.jsonl"), data / "corpus.jsonl")


@pytest.mark.slow
def test_default_search_explains_every_shown_passage_on_scifact_test(tmp_path, test_data):
    data = test_data / "scifact"
    topics = tmp_path / "topics.tsv"
    topics.write_text("\n".join((data / "topics.test.tsv").read_text().splitlines()[:TOPICS]) + "\n")
    run, notes = tmp_path / "run.txt", tmp_path / "notes.jsonl"
    assert search_main(["--index", str(data / "corpus.jsonl"), "--topics", str(topics), "--hits", "30", "--quiet",
                        "--output", str(run), "--explanations", str(notes)]) == 0
    check_explanations(run, notes, data / "corpus.jsonl")
