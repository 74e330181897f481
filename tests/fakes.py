"""A deterministic backend for tests: answers come from a function of the prompt, token by token."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence

from reasonrank.backends.base import Backend, ChatPrompt, Generation, GenerationParams, TokenLogprobs

# A piece of a scripted answer: its text, and optionally the alternatives (text -> probability) at that step.
Piece = str | tuple[str, dict[str, float]]


def generation(*pieces: Piece, finish_reason: str = "stop") -> Generation:
    """A generation from pieces; a piece with alternatives gets them as log-probabilities."""
    tokens = []
    for piece in pieces:
        text, top = (piece, {}) if isinstance(piece, str) else piece
        tokens.append(TokenLogprobs(text, math.log(top.get(text, 1.0)), {k: math.log(p) for k, p in top.items()}))
    return Generation(
        "".join(t.token for t in tokens), tuple(tokens), completion_tokens=len(tokens), finish_reason=finish_reason
    )


def prompt_text(prompt: ChatPrompt) -> str:
    """All the text a prompt shows the model, turns joined by newlines."""
    return "\n".join(m["content"] for m in prompt.messages) + prompt.assistant_prefix


class FakeBackend(Backend):
    """Calls ``respond(prompt, params)`` for each prompt and records every call."""

    name = "fake"

    def __init__(
        self,
        respond: Callable[[ChatPrompt, GenerationParams], Generation],
        next_token: Callable[[ChatPrompt, Sequence[str]], dict[str, float]] | None = None,
    ):
        self.respond = respond
        self.next_token = next_token
        self.calls: list[list[ChatPrompt]] = []
        self.next_token_calls: list[list[ChatPrompt]] = []
        self.closed = False

    def generate(self, prompts: Sequence[ChatPrompt], params: GenerationParams) -> list[Generation]:
        self.calls.append(list(prompts))
        return [self.respond(p, params) for p in prompts]

    def next_token_logprobs(self, prompts: Sequence[ChatPrompt], options: Sequence[str]) -> list[dict[str, float]]:
        self.next_token_calls.append(list(prompts))
        if self.next_token is None:
            raise AssertionError("this test expected no next_token_logprobs call")
        return [self.next_token(p, options) for p in prompts]

    def close(self) -> None:
        self.closed = True


class SortingModel:
    """A listwise 'model' that sorts the passages it is shown by a hidden relevance (best first, stable)."""

    def __init__(self, relevance: dict[str, int], reasoning: bool = False):
        self.relevance = relevance
        self.reasoning = reasoning

    def __call__(self, prompt: ChatPrompt, params: GenerationParams) -> Generation:
        passages = re.findall(r"^\[(\d+)\] (.*)$", prompt_text(prompt), flags=re.MULTILINE)
        order = sorted(passages, key=lambda p: -self.relevance.get(p[1], 0))
        answer = " > ".join(f"[{identifier}]" for identifier, _ in order)
        if self.reasoning:
            # A sentence about each passage, as reasoning models write them, naming it by its identifier.
            notes = " ".join(f"[{i}] has relevance {self.relevance.get(p, 0)}." for i, p in passages)
            return generation(f"<think>Window of {len(passages)}. {notes}</think>", f"<answer>{answer}</answer>")
        return generation(answer)


def load_dl19(test_data) -> tuple[dict[str, str], dict[str, dict[str, int]], dict[str, str]]:
    """DL19-mini: topics (qid -> text), graded qrels (qid -> docid -> grade), corpus (docid -> text)."""
    import json

    folder = test_data / "msmarco-dl19-mini"
    topics = dict(line.split("\t", 1) for line in (folder / "topics.dl19-passage.tsv").read_text().splitlines())
    qrels: dict[str, dict[str, int]] = {}
    for line in (folder / "qrels.dl19-passage.txt").read_text().splitlines():
        qid, _, docid, grade = line.split()
        qrels.setdefault(qid, {})[docid] = int(grade)
    corpus = {}
    with (folder / "corpus.jsonl").open() as lines:
        for line in lines:
            doc = json.loads(line)
            corpus[doc["_id"]] = " ".join(part for part in (doc["title"], doc["text"]) if part)
    return topics, qrels, corpus
