"""Loading encoder checkpoints: device and dtype, tokenizer, weights with one-line errors offline, PEFT adapters
(merged into the weights), and the sentence-transformers settings a folder carries (pooling, length limit)."""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from reasonrank.errors import UserError
from reasonrank.weights import locate_model, offline_hint


def device_for(device: str | None) -> torch.device:
    return torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))


def dtype_for(device: torch.device) -> torch.dtype:
    # bf16 halves memory and time on GPUs that support it; CPU kernels are fastest (and exact) in fp32.
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def from_pretrained(load: Callable[..., Any], path: str, model: str, **kwargs: Any) -> Any:
    """``load(path)``; a hub model that cannot be fetched becomes one UserError line."""
    try:
        return load(path, **kwargs)
    except (OSError, ValueError) as error:
        if Path(path).exists():
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise UserError(f"cannot load {model!r} from {path}: {reason}") from error
        raise offline_hint(model, error) from error


def load_tokenizer(path: str, model: str) -> PreTrainedTokenizerBase:
    tokenizer = from_pretrained(AutoTokenizer.from_pretrained, path, model)
    if tokenizer.pad_token is None:  # Llama tokenizers have none; DeAR pads with EOS
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def merge_adapter(model: torch.nn.Module, adapter: str) -> torch.nn.Module:
    """``model`` with the PEFT adapter ``adapter`` (folder, ``pkg:`` or hub id) merged into its weights."""
    from peft import PeftModel  # optional at import time: only adapters need it

    path = locate_model(adapter).path
    with warnings.catch_warnings():  # peft calls a transformers API that transformers marks deprecated
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        return from_pretrained(lambda p: PeftModel.from_pretrained(model, p), path, adapter).merge_and_unload()


def quantize_int8(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """int8 dynamic quantisation of the Linear layers (CPU only); scores move by about 1e-2."""
    if device.type != "cpu":
        raise UserError("quantize=True is for CPU inference: drop it or pass device='cpu'")
    return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)


def split_adapter(model: str, lora: str | None, base_model: str | None) -> tuple[str, str | None]:
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


def pooling_mode(folder: Path | None) -> str:
    config = folder / "1_Pooling" / "config.json" if folder else None
    if config is None or not config.is_file():
        return "mean"  # sentence-transformers' own default for a plain transformers checkpoint
    settings = json.loads(config.read_text())
    if settings.get("pooling_mode_mean_tokens"):
        return "mean"
    if settings.get("pooling_mode_cls_token"):
        return "cls"
    raise UserError(f"{config}: only mean or CLS pooling is supported")


def max_seq_length(folder: Path | None) -> int:
    config = folder / "sentence_bert_config.json" if folder else None
    if config is not None and config.is_file():
        return int(json.loads(config.read_text()).get("max_seq_length") or 256)
    return 256
