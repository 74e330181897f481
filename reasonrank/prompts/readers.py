"""Reading what a model wrote: a listwise answer (``[2] > [1] > [3]``) into a permutation, repairing what it got
wrong; the reasoning before ``</think>``; the answer token after a marker (label, verdict) and its distribution.

Models skip passages, repeat them and invent identifiers; the reranker must still return every candidate once.
Repairs follow RankGPT/rank_llm practice: out-of-range and repeated identifiers are dropped, missing passages are
appended in their original order. Each repair is counted so runs can report how often a model needed them.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from reasonrank.backends.base import TokenLogprobs

_BRACKETED = re.compile(r"\[\s*(\d+)\s*\]")
_DIGITS = re.compile(r"\d+")
_THINK_START = re.compile(r"<think>", re.IGNORECASE)
_THINK_END = re.compile(r"</think>", re.IGNORECASE)
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

    The answer starts after the first ``</think>``, in any case (DeAR's ``extract_after_think``; ReasonRank's
    pattern ``<think>.*?</think>`` is non-greedy too). An unclosed ``<think>`` means the model ran out of tokens
    while reasoning: all of it is reasoning and there is no answer. ReasonRank wraps its answer in
    ``<answer>...</answer>``; the tags are removed.
    """
    close = _THINK_END.search(text)
    if close:
        reasoning, answer = text[: close.start()], text[close.end() :]
    elif _THINK_START.search(text):
        reasoning, answer = text, ""
    else:
        reasoning, answer = "", text
    reasoning = _THINK_START.sub("", reasoning).strip()
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


def answer_token(tokens: Sequence[TokenLogprobs], marker: str) -> TokenLogprobs | None:
    """The first generated token with text after the last ``marker`` (case-insensitive), if any."""
    joined = "".join(t.token for t in tokens)
    found = joined.lower().rfind(marker.lower())
    if found < 0:
        return None
    end = found + len(marker)
    position = 0
    for token in tokens:
        start, position = position, position + len(token.token)
        if position > end and token.token[max(0, end - start) :].strip():
            return token
    return None


def option_distribution(token: TokenLogprobs | None, options: Sequence[str]) -> dict[str, float] | None:
    """Probabilities of the option strings among a token's alternatives, renormalised over the options.

    Spelling variants of one option (``" 2"`` and ``"2"``) add up. None when no option is among the alternatives.
    """
    if token is None:
        return None
    probabilities: Counter[str] = Counter()
    for text, logprob in token.top.items():
        key = text.strip()
        if key in options:
            probabilities[key] += math.exp(logprob)
    total = sum(probabilities.values())
    if total <= 0:
        return None
    return {option: probabilities[option] / total for option in options}


def explanation_before(text: str, marker: str) -> str:
    """The reasoning a model wrote before its verdict, without the stop symbol."""
    found = text.lower().rfind(marker.lower())
    return (text[:found] if found >= 0 else text).replace("##", "").strip()
