"""BM25 first stage on real data: effectiveness, identity with Pyserini's own CLI, and the hit filters.

The JVM starts once per pytest process, so the DL19 index and its BM25 top-100 are built once per session.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import pickle
import statistics
import subprocess
import sys

import pytest
import pytrec_eval
from full_collections import full_collection

from reasonrank.cli.search import main as search_main
from reasonrank.errors import UserError
from reasonrank.io.runs import write_run
from reasonrank.io.topics import load_qrels, load_topics
from reasonrank.pipeline import first_stage_ranking
from reasonrank.retrieval.bm25 import Bm25FirstStage, lucene_searcher_class, prebuilt_index_names
from reasonrank.retrieval.index import ensure_index
from reasonrank.retrieval.java import PyseriniCatalogUnavailable, find_java
from reasonrank.types import Query, Request

UNREACHABLE_PROXY = "http://127.0.0.1:9"
# Prepended to Pyserini 2.x's CLI offline: its catalog requests answered with the entries its import looks up.
OFFLINE_CATALOG = """
import io, json, urllib.request
entry = {"description": "", "filename": "", "urls": [], "md5": "", "size": 0}
entries = [dict(entry, name=n) for n in ("msmarco-v1-passage.unicoil", "msmarco-v2-passage.unicoil-0shot")]
online = urllib.request.urlopen
def catalog_offline(url, *args, **kwargs):
    if "castorini/prebuilt-indexes" in str(url):
        return io.BytesIO(json.dumps(entries).encode())
    return online(url, *args, **kwargs)
urllib.request.urlopen = catalog_offline
"""


def ndcg_at_10(requests: list[Request], qrels: dict[str, dict[str, int]]) -> float:
    run = {r.query.qid: {c.docid: c.score for c in r.candidates} for r in requests}
    per_query = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10"}).evaluate(run)
    return statistics.mean(scores["ndcg_cut_10"] for scores in per_query.values())


@pytest.fixture(scope="session")
def dl19(test_data):
    return test_data / "msmarco-dl19-mini"


@pytest.fixture(scope="session")
def dl19_index(dl19, tmp_path_factory):
    # Session fixtures run before the per-test REASONRANK_CACHE is set; use the same folder it points to.
    return ensure_index(dl19 / "corpus.jsonl", cache_dir=tmp_path_factory.getbasetemp() / "cache")


@pytest.fixture(scope="session")
def dl19_bm25(dl19_index):
    bm25 = Bm25FirstStage(str(dl19_index))
    yield bm25
    bm25.close()


@pytest.fixture(scope="session")
def dl19_topics(dl19):
    return load_topics(str(dl19 / "topics.dl19-passage.tsv"))


@pytest.fixture(scope="session")
def dl19_top100(dl19_bm25, dl19_topics):
    return dl19_bm25.search(dl19_topics, hits=100, threads=2)


def test_dl19_mini_bm25_ndcg(dl19, dl19_top100, dl19_topics):
    assert [r.query for r in dl19_top100] == dl19_topics
    assert all(len(r.candidates) == 100 for r in dl19_top100)
    assert ndcg_at_10(dl19_top100, load_qrels(str(dl19 / "qrels.dl19-passage.txt"))) == pytest.approx(0.732, abs=0.001)


def test_candidates_carry_the_passage_text(dl19, dl19_top100):
    lines = (dl19 / "corpus.jsonl").read_text(encoding="utf-8").strip("\n").split("\n")  # "\u2028" is no line end
    texts = {r["_id"]: r["text"] for r in map(json.loads, lines)}
    for request in dl19_top100[:5]:
        assert all(c.text == texts[c.docid] and c.title == "" for c in request.candidates)  # MS MARCO: untitled
        scores = [c.score for c in request.candidates]
        assert scores == sorted(scores, reverse=True) and all(isinstance(s, float) for s in scores)


def test_text_scorer_gives_texts_the_score_a_search_gives_them(dl19_bm25, dl19_top100):
    """Evidence for the default fuses BM25 of sentences: the text scorer gives an indexed passage exactly its search
    score, and weighs a query term by its count in the query as Anserini's bag-of-words query does."""
    scorer = dl19_bm25.text_scorer()
    rounded = 5.1e-5  # Anserini rounds search scores to 4 decimals
    try:
        for request in dl19_top100[:3]:
            texts = [c.text for c in request.candidates]
            expected = [c.score for c in request.candidates]
            assert scorer.score(request.query.text, texts) == pytest.approx(expected, rel=0, abs=rounded)
        query = dl19_top100[0].query
        (doubled,) = dl19_bm25.search([Query("twice", f"{query.text} {query.text}")], hits=5)
        texts, expected = [c.text for c in doubled.candidates], [c.score for c in doubled.candidates]
        assert scorer.score(doubled.query.text, texts) == pytest.approx(expected, rel=0, abs=rounded)
        assert expected[0] > 1.9 * dl19_top100[0].candidates[0].score  # the doubled query does weigh terms twice
        assert scorer.score(query.text, ["", "zzyzx qwertyuiop"]) == [0.0, 0.0]
        # Ray actors get the scorer pickled: as its index and parameters, reopened there, scoring the same.
        copy = pickle.loads(pickle.dumps(scorer))
        try:
            assert copy.score(query.text, texts) == scorer.score(query.text, texts)
        finally:
            copy.close()
    finally:
        scorer.close()
    assert dl19_bm25.search([query], hits=1)[0].candidates  # the first stage's own reader stays open


def test_same_run_as_pyserini_cli(dl19, dl19_index, dl19_top100, tmp_path):
    """`python -m pyserini.search.lucene --bm25 --hits 100` on our index writes exactly our ranking.

    Pyserini 2.x's CLI downloads its prebuilt-index catalog when imported; offline, those requests are answered
    with the two entries its import reads (the run is over a local index, which the catalog does not touch)."""
    runtime = find_java()
    output = tmp_path / "run.pyserini.txt"
    args = [
        "--index",
        str(dl19_index),
        "--topics",
        str(dl19 / "topics.dl19-passage.tsv"),
        "--output",
        str(output),
        "--bm25",
        "--hits",
        "100",
    ]
    code = OFFLINE_CATALOG if int(importlib.metadata.version("pyserini").split(".")[0]) >= 2 else ""
    if not runtime.has_vector_module:  # Pyserini's CLI asks for a JVM module this runtime lacks; we drop only that
        code += "from reasonrank.retrieval.java import configure_jvm; configure_jvm()\n"
    code += "import runpy, sys\nsys.argv[0] = 'pyserini'\n"
    code += "runpy.run_module('pyserini.search.lucene', run_name='__main__')"
    command = [sys.executable, "-c", code, *args]
    env = dict(os.environ, JAVA_HOME=str(runtime.home), OPENAI_API_KEY="unused", HF_HUB_OFFLINE="1")
    subprocess.run(command, env=env, check=True, capture_output=True, timeout=600)

    theirs: dict[str, list[tuple[str, int, str]]] = {}
    for line in output.read_text(encoding="utf-8").splitlines():
        qid, _, docid, rank, score, _ = line.split()
        theirs.setdefault(qid, []).append((docid, int(rank), score))
    ours = {
        r.query.qid: [(c.docid, rank, f"{c.score:.6f}") for rank, c in enumerate(r.candidates, start=1)]
        for r in dl19_top100
    }
    assert ours == theirs


def test_scifact_bm25_equals_pyserinis_searcher_and_keeps_titles(test_data):
    """On the SciFact slice: our BM25 hits are those of the LuceneSearcher users get from reasonrank (Pyserini's,
    or offline on Pyserini 2.x one on Anserini's SimpleSearcher) over the same index, scores included."""
    scifact = test_data / "scifact"
    topics = load_topics(str(scifact / "topics.test.tsv"))
    with Bm25FirstStage(str(scifact / "corpus.jsonl")) as bm25:
        requests = bm25.search(topics, hits=100, threads=2)
        searcher = lucene_searcher_class()(str(bm25.index_dir))
        searcher.set_bm25(0.9, 0.4)
        theirs = searcher.batch_search([q.text for q in topics], [q.qid for q in topics], k=100, threads=2)
        searcher.close()
    assert [r.query.qid for r in requests] == [q.qid for q in topics]
    for request in requests:
        expected = [(hit.docid, pytest.approx(hit.score, abs=1e-6)) for hit in theirs[request.query.qid]]
        assert [(c.docid, c.score) for c in request.candidates] == expected
    assert ndcg_at_10(requests, load_qrels(str(scifact / "qrels.test.txt"))) > 0.6
    # Titled documents keep their title beside the text it begins (DeAR's prompt places the title itself).
    with (scifact / "corpus.jsonl").open(encoding="utf-8") as lines:
        records = {r["_id"]: r for r in map(json.loads, lines)}
    for candidate in requests[0].candidates[:10]:
        record = records[candidate.docid]
        assert candidate.title == record["title"].strip() != ""
        assert candidate.text == f"{record['title'].strip()} {record['text'].strip()}"


if FULL_SCIFACT := full_collection("scifact"):  # a case added where the machine has it, never a skip

    def test_full_scifact_bm25_ndcg_is_the_published_figure():
        """The whole SciFact test set (300 claims, 5,183 abstracts): nDCG@10 0.679."""
        scifact = FULL_SCIFACT
        with Bm25FirstStage(str(scifact / "corpus.jsonl")) as bm25:
            requests = bm25.search(load_topics(str(scifact / "topics.test.tsv")), hits=100, threads=2)
        assert len(requests) == 300
        assert ndcg_at_10(requests, load_qrels(str(scifact / "qrels.test.txt"))) == pytest.approx(0.679, abs=0.001)


def test_corpus_path_reuses_the_cached_index(dl19, dl19_index):
    with Bm25FirstStage(str(dl19 / "corpus.jsonl")) as bm25:
        assert bm25.index_dir == dl19_index


def test_excluded_ids_are_dropped_and_refilled(dl19_bm25, dl19_top100):
    query = dl19_top100[0].query
    top = [c.docid for c in dl19_top100[0].candidates]
    excluded = Query(query.qid, query.text, frozenset(top[:3]))
    (request,) = dl19_bm25.search([excluded], hits=100)
    (deeper,) = dl19_bm25.search([query], hits=103)
    assert [c.docid for c in request.candidates] == [c.docid for c in deeper.candidates][3:]
    assert len(request.candidates) == 100


def test_remove_query_drops_the_hit_with_the_query_id(dl19_bm25, dl19_top100):
    query = dl19_top100[0].query
    top = [c.docid for c in dl19_top100[0].candidates]
    as_document_id = Query(top[0], query.text)  # as in ArguAna, where queries are corpus documents
    (kept,) = dl19_bm25.search([as_document_id], hits=100)
    (removed,) = dl19_bm25.search([as_document_id], hits=100, remove_query=True)
    assert [c.docid for c in kept.candidates] == top
    assert [c.docid for c in removed.candidates][:99] == top[1:]
    assert len(removed.candidates) == 100 and top[0] not in [c.docid for c in removed.candidates]


def test_fewer_hits_is_a_prefix(dl19_bm25, dl19_top100):
    requests = dl19_bm25.search([r.query for r in dl19_top100[:3]], hits=10)
    assert [r.candidates for r in requests] == [r.candidates[:10] for r in dl19_top100[:3]]


@pytest.mark.parametrize("text_depth", [0, 7, 100])
def test_text_depth_fetches_only_the_head(dl19_bm25, dl19_topics, dl19_top100, text_depth):
    requests = dl19_bm25.search(dl19_topics, hits=100, threads=2, text_depth=text_depth)
    for shallow, full in zip(requests, dl19_top100, strict=True):
        assert [(c.docid, c.score) for c in shallow.candidates] == [(c.docid, c.score) for c in full.candidates]
        texts = [c.text for c in shallow.candidates]
        assert texts[:text_depth] == [c.text for c in full.candidates[:text_depth]]
        assert all(texts[:text_depth]) and texts[text_depth:] == [""] * (100 - text_depth)


def test_text_depth_counts_kept_candidates(dl19_bm25, dl19_top100):
    """Hits dropped by excluded_ids are not candidates, so they do not use up the text depth."""
    query = dl19_top100[0].query
    top = [c.docid for c in dl19_top100[0].candidates]
    excluded = Query(query.qid, query.text, frozenset(top[:3]))
    (request,) = dl19_bm25.search([excluded], hits=100, text_depth=5)
    assert [c.text for c in request.candidates[:5]] == [c.text for c in dl19_top100[0].candidates[3:8]]
    assert all(c.text == "" for c in request.candidates[5:])


def test_search_cli_without_reranker_writes_the_first_stage_run(dl19, dl19_top100, tmp_path):
    """The CLI fetches no passages with --reranker none; its run is still exactly the BM25 top 100."""
    expected, written = tmp_path / "expected.txt", tmp_path / "cli.txt"
    write_run(expected, [first_stage_ranking(r, "bm25") for r in dl19_top100])
    args = ["--index", str(dl19 / "corpus.jsonl"), "--topics", str(dl19 / "topics.dl19-passage.tsv")]
    assert search_main([*args, "--reranker", "none", "--output", str(written), "--quiet"]) == 0
    assert written.read_text(encoding="utf-8") == expected.read_text(encoding="utf-8")


def test_bad_search_arguments(dl19_bm25, dl19_topics):
    with pytest.raises(UserError, match="hits must be at least 1"):
        dl19_bm25.search(dl19_topics, hits=0)
    with pytest.raises(UserError, match="text_depth must be 0 or more"):
        dl19_bm25.search(dl19_topics, text_depth=-1)
    with pytest.raises(UserError, match="duplicate query id '19335'"):
        dl19_bm25.search([dl19_topics[0], dl19_topics[0]])


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """Pyserini downloads catalogs, topics and indexes with urllib: an unreachable proxy fails them on any machine."""
    for name in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"):
        monkeypatch.setenv(name, UNREACHABLE_PROXY)
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.setenv("PYSERINI_CACHE", str(tmp_path / "pyserini"))


def test_prebuilt_index_names_load_or_fail_in_one_line():
    """Pyserini 1.x ships its catalog of prebuilt indexes; 2.x downloads it (then a UserError offline)."""
    try:
        names = set(prebuilt_index_names())
    except PyseriniCatalogUnavailable as error:
        assert "could not download its catalog" in str(error) and "\n" not in str(error)
        return
    assert {"msmarco-v1-passage", "bright-biology", "beir-v1.0.0-scifact.flat"} <= names


@pytest.mark.parametrize(
    ("index", "words"),
    [
        ("msmarco-v1-passage", r"msmarco-v1-passage.*offline\?.*pass a local Lucene index"),
        ("no-such-index", r"index 'no-such-index'.*(not a Pyserini prebuilt index name|offline\?)"),
    ],
)
def test_prebuilt_and_unknown_index_names_offline_are_one_line(offline, index, words):
    with pytest.raises(UserError, match=words) as error:
        Bm25FirstStage(index)
    assert "\n" not in str(error.value)


def test_search_command_offline_on_index_names_is_one_error_line(offline, capsys):
    """``python -m reasonrank.search --index NAME`` offline: `error:` and exit 2, never a traceback."""
    for index in ("msmarco-v1-passage", "msmarco-v1-pasage"):
        assert search_main(["--index", index, "--reranker", "none", "--quiet"]) == 2
        err = capsys.readouterr().err  # before it, Pyserini's download progress bar, where it tries one
        errors = [line for line in err.splitlines() if line.startswith("error: ")]
        assert "Traceback" not in err and len(errors) == 1 and err.strip().endswith(errors[0]), err
        assert repr(index) in errors[0]


def test_unknown_index_and_missing_paths(tmp_path, dl19_bm25):
    with pytest.raises(UserError, match="index 'no-such-index'"):
        Bm25FirstStage("no-such-index")
    with pytest.raises(UserError, match="index or corpus not found"):
        Bm25FirstStage(str(tmp_path / "corpus.jsonl"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no corpus files"):
        Bm25FirstStage(str(tmp_path / "empty"))
