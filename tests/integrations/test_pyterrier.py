"""The PyTerrier wrapper: DataFrame ↔ Request/Ranking with pandas alone, the transformer when PyTerrier is there."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence

import pandas as pd
import pytest

from reasonrank.errors import UserError
from reasonrank.integrations.pyterrier import FIRST_RANK, frame_to_requests, rankings_to_frame, rerank_frame
from reasonrank.rerank.base import ScoringReranker
from reasonrank.types import Judgment, Request


class WordOverlap(ScoringReranker):
    """Scores a passage by the query words it contains and says which: plumbing, not a model."""

    name = "word-overlap"

    def judge(self, requests: Sequence[Request]) -> list[list[Judgment]]:
        judgments = []
        for request in requests:
            words = set(request.query.text.lower().split())
            row = []
            for candidate in request.candidates:
                shared = sorted(words & set(candidate.text.lower().split()))
                because = f"shares {', '.join(shared) or 'nothing'}"
                row.append(Judgment(float(len(shared)), because, min(len(shared), 2)))
            judgments.append(row)
        return judgments


@pytest.fixture(scope="module")
def results(test_data) -> pd.DataFrame:
    """A PyTerrier-style results frame: two DL19 queries, their judged passages, scores in reverse file order."""
    data = test_data / "msmarco-dl19-mini"
    topics = dict(line.split("\t", 1) for line in (data / "topics.dl19-passage.tsv").read_text().splitlines()[:2])
    judged: dict[str, list[str]] = {}
    for line in (data / "qrels.dl19-passage.txt").read_text().splitlines():
        qid, _, docid, _ = line.split()
        if qid in topics:
            judged.setdefault(qid, []).append(docid)
    wanted = {docid for docids in judged.values() for docid in docids}
    texts = {}
    with (data / "corpus.jsonl").open() as corpus:
        for line in corpus:
            record = json.loads(line)
            if record["_id"] in wanted:
                texts[record["_id"]] = f"{record['title']} {record['text']}".strip()
    # The mini corpus holds every relevant passage but not every judged one.
    judged = {qid: [d for d in docids if d in texts][:8] for qid, docids in judged.items()}
    rows = [
        {"qid": qid, "query": topics[qid], "docno": docid, "text": texts[docid], "score": float(i), "docid": i}
        for qid, docids in judged.items()
        for i, docid in enumerate(docids)
    ]
    return pd.DataFrame(rows)


def test_frame_to_requests_groups_by_query_in_score_order(results):
    requests = frame_to_requests(results)
    assert [r.query.qid for r in requests] == list(dict.fromkeys(results["qid"]))
    for request in requests:
        rows = results[results["qid"] == request.query.qid]
        assert request.query.text == rows["query"].iloc[0]
        assert [c.docid for c in request.candidates] == list(rows.sort_values("score", ascending=False)["docno"])
        assert all(c.text for c in request.candidates)


def test_reranked_frame_keeps_pyterrier_conventions_and_extra_columns(results):
    reranked = rerank_frame(WordOverlap(), results, batch_size=1)
    assert list(reranked.columns[:8]) == ["qid", "query", "docno", "text", "score", "rank", "label", "explanation"]
    assert "docid" in reranked.columns  # a column the reranker does not know travels with its document
    assert len(reranked) == len(results)
    for qid, rows in reranked.groupby("qid", sort=False):
        assert list(rows["rank"]) == list(range(FIRST_RANK, FIRST_RANK + len(rows)))
        assert list(rows["score"]) == sorted(rows["score"], reverse=True)
        original = results[results["qid"] == qid].set_index("docno")["docid"]
        assert list(rows["docid"]) == list(original[rows["docno"]])
    assert reranked["explanation"].str.startswith("shares ").all()
    back = frame_to_requests(reranked)
    assert [c.docid for c in back[0].candidates] == list(reranked[reranked["qid"] == back[0].query.qid]["docno"])


def test_rankings_to_frame_alone(results):
    rankings = WordOverlap().rerank_many(frame_to_requests(results))
    frame = rankings_to_frame(rankings)
    assert list(frame.columns) == ["qid", "query", "docno", "text", "score", "rank", "label", "explanation"]
    assert list(frame["docno"]) == [item.docid for ranking in rankings for item in ranking.items]


def test_missing_text_column_says_how_to_add_it(results):
    with pytest.raises(UserError, match=r"no column text.*get_text"):
        frame_to_requests(results.drop(columns=["text"]))


def test_transformer_without_pyterrier_names_the_package(monkeypatch):
    import reasonrank.integrations.pyterrier as module

    monkeypatch.setitem(sys.modules, "pyterrier", None)  # what `import pyterrier` meets where it is not installed
    monkeypatch.delitem(module.__dict__, "ReasonRankTransformer", raising=False)
    with pytest.raises(ImportError, match="pip install python-terrier"):
        module.ReasonRankTransformer  # noqa: B018 - the attribute access is what is tested


def test_transformer_in_a_pyterrier_pipeline(results):
    import pyterrier as pt

    from reasonrank.integrations.pyterrier import ReasonRankTransformer

    transformer = ReasonRankTransformer(WordOverlap())
    assert isinstance(transformer, pt.Transformer)
    reranked = transformer.transform(results)
    assert list(reranked["rank"].iloc[:1]) == [FIRST_RANK]
    assert set(reranked["docno"]) == set(results["docno"])
    top3 = (transformer % 3).transform(results)  # PyTerrier's rank cutoff reads our rank column
    assert top3.groupby("qid").size().tolist() == [3, 3]


@pytest.mark.slow
def test_bm25_then_minilm_in_a_pyterrier_experiment():
    """reasonrank's BM25 results >> a real reasonrank reranker, scored by PyTerrier's own Experiment (ir_measures),
    which must agree with reasonrank's pytrec_eval numbers for the same rankings."""
    import pyterrier as pt

    from reasonrank.evaluation import evaluate
    from reasonrank.integrations.pyterrier import ReasonRankTransformer
    from reasonrank.io.runs import rankings_to_run
    from reasonrank.io.topics import load_qrels, load_topics
    from reasonrank.pipeline import embedded_collection, first_stage_ranking
    from reasonrank.retrieval.bm25 import Bm25FirstStage

    embedded = embedded_collection()
    queries = load_topics(str(embedded.topics))[:12]
    qrels = load_qrels(str(embedded.qrels))
    requests = Bm25FirstStage(str(embedded.corpus)).search(queries, hits=20, progress=False)
    bm25 = pt.Transformer.from_df(rankings_to_frame([first_stage_ranking(r, "bm25") for r in requests]))
    reranker = ReasonRankTransformer("minilm-bi", batch_size=4)
    topics = pd.DataFrame({"qid": [q.qid for q in queries], "query": [q.text for q in queries]})
    judged = pd.DataFrame([(qid, docid, grade) for qid in topics["qid"] for docid, grade in qrels[qid].items()],
                          columns=["qid", "docno", "label"])

    table = pt.Experiment([bm25, bm25 >> reranker], topics, judged, eval_metrics=["ndcg_cut_10"],
                          names=["bm25", "bm25 >> minilm-bi"]).set_index("name")["ndcg_cut_10"]

    ours = reranker.reranker.rerank_many(requests)
    expected = {
        "bm25": evaluate(rankings_to_run(first_stage_ranking(r, "bm25") for r in requests), qrels),
        "bm25 >> minilm-bi": evaluate(rankings_to_run(ours), qrels),
    }
    for name, evaluation in expected.items():
        assert evaluation.queries == len(queries)
        assert table[name] == pytest.approx(evaluation.mean["nDCG@10"], abs=1e-6)
    assert table["bm25 >> minilm-bi"] != pytest.approx(table["bm25"], abs=1e-3)  # the reranker changed the order
