"""Reward refinement of a pointwise explainer: sample k outputs per prompt, score them, train on the good ones.

``python -m reasonrank.train.reward --config reward.yaml`` with ``method``:

* ``weighted`` (default): reward-weighted SFT. For each prompt the current model (``model`` + ``adapter``) samples
  ``k`` outputs through the transformers backend; each gets reward r; its weight is the advantage
  max(r − mean_k(r), 0), normalised to mean 1 over the kept outputs (outputs at or below their group's mean are
  dropped). The loss is the weighted completion NLL, computed by :class:`WeightedSFTTrainer`. Samples are
  saved as they are drawn (``samples``, default ``OUTPUT.samples.jsonl``) and reused by a rerun with the same
  sampling settings, so a crash or a change of training settings does not sample again.
* ``grpo``: TRL's ``GRPOTrainer`` with the same reward functions (group-relative advantages, KL to the start).

Rewards are pluggable: ``rewards`` lists built-in names (:data:`REWARDS`) or ``module:function`` paths of
``f(completion: str, example: dict, template) -> float``, each with a weight; ``example`` is the teacher record
(``query``, ``passage``, ``label``…).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import re
import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from reasonrank.errors import UserError, command
from reasonrank.train.arguments import check_lora_keys, resume_checkpoint, training_arguments, training_command
from reasonrank.train.config import FILE, MODEL, TRAIN_LOGGING
from reasonrank.train.data import ResumableJsonl, content_words, read_jsonl
from reasonrank.train.sft import (
    chat_token_count,
    check_lengths,
    load_tokenizer,
    lora_config,
    pointwise_examples,
    save_adapter,
)
from reasonrank.weights import check_adapter_template

log = logging.getLogger(__name__)
METHODS = ("weighted", "grpo")
Reward = Callable[[str, dict[str, Any], Any], float]


def _parsed_label(completion: str, template: Any) -> int | None:
    pattern = re.escape(template.setting("marker", "Relevance Label:")) + r"\s*\**\s*(\d+)"
    found = re.findall(pattern, completion, flags=re.IGNORECASE)
    return int(found[0 if template.setting("label_first") else -1]) if found else None


def label_reward(completion: str, example: dict[str, Any], template: Any) -> float:
    """1 for the target label, less by the normalised distance for a wrong one, −1 when no label can be read."""
    labels = [int(label) for label in template.setting("labels", (0, 1, 2))]
    predicted = _parsed_label(completion, template)
    if predicted is None or predicted not in labels:
        return -1.0
    return 1.0 - abs(predicted - int(example["label"])) / (max(labels) - min(labels))


def grounding_reward(completion: str, example: dict[str, Any], template: Any) -> float:
    """How much of the explanation's vocabulary comes from the passage (a quote scores 1); 0 under 5 words.

    Guards against explanations that ignore the document, the failure InteRank's human study flags.
    """
    marker = template.setting("marker", "Relevance Label:")
    explanation = completion.split(marker)[-1 if template.setting("label_first") else 0]
    words = content_words(explanation)
    if len(explanation.split()) < 5 or not words:
        return 0.0
    passage = content_words(str(example.get("passage", "")))
    return min(1.0, 2.0 * len(words & passage) / len(words))


REWARDS: dict[str, Reward] = {"label": label_reward, "grounding": grounding_reward}


def load_reward(name: str) -> Reward:
    if name in REWARDS:
        return REWARDS[name]
    module, sep, function = name.partition(":")
    if not sep:
        raise UserError(f"unknown reward {name!r}: use one of {', '.join(REWARDS)} or module:function")
    try:
        return getattr(importlib.import_module(module), function)
    except (ImportError, AttributeError) as error:
        raise UserError(f"cannot load reward {name!r} ({error}): check the module:function path") from None


@dataclass(frozen=True)
class RewardConfig:
    model: str
    data: str  # teacher JSONL (pointwise: query, passage, label)
    output: str
    adapter: str | None = None  # start from this adapter (usually the SFT one) and keep training it
    # weighted: where the sampled outputs are saved and reused from (default: OUTPUT.samples.jsonl beside the adapter)
    samples: str | None = None
    method: str = "weighted"
    template: str = "pointwise/interank-v1"
    rewards: tuple[dict[str, Any], ...] = ({"name": "label", "weight": 1.0}, {"name": "grounding", "weight": 0.2})
    k: int = 4
    sample_temperature: float = 0.8
    max_new_tokens: int = 128
    max_examples: int | None = None
    lora: dict[str, Any] = field(
        default_factory=lambda: {"r": 16, "lora_alpha": 32, "lora_dropout": 0.05, "target_modules": "all-linear"}
    )
    max_length: int = 512
    max_passage_words: int | None = None  # as in SftConfig: keep prompt + completion within max_length
    epochs: float = 1.0
    max_steps: int = -1
    batch_size: int = 4
    learning_rate: float = 5e-5
    beta: float = 0.04  # grpo: KL weight to the reference
    seed: int = 42
    threads: int = 2
    trainer: dict[str, Any] = field(default_factory=dict)  # any SFTConfig (grpo: GRPOConfig) key, over our choices

    def __post_init__(self) -> None:
        check_lora_keys(self.lora)
        if self.method not in METHODS:
            raise UserError(f"method {self.method!r} is not one of {', '.join(METHODS)}")
        if self.k < 2:
            raise UserError(f"k must be at least 2 (rewards are compared within a prompt's samples), got {self.k}")


def combined_reward(config: RewardConfig, template: Any) -> Callable[[str, dict[str, Any]], float]:
    parts = [(load_reward(str(spec["name"])), float(spec.get("weight", 1.0))) for spec in config.rewards]
    return lambda completion, example: sum(w * f(completion, example, template) for f, w in parts)


def advantage_weights(rewards: Sequence[float]) -> list[float]:
    """max(r − mean, 0) per sample of one prompt (unnormalised; the caller normalises over the dataset)."""
    mean = statistics.fmean(rewards)
    return [max(r - mean, 0.0) for r in rewards]


def _trainable(config: RewardConfig):
    """The model to refine: base + the starting adapter made trainable, or base + a fresh LoRA (peft_config)."""
    from reasonrank.train.sft import load_causal_lm

    model, tokenizer = load_causal_lm(config.model)
    if config.adapter is None:
        return model, tokenizer, lora_config(config.lora)
    from peft import PeftModel

    return PeftModel.from_pretrained(model, config.adapter, is_trainable=True), tokenizer, None


def _arguments(config: RewardConfig):
    from reasonrank.train.sft import SftConfig, sft_arguments

    as_sft = SftConfig(
        model=config.model, data=config.data, output=config.output, lora=config.lora, max_length=config.max_length,
        epochs=config.epochs, max_steps=config.max_steps, batch_size=config.batch_size,
        learning_rate=config.learning_rate, seed=config.seed, trainer=config.trainer,
    )
    return sft_arguments(as_sft, remove_unused_columns=False)


def _weighted_trainer_class():
    from trl import SFTTrainer

    from reasonrank.train.losses import completion_token_nll

    class WeightedSFTTrainer(SFTTrainer):
        """SFT whose loss is Σ_i w_i · NLL_i / n over a micro-batch of n, NLL_i the mean token NLL of completion i."""

        # The loss is a mean over one micro-batch, so Trainer must divide it by the gradient-accumulation steps.
        loss_is_scaled_for_ga = False

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            weights = inputs.pop("weight").float()
            outputs = model(input_ids=inputs["input_ids"], attention_mask=inputs.get("attention_mask"))
            nll, learned = completion_token_nll(outputs.logits, inputs["labels"])
            mask = learned.float()
            per_example = (nll * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1.0)
            # The weights average 1 over the data set (sample_and_weight), so the plain mean over the micro-batch
            # estimates the weighted mean NLL, and micro-batches of equal size accumulate to one large batch's loss.
            loss = (weights * per_example).mean()
            return (loss, outputs) if return_outputs else loss

    return WeightedSFTTrainer


COMPLETION_END_TOKENS = 8  # the stop symbol put back after sampling, and the chat template's end of turn


def check_sampling_room(examples: Sequence[dict[str, Any]], tokenizer: Any, max_length: int, max_new_tokens: int):
    """Refuse before sampling (the slow part) when a prompt plus a full-length sample could exceed ``max_length``."""
    longest = max(chat_token_count(tokenizer, e["prompt"], add_generation_prompt=True) for e in examples)
    needed = longest + max_new_tokens + COMPLETION_END_TOKENS
    if needed > max_length:
        raise UserError(
            f"the longest prompt has {longest} tokens, so a sample of max_new_tokens {max_new_tokens} can reach "
            f"{needed} > max_length {max_length}: raise max_length to {needed} or lower max_passage_words or "
            "max_new_tokens"
        )


SAMPLING_CHUNK = 16  # prompts per generate call: each chunk's samples are saved before the next starts


def sampling_settings(config: RewardConfig) -> dict[str, Any]:
    """What the samples depend on besides the prompts: a saved sample made under other settings is not reused."""
    keys = ("model", "adapter", "template", "k", "sample_temperature", "max_new_tokens", "max_passage_words", "seed")
    return {key: getattr(config, key) for key in keys}


def sample_outputs(config: RewardConfig, examples: Sequence[dict[str, Any]], template: Any) -> list[list[str]]:
    """``k`` sampled completions per example, saved to ``samples_path(config)`` chunk by chunk.

    Sampling is the slow part of the refinement (minutes per hundred prompts on a CPU), so a rerun (after a crash, or
    with other training settings) reads the samples already saved and samples only the rest.
    """
    from reasonrank.backends.base import ChatPrompt, GenerationParams
    from reasonrank.backends.transformers import TransformersBackend

    settings = sampling_settings(config)
    store = ResumableJsonl(samples_path(config), ("index",))
    saved = {int(r["index"]): r for r in read_jsonl(store.path)} if store.path.exists() else {}
    digests = [_prompt_digest(e) for e in examples]
    stale = [i for i, r in saved.items() if r.get("settings") != settings or i >= len(examples)
             or r.get("prompt_sha1") != digests[i]]
    if stale:
        raise UserError(
            f"{store.path} holds {len(stale)} samples made from other settings or prompts: delete it, or set "
            "`samples` to a new file"
        )
    pending = [i for i in range(len(examples)) if i not in saved]
    if pending:
        stop = tuple(template.setting("stop", ()))
        params = GenerationParams(max_new_tokens=config.max_new_tokens, temperature=config.sample_temperature,
                                  stop=stop, seed=config.seed)
        backend = TransformersBackend(config.model, adapter=config.adapter, progress=False)
        for start in tqdm(range(0, len(pending), SAMPLING_CHUNK), desc="sample", unit="chunk"):
            chunk = pending[start : start + SAMPLING_CHUNK]
            prompts = [ChatPrompt(tuple(examples[i]["prompt"])) for i in chunk for _ in range(config.k)]
            texts = [g.text.strip() for g in backend.generate(prompts, params)]
            records = [{"index": i, "prompt_sha1": digests[i], "settings": settings,
                        "samples": texts[n * config.k : (n + 1) * config.k]} for n, i in enumerate(chunk)]
            store.write(records)
            saved.update({r["index"]: r for r in records})
        backend.close()
    return [saved[i]["samples"] for i in range(len(examples))]


def samples_path(config: RewardConfig) -> Path:
    output = Path(config.output)
    return Path(config.samples) if config.samples else output.parent / f"{output.name}.samples.jsonl"


def _prompt_digest(example: dict[str, Any]) -> str:
    return hashlib.sha1(json.dumps(example["prompt"], sort_keys=True).encode("utf-8")).hexdigest()


def sample_and_weight(config: RewardConfig, examples: list[dict[str, Any]], records: list[dict[str, Any]]):
    """k samples per prompt from the current model, their rewards, and the weighted examples to train on."""
    from reasonrank.prompts import load_template

    template = load_template(config.template)
    reward = combined_reward(config, template)
    stop = tuple(template.setting("stop", ()))
    weighted, all_rewards = [], []
    samples = sample_outputs(config, examples, template)
    for example, record, texts in zip(examples, records, samples, strict=True):
        # The stop symbol is cut off by the backend; put it back so the model learns to end its answer.
        texts = [t + stop[0] if stop and _parsed_label(t, template) is not None and not t.endswith(stop[0]) else t
                 for t in texts]
        rewards = [reward(t, record) for t in texts]
        all_rewards.extend(rewards)
        for text, weight in zip(texts, advantage_weights(rewards), strict=True):
            if weight > 0:
                weighted.append({"prompt": example["prompt"], "completion": [{"role": "assistant", "content": text}],
                                 "weight": weight})
    if not weighted:
        raise UserError("every sample of every prompt got the same reward: raise k or sample_temperature")
    mean_weight = statistics.fmean(w["weight"] for w in weighted)
    for item in weighted:
        item["weight"] /= mean_weight
    log.info("mean reward %.3f over %d samples; %d kept for training", statistics.fmean(all_rewards),
             len(all_rewards), len(weighted))
    return weighted


def refine(config: RewardConfig, resume: bool = False):
    import torch

    from reasonrank.prompts import load_template

    torch.set_num_threads(config.threads)
    template = load_template(config.template)
    check_adapter_template(config.adapter, template.id)
    records = list(read_jsonl(config.data))[: config.max_examples]
    if not records:
        raise UserError(f"{config.data} holds no records: run reasonrank.train.teacher --mode pointwise first")
    examples = pointwise_examples(records, template, config.max_passage_words)
    if config.method == "grpo":
        trainer = _grpo_trainer(config, examples, records, template)
        checkpoint = resume_checkpoint(trainer.args, resume)
    else:
        args = _arguments(config)  # checked (and the checkpoint found) before sampling, the slow part
        checkpoint = resume_checkpoint(args, resume)
        trainer = _weighted_trainer(config, examples, records, args)
    trainer.train(resume_from_checkpoint=checkpoint)
    settings = {"step": f"reward/{config.method}", "template": config.template, "config": asdict(config)}
    return save_adapter(trainer, config.output, config.model, settings)


def _weighted_trainer(config: RewardConfig, examples, records, args):
    import torch
    from datasets import Dataset

    check_sampling_room(examples, load_tokenizer(config.model), config.max_length, config.max_new_tokens)
    weighted = sample_and_weight(config, examples, records)
    model, tokenizer, peft_config = _trainable(config)
    check_lengths(weighted, tokenizer, config.max_length)
    trainer = _weighted_trainer_class()(
        model=model, args=args, train_dataset=Dataset.from_list(weighted), processing_class=tokenizer,
        peft_config=peft_config,
    )
    collate = trainer.data_collator
    trainer.data_collator = lambda batch: {**collate(batch), "weight": torch.tensor([item["weight"] for item in batch])}
    return trainer


def _grpo_trainer(config: RewardConfig, examples, records, template):
    import torch
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    reward = combined_reward(config, template)
    keys = ("query", "passage", "label")

    def relevance_reward(prompts, completions, **columns):
        texts = [c[-1]["content"] if isinstance(c, list) else str(c) for c in completions]
        rows = [{k: columns[k][i] for k in keys} for i in range(len(texts))]
        return [reward(text, row) for text, row in zip(texts, rows, strict=True)]

    dataset = Dataset.from_list([
        {"prompt": e["prompt"], **{k: r[k] for k in keys}} for e, r in zip(examples, records, strict=True)
    ])
    model, tokenizer, peft_config = _trainable(config)
    args = training_arguments(GRPOConfig, {
        "output_dir": f"{config.output}/checkpoints",
        "per_device_train_batch_size": max(config.batch_size, config.k),
        "num_generations": config.k,
        "max_completion_length": config.max_new_tokens,
        "temperature": config.sample_temperature,
        "learning_rate": config.learning_rate,
        "beta": config.beta,
        "num_train_epochs": config.epochs,
        "max_steps": config.max_steps,
        "logging_steps": 10,
        "save_strategy": "no",
        "report_to": [],
        "seed": config.seed,
        "bf16": torch.cuda.is_available() and torch.cuda.is_bf16_supported(),
    }, config.trainer)
    return GRPOTrainer(model=model, reward_funcs=[relevance_reward], args=args, train_dataset=dataset,
                       processing_class=tokenizer, peft_config=peft_config)


build_parser, run = training_command(
    "python -m reasonrank.train.reward",
    "Reward refinement: reward-weighted SFT or GRPO on sampled explanations.",
    RewardConfig,
    refine,
    reads={"model": MODEL, "data": FILE, "adapter": FILE},
    writes=lambda config: [("output", config.output), ("samples", samples_path(config))],
)
main = command(build_parser, run, **TRAIN_LOGGING)


if __name__ == "__main__":
    raise SystemExit(main())
