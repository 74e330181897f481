"""Evidence: sentences with offsets, scored by the reranker's own model, on real SciFact rationales and DL19."""

from __future__ import annotations

import itertools
import json
import statistics

import pytest
from fakes import load_dl19

from reasonrank.errors import UserError
from reasonrank.io.runs import explanation_records
from reasonrank.prompts.readers import quoted_spans
from reasonrank.rerank.base import ScoringReranker
from reasonrank.rerank.cascade import Cascade
from reasonrank.rerank.evidence import (
    EvidenceFinder,
    EvidenceReranker,
    MaxPReranker,
    best,
    sentence_spans,
)
from reasonrank.rerank.registry import load_reranker
from reasonrank.retrieval.bm25 import Bm25FirstStage
from reasonrank.retrieval.documents import text_from_raw
from reasonrank.retrieval.index import ensure_index
from reasonrank.types import Candidate, Evidence, ExplanationFrom, Judgment, Query, RankedCandidate, Ranking, Request

PAIRS = 12  # SciFact (claim, abstract) pairs with human rationales


@pytest.fixture(scope="module")
def bi_encoder():
    reranker = load_reranker("minilm-bi", progress=False)
    yield reranker
    reranker.close()


@pytest.fixture(scope="module")
def dl19_request(test_data):
    """The first DL19 query with five of its judged passages (short: three to five sentences each)."""
    topics, qrels, corpus = load_dl19(test_data)
    qid = sorted(qrels)[0]
    docids = sorted(d for d in qrels[qid] if d in corpus and len(sentence_spans(corpus[d])) > 2)[:5]
    return Request(Query(qid, topics[qid]), tuple(Candidate(d, corpus[d], 10.0 - i) for i, d in enumerate(docids)))


@pytest.fixture(scope="module")
def dl19_sentence_bm25(test_data, tmp_path_factory):
    """BM25 of any text with the DL19 mini index's statistics (the default's first stage, sentence by sentence)."""
    index = ensure_index(test_data / "msmarco-dl19-mini" / "corpus.jsonl",
                         cache_dir=tmp_path_factory.getbasetemp() / "cache")
    first_stage = Bm25FirstStage(str(index))
    scorer = first_stage.text_scorer()
    first_stage.close()
    yield scorer
    scorer.close()


@pytest.fixture(scope="module")
def rationale_pairs(test_data):
    """(claim, passage as a reranker reads it, rationale spans) for the first SciFact train pairs."""
    folder = test_data / "scifact"
    claims = dict(line.split("\t", 1) for line in (folder / "topics.train.tsv").read_text().splitlines())
    raw = {json.loads(line)["_id"]: line for line in (folder / "corpus.jsonl").read_text().splitlines()}
    pairs = []
    for line in (folder / "rationales.train.jsonl").read_text().splitlines()[:PAIRS]:
        record = json.loads(line)
        text = text_from_raw(raw[record["docid"]])
        gold = [(text.index(s.strip()), text.index(s.strip()) + len(s.strip())) for s in record["rationale"]]
        pairs.append((Query(record["qid"], claims[record["qid"]]), Candidate(record["docid"], text), gold))
    return pairs


def test_sentences_are_offsets_into_the_text_and_reproduce_scifact_rationales(rationale_pairs):
    for _, passage, gold in rationale_pairs:
        spans = sentence_spans(passage.text)
        assert spans == sorted(spans) and all(a < b <= c for (a, b), (c, _) in itertools.pairwise(spans))
        assert all(passage.text[a:b] == passage.text[a:b].strip() != "" for a, b in spans)
        assert all(span in spans for span in gold), "each human rationale sentence is one of our sentences"
    assert sentence_spans("") == [] and sentence_spans("  \n ") == []
    assert sentence_spans("no full stop here") == [(0, 17)]


def test_the_model_finds_the_answering_sentence_among_other_topics_sentences(bi_encoder, test_data):
    """The DL19 passage judged most relevant, inside other queries' best passages: the best evidence is in it."""
    topics, qrels, corpus = load_dl19(test_data)
    qids = sorted(qrels)[:4]
    answers = {qid: max(sorted(d for d in qrels[qid] if d in corpus), key=qrels[qid].get) for qid in qids}
    for position, qid in enumerate(qids):
        others = [corpus[answers[other]] for other in qids if other != qid]
        relevant = corpus[answers[qid]]
        text = " ".join([*others[:position], relevant, *others[position:]])
        start = text.index(relevant)
        (scored,) = EvidenceFinder(bi_encoder).score(Query(qid, topics[qid]), [Candidate(answers[qid], text)])
        top = best(scored, 1)[0]
        assert start <= top.start < top.end <= start + len(relevant), (qid, text[top.start : top.end])


def test_each_method_scores_through_the_models_own_judge(bi_encoder, dl19_request):
    query, passage = dl19_request.query, dl19_request.candidates[0]
    spans = sentence_spans(passage.text)
    texts = {
        "sentence": [passage.text[a:b] for a, b in spans],
        "window": [passage.text[spans[max(i - 1, 0)][0] : spans[min(i + 1, len(spans) - 1)][1]]
                   for i in range(len(spans))],
        "leave-one-out": [passage.text[:a] + passage.text[b:] for a, b in spans],
    }
    whole = bi_encoder.judge([Request(query, (passage,))])[0][0].score
    for method, probes in texts.items():
        direct = [j.score for j in bi_encoder.judge([Request(query, tuple(Candidate("p", t) for t in probes))])[0]]
        expected = [whole - s for s in direct] if method == "leave-one-out" else direct
        found = [e.score for e in EvidenceFinder(bi_encoder, method).score(query, [passage])[0]]
        assert found == pytest.approx(expected, abs=1e-5), method
    with pytest.raises(UserError, match="evidence method"):
        EvidenceFinder(bi_encoder, "attention")


class Explained(ScoringReranker):
    """A generative stand-in: it writes an explanation for every candidate, so it has no sentence scorer."""

    name = "writer"

    def judge(self, requests):
        return [[Judgment(-i, f"about {c.docid}", None, ExplanationFrom.POINTWISE) for i, c in enumerate(r.candidates)]
                for r in requests]


def test_fusion_and_cascades_get_evidence_from_their_encoder_for_the_top_k_only(bi_encoder, dl19_request):
    hybrid = load_reranker("minilm-hybrid", progress=False)
    request = dl19_request
    plain = hybrid.rerank_request(request)
    explained = EvidenceReranker(hybrid, depth=3, sentences=2).rerank_request(request)
    assert explained.docids == plain.docids and [i.score for i in explained] == [i.score for i in plain]
    for item in explained.items[:3]:
        assert len(item.evidence) == 2 and item.evidence[0].score >= item.evidence[1].score
        for span in item.evidence:
            assert 0 <= span.start < span.end <= len(item.text)
            assert f'"{item.text[span.start : span.end]}"' in item.explanation and "minilm-bi" in item.explanation
        assert item.explanation_from is ExplanationFrom.EVIDENCE
    assert all(not item.evidence and item.explanation is None for item in explained.items[3:])
    assert all(item.explanation_from is None for item in explained.items[3:])

    # A cascade ending in a writer: the writer's own explanations stay, and carry no evidence.
    cascade = Cascade([(bi_encoder, 5), (Explained(), 2)])
    assert cascade.evidence_scorer() is bi_encoder
    ranked = EvidenceReranker(cascade, depth=4).rerank_request(request)
    assert [i.explanation.startswith("about") for i in ranked.items[:2]] == [True, True]
    assert [i.explanation_from for i in ranked.items[:4]] == ["pointwise-explanation"] * 2 + ["evidence-sentences"] * 2
    assert all(not i.evidence for i in ranked.items[:2]) and all(i.evidence for i in ranked.items[2:4])
    with pytest.raises(UserError, match="cannot find evidence"):
        EvidenceReranker(Explained())


def test_the_defaults_evidence_is_its_fusion_of_encoder_and_bm25_sentence_scores(
    bi_encoder, dl19_request, dl19_sentence_bm25
):
    """minilm-hybrid ranks by 0.8·z(cosine) + 0.2·z(BM25) over a query's passages; its evidence is the same fusion
    of the same two models' scores over the sentences of the passages it explains, and says so."""
    hybrid = load_reranker("minilm-hybrid", progress=False)
    assert hybrid.evidence_scorer().name == "minilm-bi"  # no first stage that scores sentences: the encoder alone
    explained = EvidenceReranker(hybrid, depth=3, sentences=99, first_stage=dl19_sentence_bm25)
    ranking = explained.rerank_request(dl19_request)
    head = ranking.items[:3]
    spans = [(item, a, b) for item in head for a, b in sentence_spans(item.text)]
    sentences = [item.text[a:b] for item, a, b in spans]
    query = dl19_request.query
    cosine = [j.score for j in bi_encoder.judge([Request(query, tuple(Candidate(f"{i}", t)
                                                                      for i, t in enumerate(sentences)))])[0]]
    bm25 = dl19_sentence_bm25.score(query.text, sentences)
    assert len(set(bm25)) > 2 and bm25 != sorted(bm25)  # the lexical side has something to say

    def z(values):
        mean, spread = statistics.fmean(values), statistics.pstdev(values)
        return [(value - mean) / spread for value in values]

    expected = {(item.docid, a, b): 0.8 * model + 0.2 * lexical
                for (item, a, b), model, lexical in zip(spans, z(cosine), z(bm25), strict=True)}
    found = {(item.docid, e.start, e.end): e.score for item in head for e in item.evidence}
    assert found.keys() == expected.keys()
    assert [found[key] for key in expected] == pytest.approx(list(expected.values()), abs=1e-5)
    for item in head:
        assert item.explanation.startswith("Evidence by minilm-bi+bm25@0.8 (sentence score 0.8·z(minilm-bi) + "
                                           "0.2·z(bm25)): ")
    hybrid.close()


def test_maxp_interpolates_passage_and_best_sentence(bi_encoder, dl19_request):
    request, query = dl19_request, dl19_request.query
    passage = [j.score for j in bi_encoder.judge([request])[0]]
    sentences = [max(e.score for e in spans) for spans in EvidenceFinder(bi_encoder).score(query, request.candidates)]
    for weight in (0.0, 0.7):
        scores = [j.score for j in MaxPReranker(bi_encoder, weight).judge([request])[0]]
        expected = [(1 - weight) * p + weight * s for p, s in zip(passage, sentences, strict=True)]
        assert scores == pytest.approx(expected, abs=1e-6)


def test_quotes_of_a_written_explanation_are_checked_against_the_passage():
    passage = "Aspirin lowers the risk of stroke.  It was tested in 2,000 adults over five years."
    explanation = ('The passage says "aspirin lowers the RISK of stroke." and “tested in 2,000   adults”, '
                   'but not "it cures cancer in mice"; "yes" is too short to count.')
    quotes = quoted_spans(explanation, passage)
    assert [(q.text, q.grounded) for q in quotes] == [
        ("aspirin lowers the RISK of stroke.", True), ("tested in 2,000 adults", True),
        ("it cures cancer in mice", False)]
    assert passage[quotes[0].start : quotes[0].end] == "Aspirin lowers the risk of stroke"
    assert passage[quotes[1].start : quotes[1].end] == "tested in 2,000 adults"

    item = RankedCandidate(Candidate("d1", passage), 1.0, 1, explanation, 2)
    (record,) = explanation_records(Ranking(Query("q", "aspirin"), (item,), "writer"))
    assert record["grounded"] == [{"text": q.text, "start": q.start, "end": q.end} for q in quotes[:2]]
    assert record["ungrounded"] == ["it cures cancer in mice"] and record["evidence"] == []
    explained = RankedCandidate(Candidate("d1", passage), 1.0, 1, "Evidence …", None, (Evidence(0, 34, 0.5),))
    (record,) = explanation_records(Ranking(Query("q", "aspirin"), (explained,), "bi"))
    assert record["evidence"] == [{"start": 0, "end": 34, "score": 0.5}] and record["grounded"] == []
