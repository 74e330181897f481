"""YAML configs for the training commands: one frozen dataclass per step, validated on load."""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import logging
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import yaml

from reasonrank.errors import UserError
from reasonrank.io.paths import check_paths

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
    if value is None:
        raise UserError(f"{where}: {name} needs a value (it is empty): set it or remove the line for the default")
    if hint is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if origin is tuple or hint is tuple:
        if not isinstance(value, list | tuple):
            raise UserError(f"{where}: {name} must be a list, got {value!r}: write it as [a, b, ...]")
        element = (typing.get_args(hint) or (Any,))[0]
        return tuple(_check_type(f"each item of {name}", item, element, where) for item in value)
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise UserError(f"{where}: {name} must be a mapping, got {value!r}")
        return value
    # YAML's true/false are ints to Python; a count or a size written as `yes` is a mistake, not 1.
    wrong_bool = isinstance(value, bool) and hint is not bool
    if wrong_bool or (isinstance(hint, type) and not isinstance(value, hint)):
        raise UserError(f"{where}: {name} must be {_type_name(hint)}, got {value!r}")
    return value


def _type_name(hint: type) -> str:
    return {int: "a whole number", float: "a number", str: "a string", bool: "true or false"}.get(hint, hint.__name__)


def build_config(cls: type[C], values: dict[str, Any], where: str, places: Mapping[str, str] | None = None) -> C:
    """A ``cls`` from a mapping: unknown keys, missing required keys and wrong types are one-line errors, each at
    ``places[key]`` (``file:line`` or the ``--set`` that gave it) where known, else at ``where``."""
    if not isinstance(values, dict):
        raise UserError(f"{where}: expected a mapping of settings, got {type(values).__name__}")
    places = places or {}
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    for key in values:
        if key not in fields:
            close = difflib.get_close_matches(str(key), fields, n=1)
            hint = f"did you mean {close[0]}?" if close else f"known: {', '.join(fields)}"
            raise UserError(f"{places.get(key, where)}: unknown setting {key!r} for {cls.__name__}: {hint}")
    missing = [
        n for n, f in fields.items()
        if n not in values and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise UserError(f"{where}: missing required setting(s) {', '.join(missing)}")
    checked = {k: _check_type(k, v, hints[k], places.get(k, where)) for k, v in values.items()}
    try:
        return cls(**checked)
    except UserError as error:  # a rule across settings (__post_init__): say which file broke it
        raise UserError(f"{where}: {error}") from None


def _parse_override(text: str) -> tuple[str, Any]:
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise UserError(f"--set {text!r}: write overrides as KEY=VALUE, e.g. --set epochs=2")
    try:
        return key.strip(), yaml.safe_load(raw)
    except yaml.YAMLError as error:
        raise UserError(f"--set {text}: the value is not valid YAML ({str(error).splitlines()[0]})") from None


def _key_lines(path: Path, text: str) -> dict[str, str]:
    """``file:line`` of each top-level key; a key written twice is an error (YAML would keep the last silently)."""
    node = yaml.compose(text, Loader=yaml.SafeLoader)
    if not isinstance(node, yaml.MappingNode):
        raise UserError(f"{path}: expected a mapping of settings (key: value lines) at the top level")
    lines: dict[str, int] = {}
    for key_node, _ in node.value:
        line = key_node.start_mark.line + 1
        if key_node.value in lines:
            raise UserError(f"{path}:{line}: {key_node.value} is set twice (first at line {lines[key_node.value]}): "
                            "keep one")
        lines[key_node.value] = line
    return {key: f"{path}:{line}" for key, line in lines.items()}


def load_config(cls: type[C], path: str | Path, overrides: Sequence[str] = ()) -> C:
    """Read a YAML config; ``overrides`` (``KEY=VALUE``, YAML-typed) win over the file."""
    return read_config(cls, path, overrides)[0]


def read_config(cls: type[C], path: str | Path, overrides: Sequence[str] = ()) -> tuple[C, dict[str, str]]:
    """The config of :func:`load_config` and where each setting was given (``file:line`` or ``--set ...``)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file {path} not found: pass --config PATH to an existing YAML file")
    try:
        text = path.read_text(encoding="utf-8")
        values = yaml.safe_load(text)
        places = _key_lines(path, text) if values is not None else {}
    except UnicodeDecodeError as error:
        raise UserError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})") from None
    except yaml.YAMLError as error:
        raise UserError(f"{path}: not valid YAML ({str(error).splitlines()[0]})") from None
    values = {} if values is None else values
    if not isinstance(values, dict):
        raise UserError(f"{path}: expected a mapping of settings (key: value lines) at the top level")
    for override in overrides:
        key, value = _parse_override(override)
        values[key], places[key] = value, f"--set {override}"
    return build_config(cls, values, str(path), places), places


# How a command reads a setting: a file that must exist, a file or a Pyserini/ir_datasets name, a model.
FILE, FILE_OR_NAME, MODEL = "file", "file or name", "model"


def check_config_paths(
    config: Any, places: Mapping[str, str], reads: Mapping[str, str], writes: Iterable[tuple[str, Any]],
    config_file: str | Path,
) -> None:
    """Before any model loads: every ``FILE`` setting exists, and no output (``writes``: setting, path) is an input,
    lies inside an input folder or is another output (:func:`reasonrank.io.paths.check_paths`)."""
    from reasonrank.weights import model_input

    def named(key: str) -> str:
        return f"{key} ({places[key]})" if key in places else key

    inputs: list[tuple[str, Any]] = [("--config", config_file)]
    for key, kind in reads.items():
        value = getattr(config, key)
        if value is None:
            continue
        if kind == FILE and not (str(value).strip() and Path(value).expanduser().exists()):
            raise UserError(f"{places.get(key, key)}: {key} {value!r} does not exist: fix the path (relative "
                            "paths start from the folder the command runs in)")
        inputs.append((named(key), model_input(value) if kind == MODEL else value))
    check_paths(inputs, [(named(key), path) for key, path in writes])


@dataclass(frozen=True)
class ConfigRun(Generic[C]):
    """The ``run(args)`` of a training command; :meth:`prepare` is everything it checks before ``step`` (and any
    model) starts: the settings, the files they name (``reads``: setting -> FILE/FILE_OR_NAME/MODEL) and the paths
    the step writes (``writes``)."""

    cls: type[C]
    step: Callable[[C], Any]
    reads: Mapping[str, str]
    writes: Callable[[C], Iterable[tuple[str, Any]]]

    def prepare(self, args: argparse.Namespace) -> C:
        config, places = read_config(self.cls, args.config, args.overrides)
        check_config_paths(config, places, self.reads, self.writes(config), args.config)
        return config

    def __call__(self, args: argparse.Namespace) -> int:
        self.step(self.prepare(args))
        return 0


def _output(config: Any) -> list[tuple[str, Any]]:
    return [("output", config.output)]


def config_command(
    prog: str,
    description: str,
    cls: type[C],
    step: Callable[[C], Any],
    reads: Mapping[str, str],
    writes: Callable[[C], Iterable[tuple[str, Any]]] = _output,
) -> tuple[Callable[[], argparse.ArgumentParser], ConfigRun[C]]:
    """``build_parser`` and ``run`` of a training command: ``--config FILE [--set K=V ...]``, then ``step(config)``."""

    def build_parser() -> argparse.ArgumentParser:
        parser = argparse.ArgumentParser(prog=prog, description=description)
        parser.add_argument("--config", required=True, help="YAML file with the settings (see docs/training.md)")
        parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                            help="override one setting, e.g. --set max_steps=10 (repeatable)")
        return parser

    return build_parser, ConfigRun(cls, step, reads, writes)


# Training logs progress with timestamps (runs take hours); the other commands warn only.
TRAIN_LOGGING = {"log_level": logging.INFO, "log_format": "%(asctime)s %(name)s %(message)s"}
