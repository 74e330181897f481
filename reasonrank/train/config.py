"""YAML configs for the training commands: one frozen dataclass per step, validated on load."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import types
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml

from reasonrank.errors import UserError

C = TypeVar("C")


def _check_type(name: str, value: Any, annotation: Any, where: str) -> Any:
    """Coerce YAML scalars to the annotated type (ints for floats, lists for tuples); reject the rest."""
    hint = annotation
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None:
            return None
        hint = options[0] if len(options) == 1 else Any
        origin = typing.get_origin(hint)
    if hint is Any:
        return value
    if hint is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if origin is tuple or hint is tuple:
        if not isinstance(value, list | tuple):
            raise UserError(f"{where}: {name} must be a list, got {value!r}: write it as [a, b, ...]")
        return tuple(value)
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise UserError(f"{where}: {name} must be a mapping, got {value!r}")
        return value
    if isinstance(hint, type) and not isinstance(value, hint):
        raise UserError(f"{where}: {name} must be {hint.__name__}, got {value!r}")
    return value


def build_config(cls: type[C], values: dict[str, Any], where: str) -> C:
    """A ``cls`` from a mapping: unknown keys and missing required keys are one-line errors."""
    if not isinstance(values, dict):
        raise UserError(f"{where}: expected a mapping of settings, got {type(values).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise UserError(f"{where}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(fields)}")
    missing = [
        n for n, f in fields.items()
        if n not in values and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise UserError(f"{where}: missing required setting(s) {', '.join(missing)}")
    return cls(**{k: _check_type(k, v, hints[k], where) for k, v in values.items()})


def _parse_override(text: str) -> tuple[str, Any]:
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise UserError(f"--set {text!r}: write overrides as KEY=VALUE, e.g. --set epochs=2")
    return key.strip(), yaml.safe_load(raw)


def load_config(cls: type[C], path: str | Path, overrides: Sequence[str] = ()) -> C:
    """Read a YAML config; ``overrides`` (``KEY=VALUE``, YAML-typed) win over the file."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file {path} not found: pass --config PATH to an existing YAML file")
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise UserError(f"{path}: not valid YAML ({str(error).splitlines()[0]})") from error
    if not isinstance(values, dict):
        raise UserError(f"{path}: expected a mapping of settings at the top level")
    values.update(dict(_parse_override(o) for o in overrides))
    return build_config(cls, values, str(path))


def config_command(
    prog: str, description: str, cls: type[C], step: Callable[[C], Any]
) -> tuple[Callable[[], argparse.ArgumentParser], Callable[[argparse.Namespace], int]]:
    """``build_parser`` and ``run`` of a training command: ``--config FILE [--set K=V ...]``, then ``step(config)``."""

    def build_parser() -> argparse.ArgumentParser:
        parser = argparse.ArgumentParser(prog=prog, description=description)
        parser.add_argument("--config", required=True, help="YAML file with the settings (see docs/training.md)")
        parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                            help="override one setting, e.g. --set max_steps=10 (repeatable)")
        return parser

    def run(args: argparse.Namespace) -> int:
        step(load_config(cls, args.config, args.overrides))
        return 0

    return build_parser, run


# Training logs progress with timestamps (runs take hours); the other commands warn only.
TRAIN_LOGGING = {"log_level": logging.INFO, "log_format": "%(asctime)s %(name)s %(message)s"}
