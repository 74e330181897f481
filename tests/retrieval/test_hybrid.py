"""Hybrid first stage: BM25 and the MiniLM bi-encoder over the same real passages, fused by reciprocal rank."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from reasonrank.io.corpus import read_documents
from reasonrank.io.topics import load_topics
from reasonrank.retrieval.base import FirstStageSettings, load_first_stage
from reasonrank.retrieval.bm25 import Bm25FirstStage
from reasonrank.retrieval.dense import DenseFirstStage
from reasonrank.retrieval.hybrid import HybridFirstStage, reciprocal_rank_fusion


def test_reciprocal_rank_fusion_by_hand():
    fused = reciprocal_rank_fusion([["a", "b", "c"], ["b", "d"]], k=60)
    assert [docid for docid, _ in fused] == ["b", "a", "d", "c"]
    assert dict(fused) == pytest.approx({"b": 1 / 61 + 1 / 62, "a": 1 / 61, "d": 1 / 62, "c": 1 / 63})
    # A tie keeps the order in which the lists first name the documents.
    assert [d for d, _ in reciprocal_rank_fusion([["x", "y"], ["y", "x"]])] == ["x", "y"]


@pytest.fixture(scope="module")
def small_corpus(test_data: Path, tmp_path_factory) -> Path:
    """The first 400 passages of msmarco-dl19-mini (real text; small enough to encode in seconds)."""
    lines = (test_data / "msmarco-dl19-mini" / "corpus.jsonl").read_text(encoding="utf-8").split("\n")[:400]
    path = tmp_path_factory.mktemp("hybrid") / "corpus.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def queries(test_data: Path):
    return load_topics(str(test_data / "msmarco-dl19-mini" / "topics.dl19-passage.tsv"))[:6]


def test_hybrid_is_the_rrf_of_bm25_and_dense(small_corpus, queries):
    settings = FirstStageSettings(progress=False)
    hybrid = load_first_stage("hybrid", str(small_corpus), settings)
    assert isinstance(hybrid, HybridFirstStage)
    with hybrid, Bm25FirstStage(str(small_corpus)) as bm25, DenseFirstStage(small_corpus, progress=False) as dense:
        fused = hybrid.search(queries, hits=20, text_depth=0)
        lexical, semantic = bm25.search(queries, hits=20), dense.search(queries, hits=20)
    texts = {d.docid: d.contents for d in read_documents(small_corpus)}
    for request, first, second in zip(fused, lexical, semantic, strict=True):
        expected = reciprocal_rank_fusion([[c.docid for c in r.candidates] for r in (first, second)])[:20]
        assert [c.docid for c in request.candidates] == [docid for docid, _ in expected]
        assert [c.score for c in request.candidates] == pytest.approx([score for _, score in expected])
        assert all(c.text == texts[c.docid] for c in request.candidates)  # every candidate carries its passage
        # The fusion brings in documents only one side found, so it differs from both.
        assert {c.docid for c in request.candidates} != {c.docid for c in first.candidates}


def test_hybrid_drops_excluded_ids_and_the_query_itself(small_corpus, queries):
    with load_first_stage("hybrid", str(small_corpus), FirstStageSettings(progress=False)) as hybrid:
        plain = hybrid.search(queries[:1], hits=10)[0]
        top = plain.candidates[0].docid
        query = replace(queries[0], qid=plain.candidates[1].docid, excluded_ids=frozenset({top}))
        filtered = hybrid.search([query], hits=10, remove_query=True)[0]
    docids = [c.docid for c in filtered.candidates]
    assert top not in docids and query.qid not in docids and len(docids) == 10


def test_hybrid_needs_the_corpus(tmp_path):
    from reasonrank.errors import UserError

    with pytest.raises(UserError, match="dense retrieval reads the corpus"):
        load_first_stage("hybrid", str(tmp_path / "no-such-corpus.jsonl"))
