"""Topics and qrels from every supported source, and the one-line errors for bad input."""

from __future__ import annotations

import json
import re

import pytest

from reasonrank.errors import UserError
from reasonrank.io.topics import load_qrels, load_topics

UNREACHABLE_PROXY = "http://127.0.0.1:9"  # makes Python HTTP clients fail at once, whatever the network


@pytest.fixture
def offline_python_http(monkeypatch):
    """ir_datasets (requests) and Pyserini downloads (urllib) honour these, so downloads fail deterministically."""
    for name in ("https_proxy", "http_proxy", "HTTPS_PROXY", "HTTP_PROXY"):
        monkeypatch.setenv(name, UNREACHABLE_PROXY)
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)


def write_lines(path, lines):
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def test_tsv_topics_keep_file_order_and_text(test_data):
    queries = load_topics(str(test_data / "msmarco-dl19-mini" / "topics.dl19-passage.tsv"))
    assert len(queries) == 43
    assert queries[0].qid == "19335"
    assert queries[0].text == "anthropological definition of environment"
    assert all(q.excluded_ids == frozenset() for q in queries)


def test_beir_queries_jsonl(test_data, tmp_path):
    rows = [line.split("\t", 1) for line in (test_data / "scifact" / "topics.test.tsv").read_text().splitlines()]
    beir = write_lines(tmp_path / "queries.jsonl", [json.dumps({"_id": qid, "text": text}) for qid, text in rows])
    queries = load_topics(str(beir))
    assert [(q.qid, q.text) for q in queries] == [(qid, text) for qid, text in rows]
    assert len(queries) == len(rows) > 1


def test_bright_original_jsonl_query_and_reasoning_variants(test_data):
    path = test_data / "bright" / "topics.bright-aops-original.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines()]
    queries = load_topics(str(path))
    reasoning = load_topics(str(path), query_field="reasoning")
    assert len(queries) == len(records) > 1
    assert queries[0].text == records[0]["query"]
    assert reasoning[0].text == records[0]["reasoning"] != records[0]["query"]
    assert queries[0].excluded_ids == frozenset(records[0]["excluded_ids"])
    assert "aops_2019_AMC_12A_Problems/Problem_17" in queries[0].excluded_ids


def test_bright_na_exclusions_mean_none(test_data):
    path = test_data / "bright" / "topics.bright-biology-original.jsonl"
    queries = load_topics(str(path))
    assert len(queries) == len(path.read_text().splitlines()) > 1
    assert all(q.excluded_ids == frozenset() for q in queries)


def test_bright_id_lists_as_python_literal_strings(test_data, tmp_path):
    """Some BRIGHT dumps store id lists as Python-literal strings."""
    source = test_data / "bright" / "topics.bright-leetcode-original.jsonl"
    records = [json.loads(line) for line in source.read_text().splitlines()[:3]]
    literal = [dict(r, excluded_ids=repr(r["excluded_ids"]), gold_ids=repr(r["gold_ids"])) for r in records]
    literal[1]["excluded_ids"] = "['N/A']"
    path = write_lines(tmp_path / "bright.jsonl", [json.dumps(r) for r in literal])
    queries = load_topics(str(path))
    assert queries[0].excluded_ids == frozenset(records[0]["excluded_ids"]) != frozenset()
    assert queries[1].excluded_ids == frozenset()


def test_bright_tsv_matches_original_queries(test_data):
    tsv = load_topics(str(test_data / "bright" / "topics.bright-biology.tsv"))
    original = load_topics(str(test_data / "bright" / "topics.bright-biology-original.jsonl"))
    assert [q.qid for q in tsv] == [q.qid for q in original]


@pytest.mark.parametrize(
    ("lines", "bad_line", "words"),
    [
        (["1\tfirst query", "2 second query without a tab"], 2, "no tab"),
        (["1\tfirst query", "2\tsecond", "1\tagain"], 3, "duplicate query id '1'"),
        (["1\tfirst query", "2\t   "], 2, "empty text"),
    ],
)
def test_bad_tsv_lines_name_file_and_line(tmp_path, lines, bad_line, words):
    path = write_lines(tmp_path / "topics.tsv", lines)
    with pytest.raises(UserError, match=f"{re.escape(str(path))}:{bad_line}: .*{words}"):
        load_topics(str(path))


def test_malformed_json_topics_name_file_and_line(tmp_path):
    path = write_lines(tmp_path / "queries.jsonl", ['{"_id": "1", "text": "fine"}', '{"_id": "2", "text": '])
    with pytest.raises(UserError, match=f"{re.escape(str(path))}:2: malformed JSON"):
        load_topics(str(path))


def test_unknown_jsonl_record_is_explained(tmp_path):
    path = write_lines(tmp_path / "queries.jsonl", ['{"qid": "1", "question": "what?"}'])
    with pytest.raises(UserError, match=f"{re.escape(str(path))}:1: unknown topics record"):
        load_topics(str(path))


def test_reasoning_field_needs_a_source_that_has_it(test_data):
    with pytest.raises(UserError, match="drop --query-field reasoning"):
        load_topics(str(test_data / "bright" / "topics.bright-biology.tsv"), query_field="reasoning")


def test_missing_topics_file(tmp_path):
    with pytest.raises(UserError, match="topics file not found"):
        load_topics(str(tmp_path / "nope.tsv"))


def test_unknown_topic_and_qrels_names_offline(offline_python_http):
    """Pyserini 1.x knows its names without a network; 2.x downloads the list first: one line either way."""
    with pytest.raises(UserError, match=r"(unknown|could not download Pyserini) topics 'no-such-topics'") as error:
        load_topics("no-such-topics")
    assert "\n" not in str(error.value)
    with pytest.raises(UserError, match=r"(unknown|could not download Pyserini) qrels 'no-such-qrels'") as error:
        load_qrels("no-such-qrels")
    assert "\n" not in str(error.value)


def test_pyserini_qrels_name_offline_is_one_line(offline_python_http, tmp_path, monkeypatch):
    """Pyserini 1.x ships dl19-passage's qrels; 2.x downloads them (offline: one UserError line)."""
    monkeypatch.setenv("PYSERINI_CACHE", str(tmp_path / "pyserini"))
    try:
        qrels = load_qrels("dl19-passage")
    except UserError as error:
        assert "could not download Pyserini qrels 'dl19-passage'" in str(error) and "\n" not in str(error)
        return
    assert len(qrels) == 43


def test_pyserini_topic_name_loads_or_fails_in_one_line(test_data):
    """Anserini downloads named topics on first use: with a network they equal the shared file, offline a UserError."""
    try:
        queries = load_topics("dl19-passage")
    except UserError as error:
        assert "could not download Pyserini topics 'dl19-passage'" in str(error)
        assert "\n" not in str(error)
        return
    expected = load_topics(str(test_data / "trec-dl" / "topics.dl19-passage.tsv"))
    assert sorted((q.qid, q.text) for q in queries) == sorted((q.qid, q.text) for q in expected)


def test_irds_unknown_and_offline(offline_python_http, tmp_path, monkeypatch):
    monkeypatch.setenv("IR_DATASETS_HOME", str(tmp_path / "irds"))
    with pytest.raises(UserError, match="unknown ir_datasets id 'no/such-dataset'"):
        load_topics("irds:no/such-dataset")
    with pytest.raises(UserError, match="ir_datasets could not provide queries of 'beir/scifact/test'") as error:
        load_topics("irds:beir/scifact/test")
    assert "\n" not in str(error.value)
    with pytest.raises(UserError, match="ir_datasets could not provide qrels of 'beir/scifact/test'"):
        load_qrels("irds:beir/scifact/test")


def test_trec_qrels_file(test_data):
    path = test_data / "msmarco-dl19-mini" / "qrels.dl19-passage.txt"
    qrels = load_qrels(str(path))
    lines = [line.split() for line in path.read_text().splitlines() if line.strip()]
    assert len(qrels) == 43
    assert sum(len(judged) for judged in qrels.values()) == len(lines)
    qid, _, docid, rel = lines[0]
    assert qrels[qid][docid] == int(rel)
    assert {rel for judged in qrels.values() for rel in judged.values()} == {0, 1, 2, 3}


def test_tab_separated_bright_qrels(test_data):
    qrels = load_qrels(str(test_data / "bright" / "qrels.bright-biology.txt"))
    assert qrels["0"]["insects_attracted_to_light/Phototaxis_0.txt"] == 1
    assert len(qrels) == len(load_topics(str(test_data / "bright" / "topics.bright-biology.tsv")))


@pytest.mark.parametrize(
    ("lines", "bad_line", "words"),
    [
        (["1 0 d1 1", "1 0 d2"], 2, "got 3 fields"),
        (["1 0 d1 1", "1 0 d2 high"], 2, "must be an integer"),
    ],
)
def test_bad_qrels_lines_name_file_and_line(tmp_path, lines, bad_line, words):
    path = write_lines(tmp_path / "qrels.txt", lines)
    with pytest.raises(UserError, match=f"{re.escape(str(path))}:{bad_line}: .*{words}"):
        load_qrels(str(path))


def test_missing_and_unknown_qrels(tmp_path):
    with pytest.raises(UserError, match="qrels file not found"):
        load_qrels(str(tmp_path / "qrels.txt"))
