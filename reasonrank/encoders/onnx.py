"""Encoder forward passes built for CPUs: the model exported once to ONNX, then run by ONNX Runtime or OpenVINO.

The exported graph is the whole scorer, so no torch code runs per batch: transformer + mean/CLS pooling + L2
normalisation for a bi-encoder, transformer + head reduced to one score for a cross-encoder. Export happens on
first use and is cached under ``$REASONRANK_CACHE/onnx/<key>/`` where the key covers the weights (and a merged
adapter), the graph kind and this module's export format; the file is written under a temporary name and renamed,
so a concurrent first use or a kill -9 leaves either no model or a whole one.

Precision (decided by measurement per kind of graph, :data:`AUTO_PRECISION`, see docs/speed.md): ``fp32`` runs
the exported graph as it is (OpenVINO, or ONNX Runtime without it); ``bf16`` runs it in OpenVINO with bfloat16
inference precision, which uses the AVX-512 BF16 / AMX units of recent x86 CPUs; ``int8`` is ONNX Runtime's
dynamic quantisation of the MatMul weights. The torch path stays for GPUs and training.
"""

from __future__ import annotations

import hashlib
import logging
import os
import uuid
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from reasonrank.errors import UserError

EXPORT_FORMAT = "reasonrank-onnx-v1"
PRECISIONS = ("fp32", "bf16", "int8")
RUNTIMES = ("auto", "torch", "onnx")
# Protocol buffers stop at 2 GiB; bigger models (DeAR's Llama students) stay on torch.
MAX_EXPORT_BYTES = 1 << 30
log = logging.getLogger("reasonrank")


def fingerprint(*folders: str | Path | None) -> str:
    """A key for the weights in ``folders``: every file's relative name, size and modification time."""
    digest = hashlib.sha256(EXPORT_FORMAT.encode())
    for folder in folders:
        if folder is None:
            continue
        root = Path(folder).resolve()
        digest.update(f"\0{root}".encode())
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for file in files:
            stat = file.stat()
            digest.update(f"\0{file.relative_to(root) if file != root else file.name}\0{stat.st_size}\0"
                          f"{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:24]


def export_folder(key: str) -> Path:
    from reasonrank.io.corpus import cache_root

    return cache_root() / "onnx" / key


def has_export(key: str) -> bool:
    return (export_folder(key) / "model.onnx").is_file()


class PooledEmbedding(torch.nn.Module):
    """A bare encoder + pooling + L2 normalisation: ``(input_ids, attention_mask[, token_type_ids]) → unit vectors``."""

    def __init__(self, model: torch.nn.Module, pooling: str) -> None:
        super().__init__()
        self.model, self.pooling = model, pooling

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        from reasonrank.encoders.embedding import pooled_embeddings

        extra = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask, **extra).last_hidden_state
        return pooled_embeddings(hidden, attention_mask, self.pooling)


class RelevanceScore(torch.nn.Module):
    """A sequence classifier reduced to one score per pair: the logit of a 1-label head, ``logit[1] − logit[0]``
    of a 2-label one."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        extra = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
        logits = self.model(input_ids=input_ids, attention_mask=attention_mask, **extra).logits
        return logits[:, 0] if logits.shape[-1] == 1 else logits[:, 1] - logits[:, 0]


def export(module: torch.nn.Module, input_names: Sequence[str], path: Path) -> Path:
    """``module`` (float32, CPU) as an ONNX graph with dynamic batch and sequence axes, written atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.stem}.{os.getpid()}.{uuid.uuid4().hex}.onnx")
    # The example batch has padding: transformers skips building the attention mask for an all-ones mask, and a
    # graph traced that way would ignore padding.
    mask = torch.tensor([[1] * 8, [1] * 5 + [0] * 3])
    examples = {"input_ids": torch.full((2, 8), 5) * mask, "attention_mask": mask, "token_type_ids": 0 * mask}
    axes = {name: {0: "batch", 1: "sequence"} for name in input_names}
    module = module.float().cpu().eval()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # The TorchScript exporter warns about its own deprecation and about traced Python conditionals that
            # depend only on shapes; tests check the graph against torch on padded batches.
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module,
                tuple(examples[name] for name in input_names),
                str(temporary),
                input_names=list(input_names),
                output_names=["output"],
                dynamic_axes={**axes, "output": {0: "batch"}},
                opset_version=17,
                dynamo=False,
            )
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path


def quantized(path: Path) -> Path:
    """ONNX Runtime's dynamic int8 quantisation of ``path``'s weights, cached beside it."""
    target = path.with_name("model.int8.onnx")
    if target.is_file():
        return target
    from onnxruntime.quantization import QuantType, quantize_dynamic

    temporary = target.with_name(f".int8.{os.getpid()}.{uuid.uuid4().hex}.onnx")
    try:
        quantize_dynamic(str(path), str(temporary), weight_type=QuantType.QInt8)
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)
    return target


def has_openvino() -> bool:
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


def cpu_has_bf16() -> bool:
    """Whether OpenVINO can run bfloat16 on this CPU (AVX-512 BF16 or AMX)."""
    if not has_openvino():
        return False
    import openvino

    return "BF16" in openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


# The precision ``auto`` picks per kind of graph, decided by benchmarks/encoder_agreement.py on trained models
# (docs/speed.md): bf16 only where it kept the ranking (mean per-query Kendall tau >= 0.98 against fp32 and nDCG@10
# within 0.002 of fp32 on DL19 mini and SciFact), else fp32; int8 never by default (tau 0.85-0.86). Measured: the
# minilm-scifact-bi student keeps it (tau 0.997, nDCG@10 within 0.0001); a MiniLM cross-encoder student does not
# (DL19 mini 43 x 100: tau 0.992 but nDCG@10 -0.0025), so cross-encoders stay fp32.
AUTO_PRECISION = {"bi": "bf16", "cross": "fp32"}


def default_precision(kind: str) -> str:
    """The measured choice for ``kind`` (``bi`` or ``cross``), fp32 where the CPU has no bfloat16 units."""
    choice = AUTO_PRECISION[kind]
    return "fp32" if choice == "bf16" and not cpu_has_bf16() else choice


def resolve_precision(precision: str, kind: str) -> str:
    return default_precision(kind) if precision == "auto" else precision


class CompiledEncoder:
    """An exported encoder graph compiled for this CPU: ``numpy inputs → numpy output``.

    fp32 and bf16 run in OpenVINO (faster than ONNX Runtime here; fp32 falls back to ONNX Runtime when OpenVINO
    is not installed), int8 in ONNX Runtime (its dynamic quantisation). ``threads`` defaults to torch's
    intra-op thread count, so both paths honour ``torch.set_num_threads``.
    """

    def __init__(self, path: Path, precision: str = "fp32", threads: int | None = None) -> None:
        if precision not in PRECISIONS:
            raise UserError(f"precision {precision!r}: use one of {', '.join(PRECISIONS)}")
        self.precision = precision
        self.threads = threads or torch.get_num_threads()
        self._run: Callable[[dict[str, np.ndarray]], np.ndarray]
        if precision == "int8" or (precision == "fp32" and not has_openvino()):
            self.engine = "onnxruntime"
            self._run, self.input_names = self._onnxruntime(quantized(path) if precision == "int8" else path)
        else:
            self.engine = "openvino"
            self._run, self.input_names = self._openvino(path)

    def _onnxruntime(self, path: Path):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        names = [node.name for node in session.get_inputs()]
        return (lambda inputs: session.run(None, inputs)[0]), names

    def _openvino(self, path: Path):
        if not has_openvino():
            raise UserError(f"precision={self.precision!r} runs in OpenVINO: pip install openvino")
        import openvino

        if self.precision == "bf16" and not cpu_has_bf16():
            raise UserError("this CPU has no bfloat16 units: use precision='fp32'")
        core = openvino.Core()
        compiled = core.compile_model(
            core.read_model(str(path)),
            "CPU",
            {
                "INFERENCE_PRECISION_HINT": "bf16" if self.precision == "bf16" else "f32",
                "INFERENCE_NUM_THREADS": self.threads,
                "PERFORMANCE_HINT": "LATENCY",
            },
        )
        request = compiled.create_infer_request()
        names = [port.any_name for port in compiled.inputs]
        return (lambda inputs: np.array(request.infer(inputs)[0], copy=True)), names

    def __call__(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        return self._run({name: inputs[name] for name in self.input_names})


class ExportedForward:
    """An encoder's forward pass on the CPU fast path: exported on first use (``build`` gives the torch module
    then, and only then), compiled on first call, and called like the torch forward it replaces."""

    def __init__(
        self,
        key: str,
        build: Callable[[], torch.nn.Module],
        input_names: Sequence[str],
        precision: str,
        threads: int | None = None,
    ) -> None:
        if precision not in PRECISIONS:
            raise UserError(f"precision {precision!r}: use one of {', '.join(PRECISIONS)}")
        self.key, self.build, self.input_names = key, build, list(input_names)
        self.precision, self.threads = precision, threads
        self._compiled: CompiledEncoder | None = None

    @property
    def path(self) -> Path:
        return export_folder(self.key) / "model.onnx"

    def compiled(self) -> CompiledEncoder:
        if self._compiled is None:
            if not self.path.is_file():
                log.info("exporting the encoder to %s (once)", self.path)
                export(self.build(), self.input_names, self.path)
            self._compiled = CompiledEncoder(self.path, self.precision, self.threads)
        return self._compiled

    def __call__(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        arrays = {name: tensor.numpy() for name, tensor in inputs.items()}
        return torch.from_numpy(self.compiled()(arrays))

    @property
    def engine(self) -> str:
        return f"{self.compiled().engine}-{self.precision}"


def weight_bytes(folders: Sequence[str | Path | None]) -> int | None:
    """The size of the weight files in ``folders``; None when one of them is not a local folder."""
    total = 0
    for folder in folders:
        if folder is None:
            continue
        if not Path(folder).is_dir():
            return None
        total += sum(p.stat().st_size for p in Path(folder).rglob("*") if p.suffix in (".safetensors", ".bin"))
    return total


def resolve_runtime(runtime: str, device: torch.device, folders: Sequence[str | Path | None]) -> str:
    """``torch`` or ``onnx``: ``auto`` picks the ONNX path on CPUs for local models small enough to export."""
    if runtime not in RUNTIMES:
        raise UserError(f"runtime {runtime!r}: use one of {', '.join(RUNTIMES)}")
    if runtime == "onnx" and device.type != "cpu":
        raise UserError(f"runtime='onnx' is the CPU path: drop it or pass device='cpu' (not {device.type})")
    if runtime == "auto":
        size = weight_bytes(folders)
        return "onnx" if device.type == "cpu" and size is not None and size <= MAX_EXPORT_BYTES else "torch"
    return runtime


def engine_name(precision: str) -> str:
    """What runs a graph in ``precision``: ``openvino-bf16``, ``openvino-fp32``, ``onnxruntime-int8``..."""
    engine = "onnxruntime" if precision == "int8" or (precision == "fp32" and not has_openvino()) else "openvino"
    return f"{engine}-{precision}"
