"""Reading a listwise model's answer (``[2] > [1] > [3]``) into a permutation, repairing what it got wrong.

Models skip passages, repeat them and invent identifiers; the reranker must still return every candidate once.
Repairs follow RankGPT/rank_llm practice: out-of-range and repeated identifiers are dropped, missing passages are
appended in their original order. Each repair is counted so runs can report how often a model needed them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_BRACKETED = re.compile(r"\[\s*(\d+)\s*\]")
_DIGITS = re.compile(r"\d+")
_ANSWER = re.compile(r"<answer>(.*?)(?:</answer>|$)", re.DOTALL | re.IGNORECASE)
# Longer digit runs are no passage identifier (and int() of thousands of digits is refused by Python).
_MAX_ID_DIGITS = 6


@dataclass(frozen=True, slots=True)
class Permutation:
    """``order[k]`` is the 0-based position, in the window shown, of the passage the model put at rank k+1."""

    order: tuple[int, ...]
    missing: int = 0
    duplicate: int = 0
    out_of_range: int = 0

    @property
    def repaired(self) -> bool:
        return bool(self.missing or self.duplicate or self.out_of_range)


def split_reasoning(text: str) -> tuple[str, str]:
    """``(reasoning, answer)``: the text inside ``<think>...</think>`` and what follows it.

    An unclosed ``<think>`` means the model ran out of tokens while reasoning: all of it is reasoning and there is
    no answer. ReasonRank wraps its answer in ``<answer>...</answer>``; the tags are removed.
    """
    close = text.rfind("</think>")
    if close >= 0:
        reasoning, answer = text[:close], text[close + len("</think>") :]
    elif "<think>" in text:
        reasoning, answer = text, ""
    else:
        reasoning, answer = "", text
    reasoning = reasoning.replace("<think>", "").strip()
    tagged = _ANSWER.search(answer)
    return reasoning, (tagged.group(1) if tagged else answer).strip()


def parse_permutation(text: str, n: int) -> Permutation:
    """The permutation of ``n`` passages (1-based identifiers in the text) that the answer gives; never raises."""
    _, answer = split_reasoning(text)
    found = _BRACKETED.findall(answer) or _DIGITS.findall(answer)
    order: list[int] = []
    seen: set[int] = set()
    duplicate = out_of_range = 0
    for digits in found:
        identifier = int(digits) if len(digits) <= _MAX_ID_DIGITS else 0
        if not 1 <= identifier <= n:
            out_of_range += 1
        elif identifier - 1 in seen:
            duplicate += 1
        else:
            seen.add(identifier - 1)
            order.append(identifier - 1)
    missing = [i for i in range(n) if i not in seen]
    return Permutation(tuple(order + missing), len(missing), duplicate, out_of_range)
