"""Loading rerankers: the FAMILIES table, and a name, hub id or folder resolved to a built reranker.

A *family* is a module-level ``build(model: str, **options) -> Reranker`` function, imported only
when used (so a missing optional dependency never breaks the others). The named checkpoints (specs) live in
:mod:`reasonrank.rerank.catalog`.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

from reasonrank.errors import UserError
from reasonrank.rerank.base import Reranker
from reasonrank.rerank.catalog import SPECS, ModelSpec

# family -> "module:function"; each function takes (model, **options) and returns a Reranker.
FAMILIES: dict[str, str] = {
    "cross-encoder": "reasonrank.rerank.encoder:build_cross_encoder",
    "bi-encoder": "reasonrank.rerank.encoder:build_bi_encoder",
    "pointwise": "reasonrank.rerank.pointwise:build_pointwise",
    "rank1": "reasonrank.rerank.pointwise:build_rank1",
    "listwise": "reasonrank.rerank.listwise:build_listwise",
    "pairwise": "reasonrank.rerank.pairwise:build_pairwise",
    "fusion": "reasonrank.rerank.fusion:build_fusion",
    "maxp": "reasonrank.rerank.evidence:build_maxp",
}


def _guess_family(path: Path) -> str:
    """Family of a local checkpoint from its config: classifiers are cross-encoders, sentence-transformers
    folders and feature-extraction adapters are bi-encoders, others generate."""
    adapter = path / "adapter_config.json"
    if adapter.is_file():
        task = json.loads(adapter.read_text()).get("task_type", "")
        return {"SEQ_CLS": "cross-encoder", "FEATURE_EXTRACTION": "bi-encoder"}.get(task, "pointwise")
    if (path / "modules.json").is_file():
        return "bi-encoder"
    config = path / "config.json"
    if config.is_file():
        architectures = json.loads(config.read_text()).get("architectures") or [""]
        return "cross-encoder" if architectures[0].endswith("ForSequenceClassification") else "pointwise"
    raise UserError(f"{path} holds neither config.json nor adapter_config.json: pass a model folder or a registry name")


def resolve(name_or_path: str, family: str | None = None) -> ModelSpec:
    """The spec for a registry name, a hub id of a registered checkpoint, or a local model folder."""
    if name_or_path in SPECS:
        spec = SPECS[name_or_path]
        if family in (None, spec.family):
            return spec
        return ModelSpec(spec.name, family, spec.model, spec.description, spec.options)
    for spec in SPECS.values():
        # A spec whose model is a base for an adapter (e.g. DeAR's listwise LoRA on Llama) is not that base model.
        if spec.model == name_or_path and family in (None, spec.family) and "adapter" not in spec.options:
            return spec
    path = Path(name_or_path).expanduser()
    if path.exists():
        return ModelSpec(path.name, family or _guess_family(path), str(path), f"local model {path}")
    if family is not None:
        return ModelSpec(name_or_path, family, name_or_path, f"{family} reranker on {name_or_path}")
    raise UserError(
        f"unknown reranker {name_or_path!r}: use one of {', '.join(sorted(SPECS))}, a local model folder, "
        "or a hub id together with a family (e.g. --reranker-family pointwise)"
    )


def load_reranker(name_or_path: str, family: str | None = None, **options: Any) -> Reranker:
    """Build a reranker by registry name, hub id or local path; ``options`` override the spec's."""
    spec = resolve(name_or_path, family)
    if spec.family not in FAMILIES:
        raise UserError(f"unknown reranker family {spec.family!r}: use one of {', '.join(sorted(FAMILIES))}")
    module_name, function_name = FAMILIES[spec.family].split(":")
    build = getattr(importlib.import_module(module_name), function_name)
    reranker = build(spec.model, **{**spec.options, **options})
    reranker.name = spec.name
    return reranker
