"""Text-generation backends. They turn prompts into text (and token log-probabilities);
they know nothing about queries, documents or ranking.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ChatPrompt:
    """Chat messages, optionally followed by the start of the assistant's answer.

    ``assistant_prefix`` is text the model must continue from (e.g. a forced ``<think>`` or a
    reasoning trace that ends in ``</think>``); backends render it right after the generation prompt.
    With no messages the prefix is the whole prompt, sent as raw text without a chat template (rank1 was
    trained that way).

    ``add_special_tokens`` tokenises the rendered text with the tokenizer's own special tokens (its BOS) on top
    of what the chat template wrote, as reference code that hands vLLM or a tokenizer a rendered string does:
    ``<s>`` before RankZephyr's zephyr turns, a second ``<|begin_of_text|>`` in DeAR's Llama 3.1 prompt.
    """

    messages: tuple[dict[str, str], ...]
    assistant_prefix: str = ""
    add_special_tokens: bool = False

    @classmethod
    def of(cls, user: str, system: str | None = None, assistant_prefix: str = "") -> ChatPrompt:
        messages = ({"role": "system", "content": system},) if system else ()
        return cls((*messages, {"role": "user", "content": user}), assistant_prefix)


def render_prompt(tokenizer, prompt: ChatPrompt) -> str:
    """The exact text a local engine continues: chat template, generation prompt, then the assistant prefix."""
    if not prompt.messages:
        return prompt.assistant_prefix
    text = tokenizer.apply_chat_template(list(prompt.messages), tokenize=False, add_generation_prompt=True)
    return text + prompt.assistant_prefix


class MultiTokenOption(ValueError):
    """An option the tokenizer spells with more than one token, so no single next-token distribution holds it."""


def option_token_id(tokenizer, option: str) -> int:
    """The single token id that spells ``option`` exactly, with no space added or removed.

    ``"1"`` and ``" 1"`` are different tokens to most tokenizers: after ``"Relevance:"`` a model usually writes
    ``" 1"``, after a newline ``"1"``. The option is tokenized after a newline so that SentencePiece tokenizers
    do not prepend their word-start marker. Raises :class:`MultiTokenOption` for a multi-token option.
    """
    anchor = tokenizer("\n", add_special_tokens=False)["input_ids"]
    ids = tokenizer("\n" + option, add_special_tokens=False)["input_ids"]
    if not option or ids[: len(anchor)] != anchor or len(ids) != len(anchor) + 1:
        pieces = tokenizer.convert_ids_to_tokens(ids[len(anchor) :])
        raise MultiTokenOption(f"option {option!r} is not a single token (tokens: {pieces})")
    return ids[-1]


@dataclass(frozen=True, slots=True)
class GenerationParams:
    max_new_tokens: int = 256
    temperature: float = 0.0  # 0 means greedy
    top_p: float = 1.0
    top_k: int = 0  # 0: no top-k filter (vLLM's and OpenAI's default); transformers' own default of 50 is not used
    stop: tuple[str, ...] = ()
    top_logprobs: int = 0  # >0: return that many alternatives per generated token
    seed: int | None = None
    # False keeps special tokens such as rank1's <think>/</think> in the text, as its reference decodes.
    skip_special_tokens: bool = True


class TokenLogprobs:
    """One generated token: its text, its log-probability and the best alternatives at that step.

    ``top`` may be given as a function that builds it: it then runs when ``top`` is first read, so a backend
    whose alternatives cost work per token (transformers decodes each one) pays only at the tokens a reader
    looks at, such as the one writing a label.
    """

    __slots__ = ("_build", "_top", "logprob", "token")

    def __init__(
        self, token: str, logprob: float, top: Mapping[str, float] | Callable[[], dict[str, float]] | None = None
    ) -> None:
        self.token, self.logprob = token, logprob
        self._build = top if callable(top) else None
        self._top = None if callable(top) else dict(top or {})

    @property
    def top(self) -> dict[str, float]:
        if self._top is None:
            self._top, self._build = self._build(), None
        return self._top

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TokenLogprobs):
            return NotImplemented
        return (self.token, self.logprob, self.top) == (other.token, other.logprob, other.top)

    __hash__ = None  # mutable cache inside, compared by value

    def __repr__(self) -> str:
        return f"TokenLogprobs(token={self.token!r}, logprob={self.logprob!r}, top={self.top!r})"


@dataclass(frozen=True, slots=True)
class Generation:
    text: str
    tokens: tuple[TokenLogprobs, ...] = ()
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str = "stop"  # "stop" or "length"
    # Prompt tokens whose KV the engine read from its prefix cache instead of computing (vLLM reports it; 0 elsewhere).
    cached_prompt_tokens: int = 0


class Backend(ABC):
    """A language model behind one of several engines (transformers, vLLM, an HTTP server)."""

    name: str

    @abstractmethod
    def generate(self, prompts: Sequence[ChatPrompt], params: GenerationParams) -> list[Generation]:
        """Continue every prompt; batching and concurrency are the backend's business."""

    def generate_as_completed(
        self, prompts: Sequence[ChatPrompt], params: GenerationParams
    ) -> Iterator[tuple[int, Generation]]:
        """Continue every prompt, as :meth:`generate`, yielding ``(index into prompts, generation)`` as each one is
        ready, in any order: a caller can keep each result before the last one exists. This default yields them
        all after one :meth:`generate` call; engines that finish requests one by one yield them as they finish."""
        yield from enumerate(self.generate(prompts, params))

    @abstractmethod
    def next_token_logprobs(self, prompts: Sequence[ChatPrompt], options: Sequence[str]) -> list[dict[str, float]]:
        """Log-probability of each option string as the very next token after each prompt.

        Options are single-token strings such as ``"0"``, ``"1"``, ``"2"`` or ``"true"``/``"false"``.
        """

    def close(self) -> None:  # noqa: B027 - optional hook, most backends hold nothing to release
        """Release engines, threads or connections."""
