"""Every shipped template renders exactly the text its reference code produces (full-string equality)."""

from __future__ import annotations

import pytest
from fakes import FakeBackend

from reasonrank.errors import UserError
from reasonrank.prompts import available_templates, load_template
from reasonrank.prompts.builders import window_prompt
from reasonrank.rerank.pairwise import build_pairwise
from reasonrank.rerank.pointwise import build_pointwise, build_rank1

QUERY = "how long is life cycle of flea"
P1 = "The life cycle of a flea can last anywhere from 20 days to an entire year."
P2 = "Fleas [1] lay eggs on the host."


def _unused(prompt, params):
    raise AssertionError("rendering must not generate")


def test_every_shipped_template_loads_with_a_stable_reference():
    ids = available_templates()
    assert {
        "listwise/rankzephyr-v1",
        "listwise/reasonrank-v1",
        "listwise/dear-v1",
        "rank1/v1",
        "pointwise/interank-v1",
        "pairwise/r2r-v1",
    } <= set(ids)
    for template_id in ids:
        template = load_template(template_id)
        assert template.id == template_id
        assert template.ref == f"{template_id}@{template.digest}" and len(template.digest) == 12
        assert template.source, f"{template_id} must say where its text comes from"
        assert load_template(template_id).digest == template.digest


def test_rankzephyr_single_user_turn():
    prompt = window_prompt(load_template("listwise/rankzephyr-v1"), QUERY, [P1, P2])
    assert prompt.messages == (
        {
            "role": "system",
            "content": "You are RankLLM, an intelligent assistant that can rank passages based on their relevancy "
            "to the query",
        },
        {
            "role": "user",
            "content": "I will provide you with 2 passages, each indicated by a numerical identifier []. Rank the "
            "passages based on their relevance to the search query: how long is life cycle of flea.\n\n"
            "[1] The life cycle of a flea can last anywhere from 20 days to an entire year.\n"
            "[2] Fleas (1) lay eggs on the host.\n"
            "Search Query: how long is life cycle of flea.\n"
            "Rank the 2 passages above based on their relevance to the search query. All the passages "
            "should be included and listed using identifiers, in descending order of relevance. The output "
            "format should be [] > [], e.g., [2] > [1], Answer concisely and directly and only respond with "
            "the ranking results, do not say any word or explain.",
        },
    )
    assert prompt.assistant_prefix == ""


def test_reasonrank_reasoning_prompt():
    prompt = window_prompt(load_template("listwise/reasonrank-v1"), QUERY, [P1, P2])
    assert prompt.messages == (
        {
            "role": "system",
            "content": "You are RankLLM, an intelligent assistant that can rank passages based on their relevance to "
            "the query. Given a query and a passage list, you first thinks about the reasoning process in "
            "the mind and then provides the answer (i.e., the reranked passage list). The reasoning process "
            "and answer are enclosed within <think> </think> and <answer> </answer> tags, respectively, "
            "i.e., <think> reasoning process here </think> <answer> answer here </answer>.",
        },
        {
            "role": "user",
            "content": "I will provide you with 2 passages, each indicated by a numerical identifier []. Rank the "
            "passages based on their relevance to the search query: how long is life cycle of flea.\n\n"
            "[1] The life cycle of a flea can last anywhere from 20 days to an entire year.\n"
            "[2] Fleas (1) lay eggs on the host.\n"
            "Search Query: how long is life cycle of flea.\n"
            "Rank the 2 passages above based on their relevance to the search query. All the passages "
            "should be included and listed using identifiers, in descending order of relevance. The format "
            "of the answer should be [] > [], e.g., [2] > [1].",
        },
    )


def test_dear_multi_turn_conversation():
    prompt = window_prompt(load_template("listwise/dear-v1"), QUERY, [P1, P2])
    assert prompt.messages == (
        {"role": "system", "content": "You are RankLLM, an assistant that ranks passages by relevance to the query."},
        {
            "role": "user",
            "content": "I will provide you with 2 passages, each indicated by number identifier [].\nRank the passages "
            "based on their relevance to query: how long is life cycle of flea.",
        },
        {"role": "assistant", "content": "Okay, please provide the passages."},
        {"role": "user", "content": "[1] The life cycle of a flea can last anywhere from 20 days to an entire year."},
        {"role": "assistant", "content": "Received passage [1]."},
        {"role": "user", "content": "[2] Fleas (1) lay eggs on the host."},
        {"role": "assistant", "content": "Received passage [2]."},
        {
            "role": "user",
            "content": "Search Query: how long is life cycle of flea.\nRank the 2 passages above based on their "
            "relevance to the search query. The passages should be listed in descending order using "
            "identifiers.\nPlease follow the steps below:\nStep 1. List the information requirements to "
            "answer the query.\nStep 2. For each requirement, find the passages containing that "
            "information.\nStep 3. Rank passages that best cover clear and diverse information. Include all "
            "passages.\nOutput format strictly: [2] > [1] > [3] ... Only output the ranking using "
            "identifiers; no explanations.",
        },
    )


def test_rank1_raw_completion_text():
    reranker = build_rank1("fake", backend=FakeBackend(_unused))
    assert reranker.prompt_text(QUERY, P1) == (
        "Determine if the following passage is relevant to the query. Answer only with 'true' or 'false'.\n"
        "Query: how long is life cycle of flea\n"
        "Passage: The life cycle of a flea can last anywhere from 20 days to an entire year.\n"
        "<think>"
    )


def test_interank_pointwise_prompt():
    prompt = build_pointwise("fake", backend=FakeBackend(_unused)).prompt(QUERY, P1)
    assert prompt.messages == (
        {
            "role": "user",
            "content": "Explain whether the following document is relevant or not to the given question. Then end "
            "your response with a relevance label (0: irrelevant, 1: partially relevant, 2: relevant) and "
            "the symbol '##'. Your response should have this format: '<explanation>\nRelevance Label: "
            "<label> ##'. Question: how long is life cycle of flea\n"
            "Document: The life cycle of a flea can last anywhere from 20 days to an entire year.",
        },
    )


def test_r2r_pairwise_prompt():
    prompt = build_pairwise("fake", backend=FakeBackend(_unused)).prompt(QUERY, P1, P2)
    assert prompt.messages == (
        {
            "role": "user",
            "content": "Compare the two passages below for the search query and explain which one is more relevant: "
            "which passage gives more comprehensive, relevant and accurate information for the query? "
            "Mention the specific parts of each passage that decide it. Then end your response with 'More "
            "Relevant Passage: 1' or 'More Relevant Passage: 2'.\n"
            "Query: how long is life cycle of flea\n"
            "Passage 1: The life cycle of a flea can last anywhere from 20 days to an entire year.\n"
            "Passage 2: Fleas [1] lay eggs on the host.",
        },
    )


def test_passages_are_cut_to_the_template_length():
    long_passage = " ".join(f"w{i}" for i in range(500))
    prompt = window_prompt(load_template("listwise/rankzephyr-v1"), QUERY, [long_passage])
    line = prompt.messages[1]["content"].split("\n")[2]
    assert line == "[1] " + " ".join(f"w{i}" for i in range(300))


def test_user_template_file_is_checked(tmp_path):
    good = tmp_path / "mine.yaml"
    good.write_text('kind: pointwise\nmarker: "Label:"\nlabels: [0, 1]\nuser: "Q: {query} D: {passage}"\n')
    template = load_template(str(good))
    assert template.render("user", query="q", passage="d") == "Q: q D: d"
    bad = tmp_path / "bad.yaml"
    bad.write_text('kind: pointwise\nuser: "Q: {question} D: {passage}"\n')
    with pytest.raises(UserError, match=r"unknown placeholder.*question"):
        load_template(str(bad))
    missing = tmp_path / "missing.yaml"
    missing.write_text('kind: pairwise\nuser: "Q: {query} A: {passage_a}"\n')
    with pytest.raises(UserError, match=r"lacks placeholder.*passage_b"):
        load_template(str(missing))
    positional = tmp_path / "positional.yaml"
    positional.write_text('kind: completion\ntext: "{query} {passage} {}"\n')
    with pytest.raises(UserError, match="bad placeholder"):
        load_template(str(positional))


def test_unknown_template_id_is_a_user_error():
    with pytest.raises(UserError, match="listwise/rankzephyr-v1"):
        load_template("listwise/rankzephyr-v9")
