"""Tokenisation and length-sorted, dynamically padded batches: texts are tokenized once, inputs sorted by token
length, each batch padded only to its own longest input, and outputs returned in input order. Sorting by *token*
length (sentence-transformers sorts by characters) is what keeps padding waste near zero on 100-candidate lists."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

import numpy as np
import torch
from tokenizers import Encoding, Tokenizer
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerBase

from reasonrank.errors import UserError


def show_progress(progress: bool) -> bool:
    return progress and sys.stderr.isatty()


class Tokens:
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


# On batch-independent forwards (the exported float graphs of reasonrank.encoders.onnx), every input is padded to
# a multiple of this many tokens, and a batch holds inputs of one padded width only. An input's output then depends
# on its own tokens alone: those kernels give each row the same result whatever the batch size (tested), padding
# is the only thing a neighbour could change, and it is fixed per input. So results do not depend on batch
# composition (one query or many, resumed or sharded runs, cached or fresh vectors), at a cost of at most
# WIDTH_STEP - 1 padding tokens per input (measured on DL19 BM25 top-100: 1.09x the real tokens, against 1.68x
# for batches of 64 padded to their longest).
WIDTH_STEP = 16


def padded_width(length: int) -> int:
    return -(-length // WIDTH_STEP) * WIDTH_STEP


def forward_sorted(
    tokens: Tokens,
    encodings: Sequence[Encoding],
    forward: Callable[[dict[str, torch.Tensor]], torch.Tensor],
    batch_size: int,
    device: torch.device,
    progress: bool,
    unit: str,
    fixed_widths: bool = False,
    width: int | None = None,
) -> np.ndarray:
    """``forward`` over length-sorted batches, padded to their longest input or, with ``fixed_widths`` (for
    batch-independent forwards), each input to :func:`padded_width` with one width per batch, or every input to
    ``width`` tokens (a model trained on fixed-length inputs); rows come back in input order."""
    if batch_size < 1:
        raise UserError(f"batch_size must be at least 1, got {batch_size}")
    order = sorted(range(len(encodings)), key=lambda i: -len(encodings[i].ids))  # longest first: OOM shows at once
    width_of = (lambda i: padded_width(len(encodings[i].ids))) if fixed_widths else (lambda i: width or 0)
    batches: list[list[int]] = []
    for index in order:
        if batches and len(batches[-1]) < batch_size and width_of(batches[-1][0]) == width_of(index):
            batches[-1].append(index)
        else:
            batches.append([index])
    rows: list[np.ndarray] = [np.empty(0)] * len(encodings)
    with torch.inference_mode(), tqdm(total=len(order), unit=unit, disable=not show_progress(progress)) as bar:
        for batch in batches:
            inputs = tokens.batch([encodings[index] for index in batch], width_of(batch[0]) or None)
            output = forward({name: tensor.to(device) for name, tensor in inputs.items()}).float().cpu().numpy()
            for row, index in enumerate(batch):
                rows[index] = output[row]
            bar.update(len(batch))
    return np.stack(rows) if rows else np.empty((0,), dtype=np.float32)
