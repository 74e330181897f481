"""Reward refinement of a pointwise explainer: sample k outputs per prompt, score them, train on the good ones.

``python -m reasonrank.train.reward --config reward.yaml`` with ``method``:

* ``weighted`` (default): reward-weighted SFT. For each prompt the current model (``model`` + ``adapter``) samples
  ``k`` outputs through the transformers backend; each gets reward r; its weight is the advantage
  max(r − mean_k(r), 0), normalised to mean 1 over the kept outputs (outputs at or below their group's mean are
  dropped). The loss is the weighted completion NLL, computed by :class:`WeightedSFTTrainer`. Samples are
  saved as they are drawn (``samples``, default ``OUTPUT.samples.jsonl``) and reused by a rerun with the same
  sampling settings, so a crash or a change of training settings does not sample again.
* ``grpo``: TRL's ``GRPOTrainer`` with the same reward functions (group-relative advantages, KL to the start).
* ``interank``: InteRank's refinement as its code does it (:mod:`reasonrank.train.preference`): the teacher's answer
  joins the ``k`` samples, a judge scores all, scores are min-max normalised per prompt, kept from ``min_reward``,
  boosted by the share of sampled labels that miss the teacher's, and each kept answer's NLL is weighted by the
  reward cubed.
* ``dpo``: InteRank's preference pairs (best- against worst-scored answer of each prompt, the teacher's included)
  optimised by TRL's ``DPOTrainer`` (the reference builds the pairs and ships no trainer for them).

Rewards are pluggable: ``rewards`` lists built-in names (:data:`REWARDS`, plus ``rubric``: the ``judge`` backend
rates every answer with InteRank's 5-point rubric, all in one call, and ``reward-model``: the ``reward_model``
sequence classifier scores each answer, as InteRank's released pipeline does) or ``module:function`` paths of
``f(completion: str, example: dict, template) -> float``, each with a weight; ``example`` is the teacher record
(``query``, ``passage``, ``label``…). Samples are drawn by ``sampler`` (``auto``: vLLM where it is installed and a
GPU is present, else transformers), every pending prompt of a chunk in one call.
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
from reasonrank.train.arguments import (
    check_lora_keys,
    resume_checkpoint,
    run_defaults,
    training_arguments,
    training_command,
    training_device,
)
from reasonrank.train.config import FILE, MODEL, TRAIN_LOGGING
from reasonrank.train.data import ResumableJsonl, content_words, read_jsonl
from reasonrank.train.preference import (
    JUDGE_TEMPLATE,
    REWARD_MODEL_KEYS,
    RewardModel,
    ScoredAnswer,
    preference_pair,
    reference_rewards,
    rubric_scores,
)
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
METHODS = ("weighted", "grpo", "interank", "dpo")
SAMPLERS = ("auto", "transformers", "vllm")
JUDGED = "rubric"  # the reward the judge backend gives, batched over every answer
CLASSIFIED = "reward-model"  # the reward the reward_model sequence classifier gives, in its own batches
Reward = Callable[[str, dict[str, Any], Any], float]


def label_pattern(template: Any) -> re.Pattern[str]:
    """The template's marker and the label digits after it (``Relevance Label: 2``, ``Relevance Label: **2``)."""
    return re.compile(re.escape(template.setting("marker", "Relevance Label:")) + r"\s*\**\s*(\d+)", re.IGNORECASE)


def parsed_label(completion: str, template: Any) -> int | None:
    """The label a pointwise answer states after the template's marker (its first with ``label_first``)."""
    found = label_pattern(template).findall(completion)
    return int(found[0 if template.setting("label_first") else -1]) if found else None


def label_reward(completion: str, example: dict[str, Any], template: Any) -> float:
    """1 for the target label, less by the normalised distance for a wrong one, −1 when no label can be read."""
    labels = [int(label) for label in template.setting("labels", (0, 1, 2))]
    predicted = parsed_label(completion, template)
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
DEFAULT_REWARDS = {
    "weighted": ({"name": "label", "weight": 1.0}, {"name": "grounding", "weight": 0.2}),
    "interank": ({"name": JUDGED, "weight": 1.0},),
}
DEFAULT_BETA = {"grpo": 0.04, "dpo": 0.1}  # TRL's defaults: GRPO's KL weight, DPO's beta


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
    # None: label + 0.2 grounding for weighted and grpo, the judge's rubric for interank and dpo
    rewards: tuple[dict[str, Any], ...] | None = None
    judge: dict[str, Any] | None = None  # the rubric's judge: {backend: KIND, model: NAME, options: {...}}
    # the reward-model reward's classifier: {model: NAME, batch_size: 2, dtype: float16, device: cuda, template: ID}
    reward_model: dict[str, Any] | None = None
    judge_template: str = JUDGE_TEMPLATE
    min_reward: float = 0.85  # interank: normalised rewards below this are dropped (score_outputs.py's default)
    boosted: bool = True  # interank: rewards times the prompt's misclassification share (the reference's only path)
    sampler: str = "auto"
    sampler_options: dict[str, Any] = field(default_factory=dict)  # the sampling backend's options (batch_size…)
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
    beta: float | None = None  # grpo: KL weight to the start (0.04); dpo: DPO's beta (0.1)
    seed: int = 42
    threads: int = 2
    trainer: dict[str, Any] = field(default_factory=dict)  # any SFTConfig (grpo: GRPOConfig) key, over our choices

    def __post_init__(self) -> None:
        check_lora_keys(self.lora)
        if self.method not in METHODS:
            raise UserError(f"method {self.method!r} is not one of {', '.join(METHODS)}")
        if self.k < 2:
            raise UserError(f"k must be at least 2 (rewards are compared within a prompt's samples), got {self.k}")
        if self.sampler not in SAMPLERS:
            raise UserError(f"sampler {self.sampler!r} is not one of {', '.join(SAMPLERS)}")
        if any(spec.get("name") == JUDGED for spec in self.reward_specs()):
            self._check_judge()
        if any(spec.get("name") == CLASSIFIED for spec in self.reward_specs()):
            self._check_reward_model()

    def reward_specs(self) -> tuple[dict[str, Any], ...]:
        if self.rewards is not None:
            return self.rewards
        return DEFAULT_REWARDS["interank" if self.method in ("interank", "dpo") else "weighted"]

    def kl_beta(self) -> float:
        return self.beta if self.beta is not None else DEFAULT_BETA.get(self.method, 0.0)

    def _check_reward_model(self) -> None:
        settings = self.reward_model or {}
        if not settings.get("model") or set(settings) - REWARD_MODEL_KEYS:
            raise UserError(
                f"the {CLASSIFIED} reward needs reward_model: {{model: NAME}} with optional "
                f"{', '.join(sorted(REWARD_MODEL_KEYS - {'model'}))}, got {self.reward_model!r}"
            )

    def _check_judge(self) -> None:
        from reasonrank.backends import check_backend_options

        judge = self.judge or {}
        if not judge.get("backend") or not judge.get("model") or set(judge) - {"backend", "model", "options"}:
            raise UserError(
                f"the {JUDGED} reward needs judge: {{backend: transformers|vllm|openai, model: NAME, options: {{}}}}"
                f", got {self.judge!r}"
            )
        check_backend_options(str(judge["backend"]), dict(judge.get("options") or {}), what="the judge")


class RewardScorer:
    """The configured rewards' weighted sum for a batch of answers: per-answer rewards one by one, the judge's
    rubric over the whole batch in one backend call (the judge loads on first use and stays loaded), the reward
    model's scores in its batches."""

    def __init__(self, config: RewardConfig, template: Any):
        from reasonrank.prompts import load_template
        from reasonrank.rerank.generation import LazyBackend

        self.template = template
        self.parts = [(str(spec["name"]), float(spec.get("weight", 1.0))) for spec in config.reward_specs()]
        self.functions = {name: load_reward(name) for name, _ in self.parts if name not in (JUDGED, CLASSIFIED)}
        judge = config.judge or {}
        self.judge = LazyBackend(judge["backend"], judge["model"], dict(judge.get("options") or {})) if any(
            name == JUDGED for name, _ in self.parts) else None
        self.judge_template = load_template(config.judge_template) if self.judge else None
        self.reward_model_settings = dict(config.reward_model or {})
        self.reward_model: RewardModel | None = None

    def __call__(self, completions: Sequence[str], records: Sequence[dict[str, Any]]) -> list[float]:
        totals = [0.0] * len(completions)
        for name, weight in self.parts:
            if name == JUDGED:
                values = rubric_scores(self.judge.get(), self.judge_template, self.template, completions, records)
            elif name == CLASSIFIED:
                if self.reward_model is None:
                    self.reward_model = RewardModel(**self.reward_model_settings)
                values = self.reward_model(self.template, completions, records)
            else:
                values = [self.functions[name](c, r, self.template) for c, r in zip(completions, records, strict=True)]
            totals = [total + weight * value for total, value in zip(totals, values, strict=True)]
        return totals

    def close(self) -> None:
        if self.judge is not None:
            self.judge.close()
        if self.reward_model is not None:
            self.reward_model.close()
            self.reward_model = None


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
            # weighted: the weights average 1 over the data set (sample_and_weight), so the plain mean over the
            # micro-batch estimates the weighted mean NLL; interank: the weights are r³ as they are, the reference's
            # mean of r³·NLL. Micro-batches of equal size accumulate to one large batch's loss either way.
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
        backend = sampling_backend(config)
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


def sampling_backend(config: RewardConfig):
    """The current model (base + adapter) on the configured sampler; ``auto`` is vLLM where it can run."""
    import importlib.util

    import torch

    from reasonrank.backends import load_backend

    kind = config.sampler
    if kind == "auto":
        kind = "vllm" if importlib.util.find_spec("vllm") and torch.cuda.is_available() else "transformers"
    return load_backend(kind, config.model, **{"adapter": config.adapter, **config.sampler_options})


def samples_path(config: RewardConfig) -> Path:
    output = Path(config.output)
    return Path(config.samples) if config.samples else output.parent / f"{output.name}.samples.jsonl"


def _prompt_digest(example: dict[str, Any]) -> str:
    return hashlib.sha1(json.dumps(example["prompt"], sort_keys=True).encode("utf-8")).hexdigest()


def sample_and_weight(config: RewardConfig, examples: list[dict[str, Any]], records: list[dict[str, Any]],
                      template: Any) -> list[dict[str, Any]]:
    """k samples per prompt from the current model, their rewards, and the weighted examples to train on."""
    weighted, all_rewards = [], []
    for example, answers in zip(examples, scored_answers(config, examples, records, template), strict=True):
        rewards = [answer.score for answer in answers]
        all_rewards.extend(rewards)
        for text, weight in zip((a.text for a in answers), advantage_weights(rewards), strict=True):
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


def scored_answers(config: RewardConfig, examples: list[dict[str, Any]], records: list[dict[str, Any]], template: Any,
                   with_teacher: bool = False) -> list[list[ScoredAnswer]]:
    """Each prompt's ``k`` samples (and, ``with_teacher``, the teacher's answer last), scored in one batch."""
    stop = tuple(template.setting("stop", ()))
    groups = []
    for example, texts in zip(examples, sample_outputs(config, examples, template), strict=True):
        # The stop symbol is cut off by the backend; put it back so the model learns to end its answer.
        texts = [t + stop[0] if stop and parsed_label(t, template) is not None and not t.endswith(stop[0]) else t
                 for t in texts]
        groups.append(texts + ([example["completion"][0]["content"]] if with_teacher else []))
    flat_texts = [text for texts in groups for text in texts]
    flat_records = [record for record, texts in zip(records, groups, strict=True) for _ in texts]
    scorer = RewardScorer(config, template)
    scores = iter(scorer(flat_texts, flat_records))
    scorer.close()
    return [[ScoredAnswer(t, parsed_label(t, template), next(scores)) for t in texts] for texts in groups]


def reference_weighted(config: RewardConfig, examples, records, template) -> list[dict[str, Any]]:
    """interank: every answer the reference keeps, weighted by its reward cubed (RewardWeightedSFTTrainer's r³)."""
    weighted = []
    groups = scored_answers(config, examples, records, template, with_teacher=True)
    for example, record, answers in zip(examples, records, groups, strict=True):
        rewards = reference_rewards(answers, int(record["label"]), config.min_reward, config.boosted)
        weighted.extend(
            {"prompt": example["prompt"], "completion": [{"role": "assistant", "content": answer.text}],
             "weight": reward**3}
            for answer, reward in zip(answers, rewards, strict=True) if reward is not None
        )
    if not weighted:
        raise UserError("no answer kept: every prompt's samples agree with the teacher's label (boosted rewards "
                        "are 0) or score alike; lower min_reward, set boosted: false, or raise k")
    log.info("%d answers kept of %d prompts", len(weighted), len(examples))
    return weighted


def preference_examples(config: RewardConfig, examples, records, template) -> list[dict[str, Any]]:
    """dpo: one (chosen, rejected) pair per prompt whose best and worst answers differ."""
    pairs = []
    groups = scored_answers(config, examples, records, template, with_teacher=True)
    for example, answers in zip(examples, groups, strict=True):
        pair = preference_pair(answers)
        if pair is not None:
            chosen, rejected = pair
            pairs.append({"prompt": example["prompt"], "chosen": [{"role": "assistant", "content": chosen.text}],
                          "rejected": [{"role": "assistant", "content": rejected.text}]})
    if not pairs:
        raise UserError("every prompt's answers scored alike, so no preference pair formed: raise k or "
                        "sample_temperature")
    log.info("%d preference pairs of %d prompts", len(pairs), len(examples))
    return pairs


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
        # Checked (and the checkpoint found) before sampling, the slow part.
        args = _dpo_arguments(config) if config.method == "dpo" else _arguments(config)
        checkpoint = resume_checkpoint(args, resume)
        check_sampling_room(examples, load_tokenizer(config.model), config.max_length, config.max_new_tokens)
        build = {"dpo": preference_examples, "interank": reference_weighted}.get(config.method, sample_and_weight)
        data = _on_main_process(args, lambda: build(config, examples, records, template))
        trainer = (_dpo_trainer if config.method == "dpo" else _weighted_trainer)(config, data, args)
    trainer.train(resume_from_checkpoint=checkpoint)
    _drop_reference_adapter(trainer.model)
    settings = {"step": f"reward/{config.method}", "template": config.template, "config": asdict(config)}
    return save_adapter(trainer, config.output, config.model, settings)


def _on_main_process(args: Any, build: Callable[[], list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """``build()`` run by the main process alone and its result sent to the others.

    Under ``accelerate launch`` this keeps sampling, the judge and the reward model to one process (a judge loaded
    by every process would load once per GPU) and writes the samples file once.
    """
    from accelerate import PartialState
    from accelerate.utils import broadcast_object_list

    training_device(args)  # sets up the processes' group as the trainer will
    state = PartialState()
    if state.num_processes == 1:
        return build()
    result = [build() if state.is_main_process else None]
    broadcast_object_list(result, from_process=0)
    return result[0]


def _weighted_trainer(config: RewardConfig, weighted: list[dict[str, Any]], args):
    import torch
    from datasets import Dataset

    model, tokenizer, peft_config = _trainable(config)
    check_lengths(weighted, tokenizer, config.max_length)
    trainer = _weighted_trainer_class()(
        model=model, args=args, train_dataset=Dataset.from_list(weighted), processing_class=tokenizer,
        peft_config=peft_config,
    )
    collate = trainer.data_collator
    trainer.data_collator = lambda batch: {**collate(batch), "weight": torch.tensor([item["weight"] for item in batch])}
    return trainer


def _dpo_arguments(config: RewardConfig):
    from trl import DPOConfig

    return training_arguments(DPOConfig, {
        "output_dir": f"{config.output}/checkpoints",
        "per_device_train_batch_size": config.batch_size,
        "learning_rate": config.learning_rate,
        "beta": config.kl_beta(),
        "max_length": config.max_length,
        "num_train_epochs": config.epochs,
        "max_steps": config.max_steps,
        **run_defaults(config.seed, bf16=True),
    }, config.trainer)


def _dpo_trainer(config: RewardConfig, pairs: list[dict[str, Any]], args):
    """TRL's DPOTrainer; started from an adapter, TRL keeps a frozen copy of it as the reference policy."""
    from datasets import Dataset
    from trl import DPOTrainer

    model, tokenizer, peft_config = _trainable(config)
    for pair in pairs:
        for side in ("chosen", "rejected"):
            check_lengths([{"prompt": pair["prompt"], "completion": pair[side]}], tokenizer, config.max_length)
    return DPOTrainer(model=model, args=args, train_dataset=Dataset.from_list(pairs), processing_class=tokenizer,
                      peft_config=peft_config)


def _drop_reference_adapter(model: Any) -> None:
    """DPO's frozen reference copy of the starting adapter ("ref") is not part of the trained student."""
    if "ref" in getattr(model, "peft_config", {}):
        model.delete_adapter("ref")


def _grpo_trainer(config: RewardConfig, examples, records, template):
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    scorer = RewardScorer(config, template)
    keys = ("query", "passage", "label")

    def relevance_reward(prompts, completions, **columns):
        """Every completion of the step's batch scored at once (the judge's rubric in one call)."""
        texts = [c[-1]["content"] if isinstance(c, list) else str(c) for c in completions]
        return scorer(texts, [{k: columns[k][i] for k in keys} for i in range(len(texts))])

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
        "beta": config.kl_beta(),
        "num_train_epochs": config.epochs,
        "max_steps": config.max_steps,
        **run_defaults(config.seed, bf16=True),
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
