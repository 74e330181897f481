"""The transformers backend keeps a few numbers per generated step and builds a token's alternatives only when a
reader asks for them; the numbers are those of the model's raw logits at that step (SmolLM2, real prompts)."""

from __future__ import annotations

import pytest
import torch
from test_backends import relevance_prompts
from transformers import GenerationConfig

from reasonrank.backends.base import GenerationParams

STEPS, TOP = 6, 5


def reference_steps(smollm, prompt) -> tuple[list[int], list[torch.Tensor]]:
    """Greedy ids and every step's log-softmax over the vocabulary, straight from ``generate(output_logits=True)``."""
    ids = torch.tensor([smollm._encode(prompt)])
    config = GenerationConfig(
        max_new_tokens=STEPS, do_sample=False, return_dict_in_generate=True, output_logits=True,
        eos_token_id=sorted(smollm.eos_ids), pad_token_id=smollm.pad_id,
    )
    with torch.inference_mode():
        out = smollm.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), generation_config=config)
    return out.sequences[0, ids.shape[1] :].tolist(), [torch.log_softmax(step[0].float(), -1) for step in out.logits]


@pytest.mark.slow
def test_alternatives_are_the_raw_logits_top_and_built_only_when_read(smollm, test_data, monkeypatch):
    prompts = relevance_prompts(test_data, count=2)
    built = []
    alternatives = smollm._alternatives
    monkeypatch.setattr(smollm, "_alternatives", lambda *a: built.append(a) or alternatives(*a))
    generations = smollm.generate(prompts, GenerationParams(max_new_tokens=STEPS, top_logprobs=TOP))
    assert built == []  # generating decoded no alternatives and built no distribution
    for prompt, generation in zip(prompts, generations, strict=True):
        ids, logprobs = reference_steps(smollm, prompt)
        assert len(generation.tokens) == len(ids) == STEPS
        for token, token_id, step in zip(generation.tokens, ids, logprobs, strict=True):
            assert token.token == smollm.tokenizer.decode([token_id])
            assert token.logprob == pytest.approx(float(step[token_id]), abs=1e-4)
            values, best = step.topk(TOP)
            expected = {smollm.tokenizer.decode([i]): v for i, v in zip(best.tolist(), values.tolist(), strict=True)}
            assert list(token.top) == list(expected)
            assert list(token.top.values()) == pytest.approx(list(expected.values()), abs=1e-4)
    assert len(built) == 2 * STEPS  # one per token read, above
    generations[0].tokens[0].top  # noqa: B018 - read again: already built
    assert len(built) == 2 * STEPS
