"""Keyword options checked against the callable that takes them, before any work starts.

A reranker's options (``--option KEY=VALUE``, ``load_reranker(..., **options)``, a service's ``--reranker``) reach a
constructor that may run only at the first prompt (generative backends load lazily). Checking them here, when the
reranker is built, turns a misspelt name, an ill-typed value or an impossible device into one line naming what is
valid, before BM25 or a model load has cost anything.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from reasonrank.errors import UserError

_SIMPLE = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}


def _functions(target: Callable[..., Any]) -> list[Callable[..., Any]]:
    """A function itself; for a class, the ``__init__`` methods up its method resolution order."""
    return [c.__init__ for c in target.__mro__ if "__init__" in vars(c)] if isinstance(target, type) else [target]


def parameters(target: Callable[..., Any], skip: Iterable[str] = ()) -> tuple[dict[str, inspect.Parameter], bool]:
    """The keyword parameters ``target`` takes, by name, and whether it also takes ``**kwargs`` it does not name.

    For a class, ``__init__`` up the method resolution order: a subclass that passes ``**options`` to its base takes
    the base's options too.
    """
    named: dict[str, inspect.Parameter] = {}
    for function in _functions(target):
        open_ended = False
        for parameter in list(inspect.signature(function).parameters.values()):
            if parameter.kind is parameter.VAR_KEYWORD:
                open_ended = True
            elif parameter.kind is not parameter.VAR_POSITIONAL and parameter.name not in {"self", *skip}:
                named.setdefault(parameter.name, parameter)
        if not open_ended:
            return named, False
    return named, True


def _hints(target: Callable[..., Any]) -> dict[str, Any]:
    hints: dict[str, Any] = {}
    for function in reversed(_functions(target)):
        try:
            hints.update(typing.get_type_hints(function))
        except (NameError, TypeError):  # an annotation that names a type imported for type checkers only
            continue
    return hints


def _fits(value: Any, hint: Any) -> bool | None:
    """Whether ``value`` fits the annotation; None where the annotation is not one of the simple types we check."""
    if hint is Any:
        return True
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        verdicts = [_fits(value, member) for member in typing.get_args(hint)]
        return True if any(verdicts) else (None if None in verdicts else False)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    return None


def _expected(hint: Any) -> str:
    members = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    words = [_SIMPLE[m] for m in members if m in _SIMPLE]
    return " or ".join(words) or getattr(hint, "__name__", str(hint))


def check_device(value: Any) -> None:
    """``device=cuda`` (or ``cuda:N``) needs a CUDA device that torch can see."""
    if isinstance(value, str) and value.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise UserError(f"option device={value}: torch sees no CUDA device; drop the option or pass device=cpu")
        index = value.partition(":")[2]
        if index and (not index.isdigit() or int(index) >= torch.cuda.device_count()):
            raise UserError(f"option device={value}: there are {torch.cuda.device_count()} CUDA devices (0-based)")


def check_options(
    options: Mapping[str, Any], targets: Iterable[Callable[..., Any]], what: str, skip: Iterable[str] = ("model",)
) -> None:
    """Raise one UserError line for an option no target takes, a value of the wrong type, or an impossible device.

    ``targets`` are the callables the options end up in (a reranker's build function, its backend's constructor);
    a name any of them takes is valid. ``skip`` names the parameters the caller fills itself.
    """
    known: dict[str, tuple[inspect.Parameter, Callable[..., Any]]] = {}
    for target in targets:
        for name, parameter in parameters(target, skip)[0].items():
            known.setdefault(name, (parameter, target))
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise UserError(
            f"unknown option{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} for {what}: "
            f"valid options are {', '.join(sorted(known))}"
        )
    hints_by_target: dict[int, dict[str, Any]] = {}
    for name, value in options.items():
        _, target = known[name]
        hints = hints_by_target.setdefault(id(target), _hints(target))
        if name in hints and _fits(value, hints[name]) is False:
            raise UserError(f"option {name}={value!r} for {what}: expected {_expected(hints[name])}")
    if "device" in options:
        check_device(options["device"])
