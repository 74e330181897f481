"""vLLM's prefix caching on the pointwise path: the prompts of one query share the chat template, the instruction
and the query, so every candidate after the first reuses that prefix's KV blocks, and scores are unchanged.

vLLM's CPU backend caches whole blocks of 128 tokens by default (``block_size``), so only a shared prefix of at
least 128 tokens is reused: the test query is a long BRIGHT question, as reasoning-intensive queries are.

Why the score check holds on any x86 CPU: a cache hit itself changes no bit (measured: a prompt alone on a warm
cache and on an empty one give identical log-probabilities, in bfloat16 and float32); what moves a score is the
batch, since prompts that share a forward pass change the shapes of its matrix products and with them the order
of the float sums. In bfloat16 (8 mantissa bits) that moved a score by 0.046 on an AMD EPYC without AMX; the
engine runs float32 on CPUs (the backend's default there), whose rounding (24 bits) keeps it below 1e-5 whichever
kernels the CPU gets (vLLM picks its AMX attention kernel only for bfloat16; float32 takes the same vector kernel
on Intel and AMD), so the tolerance 1e-4 is a float tolerance, not room for a different answer."""

from __future__ import annotations

from pathlib import Path

import pytest

from reasonrank.io.corpus import read_documents
from reasonrank.io.topics import load_topics
from reasonrank.rerank.registry import load_reranker
from reasonrank.types import Candidate, Query, Request

pytestmark = pytest.mark.slow
DL19 = Path(__file__).resolve().parents[2] / "reasonrank" / "data" / "msmarco-dl19-mini"


@pytest.fixture(scope="module")
def request_long(test_data: Path) -> Request:
    """BRIGHT biology's first question (~110 words) with 3 passages of the DL19 mini collection."""
    documents = list(read_documents(DL19 / "corpus.jsonl"))[:3]
    query = load_topics(str(test_data / "bright" / "topics.bright-biology.tsv"))[0]
    return Request(Query(query.qid, query.text), tuple(Candidate(d.docid, d.contents) for d in documents))


def test_prefix_caching_is_on_and_a_user_may_switch_it_off(engine, model_folder, engine_settings, monkeypatch):
    import torch
    import vllm

    from reasonrank.backends.vllm import VLLMBackend

    assert engine.llm.llm_engine.vllm_config.cache_config.enable_prefix_caching is True
    assert engine.llm.llm_engine.vllm_config.model_config.dtype == torch.float32
    passed = {}

    class Recorder:  # stands in for vllm.LLM only to read the keywords VLLMBackend passes it
        def __init__(self, **options):
            passed.update(options)

        def get_tokenizer(self):
            return engine.tokenizer

    monkeypatch.setattr(vllm, "LLM", Recorder)
    VLLMBackend(str(model_folder), **engine_settings[1], enable_prefix_caching=False)
    assert passed["enable_prefix_caching"] is False and passed["dtype"] == "float32"


def test_candidates_of_one_query_reuse_its_prefix_and_score_as_uncached(engine, request_long):
    reranker = load_reranker("smollm2-pointwise", backend=engine, max_new_tokens=8)
    block = engine.llm.llm_engine.vllm_config.cache_config.block_size
    prompts = [reranker.prompt(request_long.query.text, c.text) for c in request_long.candidates]
    ids = [engine._encode(p)["prompt_token_ids"] for p in prompts]
    shared = next(n for n, column in enumerate(zip(*ids, strict=False)) if len(set(column)) > 1)
    assert shared >= block  # template + instruction + query fill at least one whole block
    uncached = []
    for prompt in prompts:  # each prompt alone on an empty cache: computed from scratch
        engine.llm.reset_prefix_cache()
        (generation,) = engine.generate([prompt], reranker.params)
        assert generation.cached_prompt_tokens == 0
        uncached.append(generation)
    engine.llm.reset_prefix_cache()
    first = engine.generate(prompts[:1], reranker.params)[0]
    rest = engine.generate(prompts[1:], reranker.params)
    assert first.cached_prompt_tokens == 0
    for generation in rest:  # whole blocks of the shared prefix come from the cache, nothing past it
        assert generation.cached_prompt_tokens == shared // block * block > 0
    # Cached and batched vs alone on an empty cache: the same words, the same label, the score to float rounding.
    for cached, fresh in zip([first, *rest], uncached, strict=True):
        (ours, source), (theirs, _) = reranker.read(cached), reranker.read(fresh)
        assert source == "label_from_logprobs" and cached.text == fresh.text and ours.label == theirs.label
        assert ours.score == pytest.approx(theirs.score, abs=1e-4)

