"""Prompt templates are data: versioned YAML files shipped with the package.

A template id is its path without ``.yaml`` (``listwise/rankzephyr-v1``). Released files are immutable: a change
is a new file (``-v2``), and every run records :attr:`Template.ref` (id plus a hash of the file's bytes), so a
run can always be traced to the exact text the model read. Placeholders are checked when a file loads, so a typo
fails at start-up rather than after an hour of generation.

Each file holds a ``kind`` (which placeholders it may use, see :data:`PLACEHOLDERS`), its text sections, the
options its reference code uses (``stop``, ``marker``, ``max_passage_words``...) and a ``source`` line.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from reasonrank.errors import UserError

# kind -> section -> (required placeholders, allowed placeholders)
PLACEHOLDERS: dict[str, dict[str, tuple[frozenset[str], frozenset[str]]]] = {
    "pointwise": {
        "system": (frozenset(), frozenset()),
        "user": (frozenset({"query", "passage"}), frozenset({"query", "passage"})),
    },
    # Plain text completion, no chat template (rank1 was trained that way).
    "completion": {
        "text": (frozenset({"query", "passage"}), frozenset({"query", "passage"})),
    },
    "listwise": {
        "system": (frozenset(), frozenset()),
        "prefix": (frozenset(), frozenset({"query", "num"})),
        "prefix_reply": (frozenset(), frozenset()),
        "passage": (frozenset({"rank", "passage"}), frozenset({"rank", "passage"})),
        "passage_reply": (frozenset(), frozenset({"rank"})),
        "suffix": (frozenset(), frozenset({"query", "num"})),
    },
    "pairwise": {
        "system": (frozenset(), frozenset()),
        "user": (
            frozenset({"query", "passage_a", "passage_b"}),
            frozenset({"query", "passage_a", "passage_b"}),
        ),
    },
    # A judge rating a pointwise answer (explanation + label) for training rewards.
    "judge": {
        "system": (frozenset(), frozenset()),
        "user": (
            frozenset({"query", "passage", "explanation", "label"}),
            frozenset({"query", "passage", "explanation", "label"}),
        ),
    },
    # The conversation a sequence-classification reward model scores: the question, then the answer rated.
    "reward-model": {
        "system": (frozenset(), frozenset()),
        "user": (frozenset({"query", "passage"}), frozenset({"query", "passage"})),
        "assistant": (frozenset({"explanation", "label"}), frozenset({"explanation", "label"})),
    },
}
# Which sections a kind cannot do without.
REQUIRED_SECTIONS = {
    "pointwise": {"user"},
    "completion": {"text"},
    "listwise": {"prefix", "passage", "suffix"},
    "pairwise": {"user"},
    "judge": {"user"},
    "reward-model": {"user", "assistant"},
}
# Settings a template may carry beside its text, with their types.
SETTINGS: dict[str, type | tuple[type, ...]] = {
    "stop": list,
    "marker": str,
    "labels": list,
    "max_passage_words": int,
    "max_passage_chars": int,
    "reasoning": bool,
    "assistant_prefix": str,
    "label_first": bool,
    # How the reference code turned text into tokens and tokens into text (see prompts.builders).
    "max_passage_tokens": int,
    "collapse_whitespace": bool,
    "fix_text": bool,
    "replace_numbers": bool,
    "add_special_tokens": bool,
    "skip_special_tokens": bool,
    "top_p": float,
    "top_k": int,
}
METADATA = {"id", "kind", "description", "source"}

_FORMATTER = string.Formatter()
_TEMPLATE_ID = re.compile(r"^[a-z0-9_-]+(/[a-z0-9_.-]+)+$")


@dataclass(frozen=True, slots=True)
class Template:
    """One loaded prompt template; :meth:`render` fills a section."""

    id: str
    kind: str
    description: str
    source: str
    sections: Mapping[str, str]
    settings: Mapping[str, Any] = field(default_factory=dict)
    digest: str = ""

    @property
    def ref(self) -> str:
        """What runs record: ``listwise/rankzephyr-v1@3f2a9c1b04de``."""
        return f"{self.id}@{self.digest}"

    def has(self, section: str) -> bool:
        return section in self.sections

    def render(self, section: str, **values: Any) -> str:
        return self.sections[section].format(**values)

    def setting(self, name: str, default: Any = None) -> Any:
        return self.settings.get(name, default)


def _placeholders(text: str) -> set[str]:
    names = set()
    for _, name, _, _ in _FORMATTER.parse(text):
        if name is not None:
            if name == "" or not name.isidentifier():
                raise ValueError(f"positional or indexed placeholder {{{name}}}: use a named one")
            names.add(name)
    return names


def parse_template(data: Mapping[str, Any], template_id: str, digest: str, where: str) -> Template:
    """Validate a template's fields and placeholders; ``where`` names the file in error messages."""
    if not isinstance(data, Mapping):
        raise UserError(f"template {where} is not a YAML mapping: start from a file in reasonrank/prompts/")
    kind = data.get("kind")
    if kind not in PLACEHOLDERS:
        raise UserError(f"template {where} has kind {kind!r}: use one of {', '.join(PLACEHOLDERS)}")
    sections: dict[str, str] = {}
    settings: dict[str, Any] = {}
    for key, value in data.items():
        if key in PLACEHOLDERS[kind]:
            if not isinstance(value, str):
                raise UserError(f"template {where}: section {key!r} must be text, got {type(value).__name__}")
            try:
                names = _placeholders(value)
            except ValueError as error:
                raise UserError(f"template {where}: section {key!r} has a bad placeholder ({error})") from error
            required, allowed = PLACEHOLDERS[kind][key]
            if names - allowed:
                raise UserError(
                    f"template {where}: section {key!r} uses unknown placeholder(s) "
                    f"{', '.join(sorted(names - allowed))}; allowed: {', '.join(sorted(allowed)) or 'none'}"
                )
            if required - names:
                raise UserError(
                    f"template {where}: section {key!r} lacks placeholder(s) {', '.join(sorted(required - names))}"
                )
            sections[key] = value
        elif key in SETTINGS:
            if not isinstance(value, SETTINGS[key]):
                raise UserError(f"template {where}: setting {key!r} has the wrong type {type(value).__name__}")
            settings[key] = tuple(value) if isinstance(value, list) else value
        elif key not in METADATA:
            known = sorted({*PLACEHOLDERS[kind], *SETTINGS, *METADATA})
            raise UserError(f"template {where}: unknown field {key!r}; known fields: {', '.join(known)}")
    missing = REQUIRED_SECTIONS[kind] - sections.keys()
    if missing:
        raise UserError(f"template {where} lacks section(s) {', '.join(sorted(missing))} for kind {kind!r}")
    return Template(
        id=str(data.get("id", template_id)),
        kind=kind,
        description=str(data.get("description", "")),
        source=str(data.get("source", "")),
        sections=sections,
        settings=settings,
        digest=digest,
    )


def _from_bytes(raw: bytes, template_id: str, where: str) -> Template:
    try:
        data = yaml.safe_load(raw.decode("utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise UserError(f"template {where} is not valid YAML ({type(error).__name__}): fix the file") from error
    return parse_template(data, template_id, hashlib.sha256(raw).hexdigest()[:12], where)


def available_templates() -> list[str]:
    """Ids of the templates shipped with reasonrank."""
    root = importlib.resources.files(__name__)
    ids = []
    for folder in root.iterdir():
        if folder.is_dir():
            names = (f.name for f in folder.iterdir() if f.name.endswith(".yaml"))
            ids.extend(f"{folder.name}/{name.removesuffix('.yaml')}" for name in names)
    return sorted(ids)


def load_template(template: str | Template) -> Template:
    """A shipped template by id (``listwise/rankzephyr-v1``) or a YAML file of your own by path."""
    if isinstance(template, Template):
        return template
    path = Path(template).expanduser()
    if template.endswith((".yaml", ".yml")) and path.is_file():
        return _from_bytes(path.read_bytes(), path.stem, str(path))
    if not _TEMPLATE_ID.match(template):
        raise UserError(
            f"unknown prompt template {template!r}: use a shipped id ({', '.join(available_templates())}) "
            "or the path of a .yaml file"
        )
    resource = importlib.resources.files(__name__).joinpath(f"{template}.yaml")
    if not resource.is_file():
        raise UserError(f"unknown prompt template {template!r}: use one of {', '.join(available_templates())}")
    return _from_bytes(resource.read_bytes(), template, template)
