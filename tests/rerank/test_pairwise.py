"""Pairwise comparative reasoning: win aggregation, both orders, head reordering on real DL19 passages."""

from __future__ import annotations

import random
import re

import pytest
from fakes import FakeBackend, generation, load_dl19, prompt_text

from reasonrank.io.runs import explanation_records
from reasonrank.rerank.pairwise import aggregate_wins, build_pairwise
from reasonrank.types import Candidate, ExplanationFrom, Query, Request


def test_wins_add_up_over_both_orders_and_ties_keep_the_old_order():
    # 0 and 1 tie (each wins when shown first), 2 beats both in either order.
    preferences = {(0, 1): 1.0, (1, 0): 1.0, (2, 0): 1.0, (0, 2): 0.0, (2, 1): 1.0, (1, 2): 0.0}
    order, wins = aggregate_wins(3, preferences)
    assert wins == [1.0, 1.0, 4.0] and order == [2, 0, 1]
    assert aggregate_wins(2, {}) == ([0, 1], [0.0, 0.0])


@pytest.fixture(scope="module")
def dl19(test_data):
    return load_dl19(test_data)


def test_head_is_reordered_by_wins_and_the_tail_kept(dl19):
    topics, qrels, corpus = dl19
    qid = sorted(qrels)[1]
    judged = sorted(d for d in qrels[qid] if d in corpus)
    random.Random(3).shuffle(judged)
    request = Request(Query(qid, topics[qid]), tuple(Candidate(d, corpus[d]) for d in judged[:8]))
    grade = {" ".join(corpus[d].split()): g for d, g in qrels[qid].items() if d in corpus}

    def respond(prompt, params):
        first, second = re.search(r"Passage 1: (.*)\nPassage 2: (.*)$", prompt_text(prompt), re.DOTALL).groups()
        # Biased to the first passage on ties; showing both orders cancels the bias.
        verdict = "1" if grade[first] >= grade[second] else "2"
        return generation(f"Passage {verdict} covers the query better.\n", "More Relevant Passage:", f" {verdict}")

    backend = FakeBackend(respond)
    ranking = build_pairwise("fake", backend=backend, head=5).rerank_request(request)
    assert len(backend.calls) == 1 and len(backend.calls[0]) == 20
    assert ranking.stats == {"pairs": 20}
    head = [c.docid for c in request.candidates[:5]]
    expected = sorted(head, key=lambda d: (-qrels[qid][d], head.index(d)))  # ties: previous order
    assert ranking.docids[:5] == expected
    assert ranking.docids[5:] == [c.docid for c in request.candidates[5:]]
    assert ranking[0].explanation.endswith("covers the query better.")


def test_preference_from_logprobs_and_unparsed_pairs_count_as_ties():
    request = Request(Query("q", "what is a flea"), (Candidate("a", "A flea is an insect."), Candidate("b", "Cats.")))

    def respond(prompt, params):
        if "Passage 1: A flea" in prompt_text(prompt):
            return generation("A defines it.", "\nMore Relevant Passage:", (" 1", {" 1": 0.9, " 2": 0.1}))
        return generation("Hard to say.")

    ranking = build_pairwise("fake", backend=FakeBackend(respond)).rerank_request(request)
    assert ranking.docids == ["a", "b"]
    assert ranking.stats == {"pairs": 2, "pairs_unparsed": 1}


def test_the_verdict_is_read_at_the_digit_inside_the_brackets():
    request = Request(Query("q", "what is a flea"), (Candidate("a", "A flea is an insect."), Candidate("b", "Cats.")))

    def respond(prompt, params):
        # "[2]" written; the "[" token's alternatives carry " 1" (as "Passage: 1" would), the digit's say 2.
        first_is_flea = "Passage 1: A flea" in prompt_text(prompt)
        written, other = ("1", "2") if first_is_flea else ("2", "1")
        return generation(
            "B is about cats.", "\nMore Relevant Passage:", (" [", {" [": 0.998, f" {other}": 0.002}),
            (written, {written: 0.8, other: 0.2}), "]",
        )

    reranker = build_pairwise("fake", backend=FakeBackend(respond))
    assert reranker.preference(respond(reranker.prompt("q", "Cats.", "A flea is an insect."), None)) == (
        pytest.approx(0.2)
    )
    ranking = reranker.rerank_request(request)
    assert ranking.docids == ["a", "b"] and ranking.stats == {"pairs": 2}


def test_each_passage_is_explained_by_what_its_comparison_says_about_it():
    request = Request(Query("q", "what is a flea"), (Candidate("a", "A flea is an insect."), Candidate("b", "Cats.")))

    def respond(prompt, params):
        first = "flea" if "Passage 1: A flea" in prompt_text(prompt) else "cats"
        second = "cats" if first == "flea" else "flea"
        verdict = "1" if first == "flea" else "2"
        return generation(
            f'Passage 1 is about {first}: "A flea is an insect." Passage 2 is about {second}.',
            f"\nMore Relevant Passage: {verdict}",
        )

    ranking = build_pairwise("fake", backend=FakeBackend(respond)).rerank_request(request)
    assert [(item.docid, item.explanation) for item in ranking] == [
        ("a", 'Passage 1 is about flea: "A flea is an insect."'),
        ("b", "Passage 1 is about cats: \"A flea is an insect.\""),
    ]
    # The explanations file says which comparison each part comes from: this passage shown first, its neighbour second.
    assert [(item.explanation_from, item.explanation_pair) for item in ranking] == [
        (ExplanationFrom.PAIRWISE_COMPARISON, ("a", "b")), (ExplanationFrom.PAIRWISE_COMPARISON, ("b", "a"))]
    records = list(explanation_records(ranking))
    assert [(r["explanation_from"], r["explanation_pair"]) for r in records] == [
        ("pairwise-comparison", ["a", "b"]), ("pairwise-comparison", ["b", "a"])]
    # The quote is about passage a: grounded in a's text for a, and not in b's ("Cats.") for b.
    assert [len(r["grounded"]) for r in records] == [1, 0] and records[1]["ungrounded"] == ["A flea is an insect."]
