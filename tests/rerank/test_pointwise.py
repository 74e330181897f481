"""Pointwise scoring (InteRank labels, rank1 true/false) on real DL19 passages with a scripted backend."""

from __future__ import annotations

import json
import logging
import math
import random

import pytest
from fakes import FakeBackend, generation, load_dl19, prompt_text

from reasonrank.backends.base import ChatPrompt
from reasonrank.errors import UserError
from reasonrank.rerank.pointwise import build_pointwise, build_rank1
from reasonrank.types import Candidate, ExplanationFrom, Query, Request

# The scripted model's label distribution for a passage of each DL19 grade (0-3; labels are 0-2).
DISTRIBUTIONS = {
    0: {" 0": 0.7, " 1": 0.2, " 2": 0.1},
    1: {" 0": 0.2, " 1": 0.6, " 2": 0.2},
    2: {" 0": 0.1, " 1": 0.3, " 2": 0.6},
    3: {" 0": 0.05, " 1": 0.15, " 2": 0.8},
}


@pytest.fixture(scope="module")
def dl19(test_data):
    return load_dl19(test_data)


def _requests(dl19, queries=2, per_query=5, seed=0):
    topics, qrels, corpus = dl19
    rng = random.Random(seed)
    requests = []
    for qid in sorted(qrels)[:queries]:
        judged = sorted(d for d in qrels[qid] if d in corpus)
        # One passage of each grade present, then fill: a list that has something to reorder.
        by_grade = {}
        for docid in judged:
            by_grade.setdefault(qrels[qid][docid], docid)
        chosen = list(by_grade.values())
        chosen += [d for d in judged if d not in chosen][: per_query - len(chosen)]
        rng.shuffle(chosen)
        requests.append(Request(Query(qid, topics[qid]), tuple(Candidate(d, corpus[d]) for d in chosen[:per_query])))
    return requests


def _grade_of(dl19, prompt):
    topics, qrels, corpus = dl19
    text = prompt_text(prompt)
    qid = next(q for q, t in topics.items() if f"Question: {t}\n" in text)
    judged = (d for d in qrels[qid] if d in corpus)
    return next(qrels[qid][d] for d in judged if text.endswith(f"Document: {' '.join(corpus[d].split())}"))


def test_score_is_the_expected_label_from_logprobs(dl19):
    def respond(prompt, params):
        top = DISTRIBUTIONS[_grade_of(dl19, prompt)]
        best = max(top, key=top.get)
        return generation("The document discusses the topic.", "\n", "Relevance", " Label", ":", (best, top), " ##")

    backend = FakeBackend(respond)
    reranker = build_pointwise("fake", backend=backend)
    requests = _requests(dl19)
    rankings = reranker.rerank_many(requests)
    # Batched across candidates and queries: one backend call for all 10 prompts, with the template's settings.
    assert len(backend.calls) == 1 and len(backend.calls[0]) == 10
    _, qrels, _ = dl19
    for request, ranking in zip(requests, rankings, strict=True):
        assert ranking.stats == {"label_from_logprobs": 5}
        for item in ranking:
            top = DISTRIBUTIONS[qrels[request.query.qid][item.docid]]
            expected = sum(p * int(label) for label, p in top.items())
            assert item.score == pytest.approx(expected)
            assert item.label == int(max(top, key=top.get))
            assert item.explanation == "The document discusses the topic."
            assert item.explanation_from is ExplanationFrom.POINTWISE
        grades = [qrels[request.query.qid][d] for d in ranking.docids]
        assert grades == sorted(grades, reverse=True)


def test_parsed_label_when_no_logprobs_and_zero_when_nothing(dl19, caplog):
    def respond(prompt, params):
        grade = _grade_of(dl19, prompt)
        if grade == 0:
            return generation("I cannot judge this one.")
        return generation(f"Relevant enough.\nRelevance Label: {min(grade, 2)}")

    request = _requests(dl19, queries=1)[0]
    with caplog.at_level(logging.WARNING):
        ranking = build_pointwise("fake", backend=FakeBackend(respond)).rerank_request(request)
    _, qrels, _ = dl19
    zeros = sum(qrels[request.query.qid][c.docid] == 0 for c in request.candidates)
    assert ranking.stats == {k: v for k, v in {"label_from_text": 5 - zeros, "label_missing": zeros}.items() if v}
    for item in ranking:
        grade = qrels[request.query.qid][item.docid]
        assert item.score == float(min(grade, 2)) and item.label == (None if grade == 0 else min(grade, 2))
    assert caplog.text.count("no relevance label") == zeros


def test_label_first_template_reads_the_first_token_after_the_written_marker(dl19):
    seen = []

    def respond(prompt, params):
        seen.append(prompt.assistant_prefix)
        grade = _grade_of(dl19, ChatPrompt(prompt.messages))  # the prompt text, without the written marker
        top = DISTRIBUTIONS[grade]
        best = max(top, key=top.get)
        # The explanation repeats the marker with another label: only the first, the model's verdict, counts.
        return generation((best, top), "\n", "It", " says", " Relevance Label: 0", " as a", " quote.", " ##")

    reranker = build_pointwise("fake", backend=FakeBackend(respond), template="pointwise/label-first-v1")
    request = _requests(dl19, queries=1)[0]
    ranking = reranker.rerank_request(request)
    _, qrels, _ = dl19
    assert set(seen) == {"Relevance Label:"} and ranking.stats == {"label_from_logprobs": 5}
    for item in ranking:
        top = DISTRIBUTIONS[qrels[request.query.qid][item.docid]]
        assert item.score == pytest.approx(sum(p * int(label) for label, p in top.items()))
        assert item.label == int(max(top, key=top.get))
        assert item.explanation == "It says Relevance Label: 0 as a quote."


def test_label_first_without_a_label_token_is_missing_not_a_later_label(dl19):
    def respond(prompt, params):
        return generation(" The", " document", " is", " Relevance Label: 2")

    request = _requests(dl19, queries=1)[0]
    reranker = build_pointwise("fake", backend=FakeBackend(respond), template="pointwise/label-first-v1")
    ranking = reranker.rerank_request(request)
    assert ranking.stats == {"label_missing": 5}
    assert {item.score for item in ranking} == {0.0}
    assert {item.explanation for item in ranking} == {"The document is Relevance Label: 2"}


def test_adapter_trained_on_another_template_is_refused_in_one_line(tmp_path):
    record = {"step": "sft", "template": "pointwise/label-first-v1"}
    (tmp_path / "reasonrank_training.json").write_text(json.dumps(record))
    backend = FakeBackend(lambda prompt, params: generation(" 2"))
    with pytest.raises(UserError, match="trained with template pointwise/label-first-v1, not pointwise/interank-v1"):
        build_pointwise("fake", backend=backend, adapter=str(tmp_path))
    build_pointwise("fake", backend=backend, template="pointwise/label-first-v1", adapter=str(tmp_path))


def test_rank1_reads_true_false_after_think_and_closes_cut_reasoning(dl19):
    request = _requests(dl19, queries=1)[0]
    _, qrels, corpus = dl19
    grades = {" ".join(corpus[c.docid].split()): qrels[request.query.qid][c.docid] for c in request.candidates}

    def respond(prompt, params):
        assert prompt.messages == ()  # rank1 reads raw text, no chat template
        assert params.stop == ("</think> true", "</think> false") and params.top_logprobs == 20
        grade = next(g for text, g in grades.items() if f"Passage: {text}\n<think>" in prompt.assistant_prefix)
        if grade == 0:  # cut off at max tokens mid-sentence
            return generation("\nThe passage is about fleas. But the", finish_reason="length")
        p = {1: 0.6, 2: 0.8, 3: 0.9}[grade]
        return generation("\nIt answers the query.\n", "</think>", (" true", {" true": p, " false": 1 - p}))

    forced = []

    def next_token(prompt, options):
        forced.append(prompt.assistant_prefix)
        assert tuple(options) == (" true", " false")
        return {" true": math.log(0.1), " false": math.log(0.3)}

    ranking = build_rank1("fake", backend=FakeBackend(respond, next_token)).rerank_request(request)
    zeros = [c for c in request.candidates if qrels[request.query.qid][c.docid] == 0]
    assert len(forced) == len(zeros) and ranking.stats == ({"reasoning_closed_by_force": len(zeros)} if zeros else {})
    for prompt in forced:
        assert prompt.endswith("<think>\nThe passage is about fleas.\n</think>")
    for item in ranking:
        grade = qrels[request.query.qid][item.docid]
        assert item.score == pytest.approx({0: 0.25, 1: 0.6, 2: 0.8, 3: 0.9}[grade])
        assert item.label == int(grade > 0)
        assert item.explanation and item.explanation_from is ExplanationFrom.RANK1_REASONING
    assert [qrels[request.query.qid][d] for d in ranking.docids] == sorted(grades.values(), reverse=True)


@pytest.mark.slow
def test_smollm2_pointwise_runs_for_real(dl19, monkeypatch):
    """The offline SmolLM2-135M reranks 2 DL19 queries × 5 passages end to end (plumbing, not quality)."""
    import torch

    from reasonrank.rerank.registry import load_reranker

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(2)
    requests = _requests(dl19, queries=2, per_query=5)
    reranker = load_reranker("smollm2-pointwise", max_new_tokens=48)
    try:
        rankings = reranker.rerank_many(requests)
    finally:
        reranker.close()
    for request, ranking in zip(requests, rankings, strict=True):
        assert sorted(ranking.docids) == sorted(c.docid for c in request.candidates)
        assert sum(ranking.stats.values()) == 5
        assert all(0.0 <= item.score <= 2.0 for item in ranking)
        # A 135M model sometimes writes the label first: the explanation is then empty, but always recorded,
        # and it is only the text before the marker.
        for item in ranking:
            if item.label is not None:
                assert item.explanation is not None and "relevance label" not in item.explanation.lower()


def test_the_label_is_read_at_the_token_that_writes_it_not_at_the_bold_marks_before_it(dl19):
    # The " **" token's alternatives hold " 1" (the model could have written "Label: 1"); read there, renormalised,
    # p(1) would be 1.0. The written label is 2 and its own token's distribution is what scores it.
    def respond(prompt, params):
        return generation(
            "Fits.", "\nRelevance Label:", (" **", {" **": 0.999, " 1": 0.001}),
            ("2", {"2": 0.6, "1": 0.3, "0": 0.1}), ("**", {"**": 0.9, " 0": 0.1}),
        )

    ranking = build_pointwise("fake", backend=FakeBackend(respond)).rerank_request(_requests(dl19, queries=1)[0])
    assert ranking.stats == {"label_from_logprobs": 5}
    assert [(item.score, item.label) for item in ranking] == [(pytest.approx(0.6 * 2 + 0.3), 2)] * 5


def test_a_label_first_answer_in_bold_is_read_at_the_digit(dl19):
    def respond(prompt, params):
        return generation((" **", {" **": 0.99, " 0": 0.01}), ("1", {"1": 0.5, "2": 0.5}), "**", " Partly.")

    reranker = build_pointwise("fake", backend=FakeBackend(respond), template="pointwise/label-first-v1")
    ranking = reranker.rerank_request(_requests(dl19, queries=1)[0])
    assert [(item.score, item.label) for item in ranking] == [(pytest.approx(1.5), 1)] * 5


def test_an_explanation_cut_by_max_new_tokens_gets_its_label_in_a_second_pass(dl19):
    forced = []

    def respond(prompt, params):
        return generation("The passage", " explains the flea", " life cycle in", finish_reason="length")

    def next_token(prompt, options):
        forced.append(prompt.assistant_prefix)
        return dict(zip(options, (math.log(0.1), math.log(0.2), math.log(0.6)), strict=True))

    backend = FakeBackend(respond, next_token)
    ranking = build_pointwise("fake", backend=backend, max_new_tokens=3).rerank_request(_requests(dl19, queries=1)[0])
    assert ranking.stats == {"label_forced_after_length": 5}
    assert forced == ["The passage explains the flea life cycle in\nRelevance Label:"] * 5
    assert [(item.score, item.label) for item in ranking] == [(pytest.approx((0.2 + 1.2) / 0.9), 2)] * 5
    assert {item.explanation for item in ranking} == {"The passage explains the flea life cycle in"}
    assert {item.explanation_from for item in ranking} == {ExplanationFrom.POINTWISE}
