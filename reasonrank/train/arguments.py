"""How a training command's settings become transformers/TRL arguments, and how a run resumes.

Every trainer (distill, sft, reward) builds its ``TrainingArguments`` (or TRL's ``SFTConfig``/``GRPOConfig``) here:
the package's choices are defaults, and the config's ``trainer:`` mapping overrides any of them with any key the
arguments class takes (``save_strategy``, ``report_to``, ``optim``, ``deepspeed``, ``fsdp``…). A key the class does
not take is one error naming it.

``--resume`` continues from the newest complete ``checkpoint-N`` under the run's checkpoint folder: Trainer restores
the weights, optimizer, scheduler, RNG states and skips the batches already seen.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from reasonrank.errors import UserError
from reasonrank.train.config import ConfigRun, config_command

A = TypeVar("A")
C = TypeVar("C")
CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
# Trainer writes a checkpoint's trainer_state.json after its weights, optimizer and RNG states, and not atomically: a
# checkpoint without it, or with it cut short, was cut off mid-write (a killed run) and is not resumed from.
COMPLETE_MARKER = "trainer_state.json"


def check_keys(cls: type, settings: Mapping[str, Any], section: str, examples: str) -> None:
    """One error line for keys of the config's ``section:`` mapping that the dataclass ``cls`` does not take."""
    known = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise UserError(
            f"{section}: unknown key(s) {', '.join(unknown)}: `{section}:` takes {cls.__name__} settings "
            f"(e.g. {examples}); fix or remove them"
        )


def check_lora_keys(settings: Mapping[str, Any] | None) -> None:
    """The ``lora:`` mapping, checked when the config is read (before any model loads) against peft's LoraConfig."""
    if settings:
        from peft import LoraConfig

        check_keys(LoraConfig, settings, "lora", "r, lora_alpha, lora_dropout, target_modules")


def training_arguments(cls: type[A], defaults: Mapping[str, Any], trainer: Mapping[str, Any]) -> A:
    """``cls(**defaults)`` with ``trainer`` (the config's ``trainer:`` mapping) overriding any key."""
    check_keys(cls, trainer, "trainer", "save_strategy, save_steps, report_to, logging_steps, optim")
    try:
        return cls(**{**machine_defaults(), **defaults, **trainer})
    except (TypeError, ValueError) as error:
        raise UserError(f"trainer: {str(error).strip().splitlines()[0]}: fix the `trainer:` settings") from None


def run_defaults(seed: int, bf16: bool = False) -> dict[str, Any]:
    """What every training command starts from: logs every 10 steps, no checkpoints and no log writers unless
    ``trainer:`` asks, the config's seed; with ``bf16``, bfloat16 where a GPU supports it (TRL defaults to bf16,
    which CPUs reject)."""
    import torch

    defaults: dict[str, Any] = {"logging_steps": 10, "save_strategy": "no", "report_to": [], "seed": seed}
    if bf16:
        defaults["bf16"] = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return defaults


def launched_processes() -> int:
    """How many processes ``accelerate launch``/torchrun started for this run (``WORLD_SIZE``); 1 for a plain run."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def machine_defaults() -> dict[str, Any]:
    """``use_cpu`` for a multi-process launch on a machine without CUDA: accelerate joins CPU processes (DDP over
    gloo) only when told to use the CPU, and without it each process would train alone on all the data."""
    import torch

    return {"use_cpu": True} if launched_processes() > 1 and not torch.cuda.is_available() else {}


def training_device(arguments: Any) -> str:
    """This process's device as Trainer sets it up: ``cuda:LOCAL_RANK`` under ``accelerate launch``/torchrun, else
    cuda or cpu."""
    return str(arguments.device)


def last_checkpoint(folder: str | Path) -> Path | None:
    """The complete ``checkpoint-N`` with the highest N in ``folder``, or None."""
    folder = Path(folder)
    found = [
        (int(match.group(1)), path)
        for path in (folder.iterdir() if folder.is_dir() else ())
        if (match := CHECKPOINT.match(path.name)) and _complete(path)
    ]
    return max(found)[1] if found else None


def _complete(checkpoint: Path) -> bool:
    try:
        json.loads((checkpoint / COMPLETE_MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return True


def resume_checkpoint(arguments: Any, resume: bool) -> str | None:
    """The checkpoint ``trainer.train(resume_from_checkpoint=…)`` continues from: None unless ``resume``."""
    if not resume:
        return None
    checkpoint = last_checkpoint(arguments.output_dir)
    if checkpoint is None:
        raise UserError(
            f"--resume: no complete checkpoint-N in {arguments.output_dir}: run without --resume, with "
            "`trainer: {save_strategy: steps, save_steps: N}` so that checkpoints are written"
        )
    return str(checkpoint)


@dataclasses.dataclass(frozen=True)
class TrainingRun(ConfigRun[C]):
    """The ``run(args)`` of a training command: the checks of :class:`ConfigRun`, then ``step(config, resume=…)``."""

    def __call__(self, args: argparse.Namespace) -> int:
        self.step(self.prepare(args), resume=args.resume)
        return 0


def training_command(
    prog: str,
    description: str,
    cls: type[C],
    step: Callable[..., Any],
    reads: Mapping[str, str],
    writes: Callable[[C], Iterable[tuple[str, Any]]] | None = None,
) -> tuple[Callable[[], argparse.ArgumentParser], TrainingRun[C]]:
    """A training command's ``build_parser`` and ``run``: ``--config FILE [--set K=V …] [--resume]``, every setting and
    path checked as :func:`config_command` does, then ``step(config, resume=…)``."""
    config_parser, config_run = config_command(prog, description, cls, step, reads, *([writes] if writes else []))

    def build_parser() -> argparse.ArgumentParser:
        parser = config_parser()
        parser.add_argument(
            "--resume", action="store_true",
            help="continue from the last checkpoint-N in OUTPUT/checkpoints (optimizer, scheduler, RNG, data position)",
        )
        return parser

    return build_parser, TrainingRun(config_run.cls, config_run.step, config_run.reads, config_run.writes)
