"""Loading rerankers: the FAMILIES table, and a name, hub id or folder resolved to a built reranker.

A *family* is a module-level ``build(model: str, **options) -> Reranker`` function, imported only
when used (so a missing optional dependency never breaks the others). The named checkpoints (specs) live in
:mod:`reasonrank.rerank.catalog`.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from reasonrank.backends import check_backend_options
from reasonrank.errors import UserError
from reasonrank.options import check_options, parameters
from reasonrank.rerank.base import Reranker
from reasonrank.rerank.catalog import SPECS, ModelSpec

# family -> "module:callable"; each callable takes (model, **options) and returns a Reranker (a build function, or
# the reranker class itself). Its named parameters are the family's options; a build function that passes the rest
# to a generative backend names it with a ``backend`` parameter, and the backend's own options are valid too.
FAMILIES: dict[str, str] = {
    "cross-encoder": "reasonrank.rerank.encoder:CrossEncoderReranker",
    "bi-encoder": "reasonrank.rerank.encoder:BiEncoderReranker",
    "pointwise": "reasonrank.rerank.pointwise:build_pointwise",
    "rank1": "reasonrank.rerank.pointwise:build_rank1",
    "listwise": "reasonrank.rerank.listwise:build_listwise",
    "pairwise": "reasonrank.rerank.pairwise:build_pairwise",
    "fusion": "reasonrank.rerank.fusion:build_fusion",
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


def family_builder(family: str) -> Callable[..., Reranker]:
    if family not in FAMILIES:
        raise UserError(f"unknown reranker family {family!r}: use one of {', '.join(sorted(FAMILIES))}")
    module_name, attribute = FAMILIES[family].split(":")
    return getattr(importlib.import_module(module_name), attribute)


def check_reranker_options(build: Callable[..., Reranker], options: dict[str, Any], what: str) -> None:
    """Every option a name ``build`` (or the backend it passes the rest to) takes, of the right type, on a device
    that exists. Options ``build`` passes on to another reranker (fusion) are checked when that one is built."""
    named, open_ended = parameters(build, skip=("model",))
    backend = options.get("backend", named["backend"].default) if "backend" in named else None
    if not open_ended:
        check_options(options, (build,), what)
    elif isinstance(backend, str):
        check_backend_options(backend, {k: v for k, v in options.items() if k != "backend"}, (build,), what)
    else:
        check_options({k: v for k, v in options.items() if k in named}, (build,), what)


def load_reranker(name_or_path: str, family: str | None = None, **options: Any) -> Reranker:
    """Build a reranker by registry name, hub id or local path; ``options`` override the spec's.

    Options are checked before anything loads: an unknown name, an ill-typed value or an impossible device is one
    :class:`UserError` line naming the valid options. A reranker whose name is derived from its parts (fusion,
    cascade) keeps it; any other is named after the spec.
    """
    spec = resolve(name_or_path, family)
    build = family_builder(spec.family)
    merged = {**spec.options, **options}
    check_reranker_options(build, merged, f"{spec.name} ({spec.family})")
    reranker = build(spec.model, **merged)
    if not reranker.names_itself:
        reranker.name = spec.name
    return reranker
