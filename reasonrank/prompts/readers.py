"""Reading what a model wrote: a listwise answer (``[2] > [1] > [3]``) into a permutation, repairing what it got
wrong; the reasoning before ``</think>``; the token that writes the answer after a marker (label, verdict) and its
distribution; the part of a reasoning about each passage it names; the quotations of an explanation, found in the
passage or not.

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


# Written around an answer without being it: "Passage: [2]", "Label: **2**", "`true`".
_DECORATION = " \t\n*[]()`'\""


def _bare(text: str) -> str:
    return text.strip(_DECORATION)


def option_token(tokens: Sequence[TokenLogprobs], options: Sequence[str], start: int = 0) -> TokenLogprobs | None:
    """The token that writes one of ``options``, first after character ``start`` of the generated text.

    Decoration (spaces, ``[``, ``**``, backticks) may come before it; any other text first means the answer is not
    an option, and None. The token whose alternatives are read is the option itself, never the ``[`` before it,
    whose distribution says nothing about which option follows.
    """
    position = 0
    for token in tokens:
        begin, position = position, position + len(token.token)
        if position <= start:
            continue
        written = _bare(token.token[max(0, start - begin) :])
        if written in options:
            return token
        if written:
            return None
    return None


def answer_token(tokens: Sequence[TokenLogprobs], marker: str, options: Sequence[str]) -> TokenLogprobs | None:
    """The token writing the option after the last ``marker`` (case-insensitive), if an option is written there."""
    found = "".join(t.token for t in tokens).lower().rfind(marker.lower())
    return None if found < 0 else option_token(tokens, options, found + len(marker))


def option_distribution(token: TokenLogprobs | None, options: Sequence[str]) -> dict[str, float] | None:
    """Probabilities of the option strings among a token's alternatives, renormalised over the options.

    Spelling variants of one option (``" 2"``, ``"2"``, ``"**2"``) add up. None when no option is among the
    alternatives.
    """
    if token is None:
        return None
    probabilities: Counter[str] = Counter()
    for text, logprob in token.top.items():
        key = _bare(text)
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


# --- what a reasoning says about each passage ----------------------------------------------------------

# "[3]", "passage 3", "Passage [3]", "passages 3": how listwise and pairwise reasoning names a passage shown.
_LETTER = re.compile(r"[^\W\d_]")
_MENTION = re.compile(r"\bpassages?\s*\[?\s*(\d{1,6})\b\]?|\[\s*(\d{1,6})\s*\]", re.IGNORECASE)


def passage_parts(reasoning: str, n: int) -> dict[int, str]:
    """The part of a reasoning about each of ``n`` passages shown (0-based), for those it names.

    A part runs from a mention of the passage to the next mention of another one, so a quotation belongs to the
    passage named last before it; a passage's parts, in order, are joined by newlines. A sentence comparing two
    passages is thus cut between them: each keeps what follows its own name. Parts without a word (the ``[2] >``
    of a ranking drafted in the reasoning) are left out.
    """
    mentions = []
    for match in _MENTION.finditer(reasoning):
        identifier = int(match.group(1) or match.group(2))
        if 1 <= identifier <= n and (not mentions or mentions[-1][0] != identifier - 1):
            mentions.append((identifier - 1, match.start()))
    ends = [start for _, start in mentions[1:]] + [len(reasoning)]
    pieces: dict[int, list[str]] = {}
    for (passage, start), end in zip(mentions, ends[: len(mentions)], strict=True):
        piece = reasoning[start:end].strip()
        if _LETTER.search(_MENTION.sub("", piece)):  # not a bare "[2] >" of a ranking drafted in the reasoning
            pieces.setdefault(passage, []).append(piece)
    return {passage: "\n".join(texts) for passage, texts in pieces.items()}


# --- quotations in a written explanation ---------------------------------------------------------------

# Text between straight or curly double quotes; single quotes are apostrophes too often to mean quotation.
_QUOTED = re.compile(r"\"([^\"]+)\"|“([^”]+)”")
MIN_QUOTE_WORDS = 3  # shorter quotes are terms ("yes", a title word), not claims about the passage


@dataclass(frozen=True, slots=True)
class Quote:
    """A quotation from an explanation; ``start``/``end`` locate it in the passage, None when it is not there."""

    text: str
    start: int | None = None
    end: int | None = None

    @property
    def grounded(self) -> bool:
        return self.start is not None


def _find_loosely(quote: str, passage: str) -> tuple[int, int] | None:
    """Where ``quote`` occurs in ``passage``, ignoring case, whitespace runs and a trailing ellipsis or stop."""
    words = quote.strip().rstrip(".…").split()
    if not words:
        return None
    pattern = r"\s+".join(re.escape(word) for word in words)
    match = re.search(pattern, passage, flags=re.IGNORECASE)
    return (match.start(), match.end()) if match else None


def quoted_spans(explanation: str | None, passage: str) -> list[Quote]:
    """Each quotation of at least three words in ``explanation``, located in ``passage`` where it occurs."""
    quotes = []
    for match in _QUOTED.finditer(explanation or ""):
        quoted = " ".join((match.group(1) or match.group(2)).split())
        if len(quoted.split()) < MIN_QUOTE_WORDS:
            continue
        where = _find_loosely(quoted, passage)
        quotes.append(Quote(quoted, *where) if where else Quote(quoted))
    return quotes
