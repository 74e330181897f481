"""Prompt building shared by the rerankers and training: passages cut as the reference code cuts them, and the
listwise window chat."""

from __future__ import annotations

import re
from collections.abc import Sequence

from reasonrank.backends.base import ChatPrompt
from reasonrank.prompts import Template


def cut_passage(text: str, template: Template, max_words: int | None = None) -> str:
    """The passage as the reference code feeds it: whitespace collapsed, cut to the template's length."""
    max_chars = template.setting("max_passage_chars")
    if max_chars:
        text = text[:max_chars]
    max_words = max_words or template.setting("max_passage_words")
    words = text.split()
    return " ".join(words[:max_words] if max_words else words)


_BRACKETED_NUMBER = re.compile(r"\[(\d+)\]")


def replace_number(text: str) -> str:
    """``[3]`` in a passage or query becomes ``(3)`` so it cannot be taken for a passage identifier (rank_llm)."""
    return _BRACKETED_NUMBER.sub(r"(\1)", text)


def window_prompt(
    template: Template, query: str, passages: Sequence[str], max_passage_words: int | None = None
) -> ChatPrompt:
    """The chat for one window, as the template's reference code lays it out.

    One user turn (prefix, passages, suffix) or, when the template has ``prefix_reply``/``passage_reply``, the
    RankGPT conversation: each passage its own user turn, acknowledged by the assistant.
    """
    query = replace_number(query.strip())
    num = len(passages)
    texts = [replace_number(cut_passage(p, template, max_passage_words)) for p in passages]
    messages = [{"role": "system", "content": template.render("system")}] if template.has("system") else []
    prefix = template.render("prefix", query=query, num=num)
    suffix = template.render("suffix", query=query, num=num)
    if template.has("prefix_reply"):
        messages.append({"role": "user", "content": prefix})
        messages.append({"role": "assistant", "content": template.render("prefix_reply")})
        for rank, text in enumerate(texts, start=1):
            messages.append({"role": "user", "content": template.render("passage", rank=rank, passage=text)})
            messages.append({"role": "assistant", "content": template.render("passage_reply", rank=rank)})
        messages.append({"role": "user", "content": suffix})
    else:
        body = "".join(template.render("passage", rank=rank, passage=text) for rank, text in enumerate(texts, start=1))
        messages.append({"role": "user", "content": prefix + body + suffix})
    return ChatPrompt(tuple(messages), template.setting("assistant_prefix", ""))
