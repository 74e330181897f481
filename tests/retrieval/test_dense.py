"""Dense first stage: all-MiniLM-L6-v2 + faiss over the 5,000 real MS MARCO passages of msmarco-dl19-mini."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from reasonrank.errors import UserError
from reasonrank.evaluation import evaluate
from reasonrank.io.topics import load_qrels, load_topics
from reasonrank.retrieval.dense import DenseFirstStage
from reasonrank.types import Query


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    # huggingface_hub reads HF_HUB_OFFLINE once, at import, so the constant is patched as well as the variable.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)


@pytest.fixture(scope="module")
def folder(test_data: Path) -> Path:
    return test_data / "msmarco-dl19-mini"


@pytest.fixture(scope="module")
def dense(folder: Path, tmp_path_factory) -> DenseFirstStage:
    torch.set_num_threads(2)
    return DenseFirstStage(folder / "corpus.jsonl", progress=False, cache_dir=tmp_path_factory.mktemp("dense-cache"))


@pytest.mark.slow
def test_dense_top100_ndcg_on_dl19_mini(dense, folder):
    queries = load_topics(str(folder / "topics.dl19-passage.tsv"))
    requests = dense.search(queries, hits=100)
    assert [r.query.qid for r in requests] == [q.qid for q in queries]
    assert all(len(r.candidates) == 100 for r in requests)
    scores = [c.score for c in requests[0].candidates]
    assert scores == sorted(scores, reverse=True)
    run = {r.query.qid: {c.docid: c.score for c in r.candidates} for r in requests}
    ndcg = evaluate(run, load_qrels(str(folder / "qrels.dl19-passage.txt"))).mean["nDCG@10"]
    print(f"dense (all-MiniLM-L6-v2, faiss flat IP) top-100 nDCG@10 on msmarco-dl19-mini: {ndcg:.3f}")
    assert ndcg > 0.6


@pytest.mark.slow
def test_embeddings_are_cached_and_reused(dense, folder, monkeypatch):
    assert (dense.cache / "embeddings.npy").is_file()

    def no_encoding(*_args, **_kwargs):
        raise AssertionError("a cached corpus was encoded again")

    monkeypatch.setattr("reasonrank.encoders.embedding.TextEncoder.encode", no_encoding)
    again = DenseFirstStage(folder / "corpus.jsonl", progress=False, cache_dir=dense.cache.parent.parent)
    assert again.cache == dense.cache
    assert again.index.ntotal == dense.index.ntotal == 5000


@pytest.mark.slow
def test_excluded_ids_and_remove_query(dense, folder):
    query = load_topics(str(folder / "topics.dl19-passage.tsv"))[0]
    top = [c.docid for c in dense.search([query], hits=5)[0].candidates]
    excluded = Query(top[0], query.text, frozenset(top[1:3]))
    kept = [c.docid for c in dense.search([excluded], hits=5, remove_query=True)[0].candidates]
    assert len(kept) == 5
    assert not {top[0], top[1], top[2]} & set(kept)
    assert kept[:2] == top[3:5]


def test_missing_corpus_is_user_error(tmp_path):
    with pytest.raises(UserError, match="corpus not found"):
        DenseFirstStage(tmp_path / "nope.jsonl")


def test_titled_documents_keep_their_title(test_data, tmp_path):
    """SciFact abstracts have titles: a dense (and so a hybrid) candidate carries its text, title first, and that
    title, for prompts that place it themselves (DeAR)."""
    lines = (test_data / "scifact" / "corpus.jsonl").read_text(encoding="utf-8").splitlines()[:12]
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
    records = {r["_id"]: r for r in map(json.loads, lines)}
    with DenseFirstStage(corpus, progress=False, cache_dir=tmp_path / "cache") as dense:
        [request] = dense.search([Query("q", "cerebral white matter in newborns")], hits=5)
    for candidate in request.candidates:
        record = records[candidate.docid]
        assert candidate.title == record["title"].strip() != ""
        assert candidate.text == f"{record['title'].strip()} {record['text'].strip()}"
