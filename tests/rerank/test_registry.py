"""Reranker options are checked when a reranker is built: one UserError line, before any model or BM25 work."""

from __future__ import annotations

import pytest
import torch

from reasonrank.errors import UserError
from reasonrank.rerank.catalog import SPECS
from reasonrank.rerank.registry import FAMILIES, family_builder, load_reranker


def test_every_named_checkpoint_has_a_family_that_loads():
    assert {spec.family for spec in SPECS.values()} <= set(FAMILIES)
    for family in FAMILIES:
        assert callable(family_builder(family))


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        # dear-8b-ce is a hub model: the check must come before the (offline, failing) download.
        ("dear-8b-ce", {"batch_sise": 4}, r"unknown option batch_sise for dear-8b-ce \(cross-encoder\): valid options "
                                          r"are .*\bbatch_size\b.*\bdevice\b"),
        ("minilm-bi", {"batch_size": "abc"}, r"option batch_size='abc' for minilm-bi .*: expected an integer"),
        ("smollm2-pointwise", {"batch_sise": 4}, r"unknown option batch_sise .*valid options are .*\bbatch_size\b.*"
                                                 r"\bmax_new_tokens\b.*\btemplate\b"),
        ("smollm2-listwise", {"window_size": "big"}, r"option window_size='big' .*expected an integer"),
        ("smollm2-pairwise", {"backend": "openai"}, r"the openai backend needs base_urls"),
        ("smollm2-pairwise", {"backend": "llama.cpp"}, r"unknown backend 'llama.cpp'"),
        ("minilm-hybrid", {"weight": "heavy"}, r"option weight='heavy' for minilm-hybrid .*: expected a number"),
        ("minilm-hybrid", {"batch_sise": 4}, r"unknown option batch_sise for minilm-bi"),
    ],
)
def test_bad_options_are_one_line_naming_the_valid_ones(name, options, message):
    with pytest.raises(UserError, match=message) as raised:
        load_reranker(name, **options)
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize("name", ["minilm-bi", "smollm2-pointwise"])
def test_cuda_without_cuda_is_one_line(name, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UserError, match="device=cuda: torch sees no CUDA device"):
        load_reranker(name, device="cuda")


def test_good_options_still_build():
    reranker = load_reranker("smollm2-listwise", window_size=4, stride=2, temperature=0, batch_size=2)
    assert reranker.name == "smollm2-listwise"  # a reranker that does not name itself is named after its spec
    reranker.close()


def test_a_run_steps_by_what_suits_the_backend_unless_a_batch_size_is_given(tmp_path):
    """vLLM and the HTTP backend get a run's queries together (up to 256 a step), transformers 8: known from the
    backend kind alone, no model loaded. The pipeline steps (and checkpoints) by it; an explicit batch size wins."""
    from reasonrank.pipeline import SearchSettings, run_search
    from reasonrank.rerank.cascade import Cascade
    from reasonrank.types import Ranking

    on_vllm = load_reranker("smollm2-listwise", backend="vllm")
    on_server = load_reranker("smollm2-pointwise", backend="openai", base_urls="http://127.0.0.1:9")
    on_transformers = load_reranker("smollm2-pairwise")
    assert [r.queries_per_step for r in (on_vllm, on_server, on_transformers)] == [256, 256, 8]
    assert on_vllm.backend._backend is None  # nothing was loaded to know it
    assert Cascade([(on_vllm, 20), (on_transformers, 5)]).queries_per_step == 8  # the tighter stage bounds

    steps: dict[str, list[int]] = {}
    for reranker in (on_vllm, on_transformers):
        def record(requests, reranker=reranker):
            steps.setdefault(reranker.name, []).append(len(requests))
            return [Ranking.from_order(r.query, r.candidates, reranker.name) for r in requests]

        reranker.rerank_many = record
    for reranker, batch_size in ((on_vllm, None), (on_transformers, None), (on_vllm, 20)):
        settings = SearchSettings(hits=5, progress=False, batch_size=batch_size, resume=False,
                                  output=str(tmp_path / f"{reranker.name}-{batch_size}.txt"))
        run_search(settings, reranker=reranker)
    # The bundled DL19 topics: 43 queries.
    assert steps == {"smollm2-listwise": [43, 20, 20, 3], "smollm2-pairwise": [8] * 5 + [3]}
