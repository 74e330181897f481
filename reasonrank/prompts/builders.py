"""Prompt building shared by the rerankers and training: passages cut as the reference code cuts them, and the
listwise window chat."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from ftfy import fix_text

from reasonrank.backends.base import ChatPrompt
from reasonrank.prompts import Template


def cut_passage(text: str, template: Template, max_words: int | None = None, tokenizer: Any = None) -> str:
    """The passage as the reference code feeds it, cut to the template's length.

    ``fix_text``: stripped and repaired by ftfy first (rank_llm, ReasonRank). ``max_passage_tokens``: the first N
    tokens of ``tokenizer``, joined back by it (ReasonRank's ``convert_doc_to_prompt_content``); without a
    tokenizer (an HTTP backend) N words instead. Otherwise whitespace is collapsed and the text cut to
    ``max_words`` (the caller's) or the template's word or character limit; ``collapse_whitespace: false`` (rank1)
    keeps an uncut passage verbatim.
    """
    if template.setting("fix_text", False):
        text = fix_text(text.strip())
    max_chars = template.setting("max_passage_chars")
    if max_chars:
        text = text[:max_chars]
    max_tokens = template.setting("max_passage_tokens")
    if max_tokens and max_words is None:
        if tokenizer is not None:
            return tokenizer.convert_tokens_to_string(tokenizer.tokenize(text)[:max_tokens])
        max_words = max_tokens
    max_words = max_words or template.setting("max_passage_words")
    if not max_words and not template.setting("collapse_whitespace", True):
        return text
    words = text.split()
    return " ".join(words[:max_words] if max_words else words)


_BRACKETED_NUMBER = re.compile(r"\[(\d+)\]")


def replace_number(text: str) -> str:
    """``[3]`` in a passage or query becomes ``(3)`` so it cannot be taken for a passage identifier (rank_llm)."""
    return _BRACKETED_NUMBER.sub(r"(\1)", text)


def window_prompt(
    template: Template,
    query: str,
    passages: Sequence[str],
    max_passage_words: int | None = None,
    tokenizer: Any = None,
) -> ChatPrompt:
    """The chat for one window, as the template's reference code lays it out; rerankers and training both call it.

    One user turn (prefix, passages, suffix) or, when the template has ``prefix_reply``/``passage_reply``, the
    RankGPT conversation: each passage its own user turn, acknowledged by the assistant. ``[n]`` in the query and
    passages becomes ``(n)`` unless the template says ``replace_numbers: false`` (DeAR keeps them); ``fix_text``
    runs ftfy over every message as rank_llm runs it over the rendered prompt.
    """
    renumber = replace_number if template.setting("replace_numbers", True) else str
    query = renumber(query.strip())
    num = len(passages)
    texts = [renumber(cut_passage(p, template, max_passage_words, tokenizer)) for p in passages]
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
    if template.setting("fix_text", False):
        messages = [{**m, "content": fix_text(m["content"])} for m in messages]
    return ChatPrompt(
        tuple(messages), template.setting("assistant_prefix", ""), template.setting("add_special_tokens", False)
    )
