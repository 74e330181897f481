"""Pointwise reasoning rerankers: each candidate alone, the model reasons, then judges.

* :class:`PointwiseReranker` — InteRank / R2R direct reasoning: an explanation ending in ``Relevance Label: 0|1|2``.
  The score is the expected label Σ p(l)·l over the label tokens right after the marker (renormalised over the
  labels), so two passages both labelled 2 are still told apart; the parsed integer is the fallback. A template
  with ``label_first: true`` turns the order round: the marker is written into the answer for the model, the label
  is its first token and the explanation follows, so the score never waits on (or goes missing in) the reasoning.
* :class:`Rank1Reranker` — rank1: reasoning until ``</think>``, score p(true) / (p(true) + p(false)) at the token
  after it, as in rank1's reference code (``orionw/rank1``, ``rank1.py``).

The helpers at the top (lazy backend, batched generation, passage cutting, answer-token lookup) are shared with
the listwise and pairwise rerankers.
"""

from __future__ import annotations

import logging
import math
import re
from abc import abstractmethod
from collections import Counter
from collections.abc import Sequence
from typing import Any

from tqdm.auto import tqdm

from reasonrank.backends.base import Backend, ChatPrompt, Generation, GenerationParams, TokenLogprobs
from reasonrank.errors import UserError
from reasonrank.models import check_adapter_template
from reasonrank.prompts import Template, load_template
from reasonrank.rerank.base import ScoringReranker
from reasonrank.types import Judgment, Ranking, Request

logger = logging.getLogger(__name__)

# Prompts handed to the backend per call: large enough for its own batching, small enough for a live progress bar.
CHUNK_SIZE = 64


class LazyBackend:
    """A backend given as an instance, or built from a kind string on first use.

    Building a reranker (e.g. while listing the registry) must not load a model; the first prompt does.
    """

    def __init__(self, backend: Backend | str, model: str, options: dict[str, Any]):
        if not isinstance(backend, Backend | str):
            raise UserError(
                f"backend must be a Backend or one of transformers/vllm/openai, got {type(backend).__name__}"
            )
        self._backend = backend if isinstance(backend, Backend) else None
        self._kind = backend if isinstance(backend, str) else None
        self._model = model
        self._options = options

    def get(self) -> Backend:
        if self._backend is None:
            from reasonrank.backends import load_backend  # imported late: engines are heavy optional dependencies

            self._backend = load_backend(self._kind, self._model, **self._options)
        return self._backend

    def generate(self, prompts: Sequence[ChatPrompt], params: GenerationParams, desc: str) -> list[Generation]:
        """Generate in chunks so that long runs show progress."""
        backend = self.get()
        results: list[Generation] = []
        with tqdm(total=len(prompts), desc=desc, unit="prompt", disable=len(prompts) <= CHUNK_SIZE) as bar:
            for start in range(0, len(prompts), CHUNK_SIZE):
                chunk = prompts[start : start + CHUNK_SIZE]
                results.extend(backend.generate(chunk, params))
                bar.update(len(chunk))
        return results

    def close(self) -> None:
        if self._backend is not None:
            self._backend.close()


def positive(name: str, value: int) -> int:
    if not isinstance(value, int) or value < 1:
        raise UserError(f"{name} must be a positive integer, got {value!r}")
    return value


def marker_params(template: Template, max_new_tokens: int, top_logprobs: int, temperature: float = 0.0):
    """Generation settings for an answer read at a marker (label, verdict): the template's stops, with logprobs."""
    return GenerationParams(
        max_new_tokens=positive("max_new_tokens", max_new_tokens),
        temperature=temperature,
        stop=tuple(template.setting("stop", ())),
        top_logprobs=positive("top_logprobs", top_logprobs),
    )


def cut_passage(text: str, template: Template, max_words: int | None = None) -> str:
    """The passage as the reference code feeds it: whitespace collapsed, cut to the template's length."""
    max_chars = template.setting("max_passage_chars")
    if max_chars:
        text = text[:max_chars]
    max_words = max_words or template.setting("max_passage_words")
    words = text.split()
    return " ".join(words[:max_words] if max_words else words)


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


class _GenerativeScorer(ScoringReranker):
    """A scoring reranker on a generative backend that also counts events per query for ``Ranking.stats``."""

    backend: LazyBackend

    @abstractmethod
    def judge_with_stats(self, requests: Sequence[Request]) -> tuple[list[list[Judgment]], list[dict[str, int]]]:
        """Judgments per request, and event counts per request."""

    def judge(self, requests: Sequence[Request]) -> list[list[Judgment]]:
        return self.judge_with_stats(requests)[0]

    def rerank_many(self, requests: Sequence[Request]) -> list[Ranking]:
        judgments, stats = self.judge_with_stats(requests)
        return [
            Ranking.from_judgments(r.query, r.candidates, js, self.name, st)
            for r, js, st in zip(requests, judgments, stats, strict=True)
        ]

    def close(self) -> None:
        self.backend.close()


class PointwiseReranker(_GenerativeScorer):
    """Explanation → ``Relevance Label: l``; score = expected label under the label-token distribution."""

    def __init__(
        self,
        backend: LazyBackend,
        template: Template,
        max_new_tokens: int = 512,
        top_logprobs: int = 5,
        temperature: float = 0.0,
        max_passage_words: int | None = None,
    ):
        if template.kind != "pointwise" or not template.setting("marker") or not template.setting("labels"):
            raise UserError(f"template {template.id} is not a pointwise template with a marker and labels")
        self.backend = backend
        self.template = template
        self.labels = tuple(str(label) for label in template.setting("labels"))
        self.marker: str = template.setting("marker")
        self.label_first = bool(template.setting("label_first", False))
        self.max_passage_words = max_passage_words
        self.params = marker_params(template, max_new_tokens, top_logprobs, temperature)
        self._label_pattern = re.compile(re.escape(self.marker) + r"\s*\**\s*(\d+)", re.IGNORECASE)

    def prompt(self, query: str, passage: str) -> ChatPrompt:
        system = self.template.render("system") if self.template.has("system") else None
        passage = cut_passage(passage, self.template, self.max_passage_words)
        user = self.template.render("user", query=query, passage=passage)
        return ChatPrompt.of(user, system=system, assistant_prefix=self.marker if self.label_first else "")

    def read(self, generation: Generation) -> tuple[Judgment, str]:
        """A judgment from one generation, and where its score came from (for ``Ranking.stats``)."""
        if self.label_first:
            # The marker was the answer's prefix: the label is the first token written, the explanation the rest.
            text = self.marker + generation.text
            found = self._label_pattern.match(text)
            matches = [found] if found and found.group(1) in self.labels else []
            label_token = next((t for t in generation.tokens if t.token.strip()), None)
            explanation = (text[found.end() :] if found else generation.text).replace("##", "").strip()
        else:
            matches = [m for m in self._label_pattern.finditer(generation.text) if m.group(1) in self.labels][-1:]
            label_token = answer_token(generation.tokens, self.marker)
            explanation = explanation_before(generation.text, self.marker)
        parsed = int(matches[0].group(1)) if matches else None
        distribution = option_distribution(label_token, self.labels)
        if distribution is not None:
            score = sum(p * int(label) for label, p in distribution.items())
            label = parsed if parsed is not None else int(max(distribution, key=distribution.__getitem__))
            return Judgment(score, explanation, label), "label_from_logprobs"
        if parsed is not None:
            return Judgment(float(parsed), explanation, parsed), "label_from_text"
        return Judgment(0.0, explanation or None, None), "label_missing"

    def judge_with_stats(self, requests: Sequence[Request]) -> tuple[list[list[Judgment]], list[dict[str, int]]]:
        prompts = [self.prompt(r.query.text, c.text) for r in requests for c in r.candidates]
        generations = iter(self.backend.generate(prompts, self.params, desc=f"{self.name} pointwise"))
        judgments, stats = [], []
        for request in requests:
            counts: Counter[str] = Counter()
            row = []
            for candidate in request.candidates:
                judgment, source = self.read(next(generations))
                counts[source] += 1
                if source == "label_missing":
                    logger.warning(
                        "%s: no relevance label for query %s, document %s; scoring it 0",
                        self.name,
                        request.query.qid,
                        candidate.docid,
                    )
                row.append(judgment)
            judgments.append(row)
            stats.append(dict(counts))
        return judgments, stats


# rank1's answer tokens carry a leading space: the reference stops on "</think> true" / "</think> false".
RANK1_OPTIONS = (" true", " false")
THINK_END = "</think>"


def close_reasoning(prompt_text: str, generated: str) -> str:
    """rank1's fix for a reasoning cut off at max tokens: keep whole sentences, then close the thought."""
    text = generated.split(THINK_END)[0].rstrip()
    if not text.endswith((".", "!", "?")):
        last = max(text.rfind("."), text.rfind("!"), text.rfind("?"))
        if last != -1:
            text = text[: last + 1]
    return f"{prompt_text}\n{text.strip()}\n{THINK_END}"


class Rank1Reranker(_GenerativeScorer):
    """rank1: reason until ``</think>``, then p(true) / (p(true) + p(false)) on the next token."""

    def __init__(self, backend: LazyBackend, template: Template, max_new_tokens: int = 8192, top_logprobs: int = 20):
        if template.kind != "completion":
            raise UserError(f"template {template.id} is not a completion template (rank1 reads raw text)")
        self.backend = backend
        self.template = template
        self.params = marker_params(template, max_new_tokens, top_logprobs)

    def prompt_text(self, query: str, passage: str) -> str:
        return self.template.render("text", query=query, passage=cut_passage(passage, self.template))

    def judge_with_stats(self, requests: Sequence[Request]) -> tuple[list[list[Judgment]], list[dict[str, int]]]:
        texts = [self.prompt_text(r.query.text, c.text) for r in requests for c in r.candidates]
        # No messages: a plain completion of the raw text, since rank1 was trained without a chat template.
        generations = self.backend.generate([ChatPrompt((), t) for t in texts], self.params, desc=f"{self.name} rank1")
        scores: list[float | None] = []
        for generation in generations:
            distribution = option_distribution(answer_token(generation.tokens, THINK_END), ("true", "false"))
            complete = distribution is not None and min(distribution.values()) > 0
            scores.append(distribution["true"] if complete else None)
        unfinished = [i for i, score in enumerate(scores) if score is None]
        forced_set = set(unfinished)
        if unfinished:
            forced = [ChatPrompt((), close_reasoning(texts[i], generations[i].text)) for i in unfinished]
            forced_logprobs = self.backend.get().next_token_logprobs(forced, RANK1_OPTIONS)
            for i, logprobs in zip(unfinished, forced_logprobs, strict=True):
                scores[i] = _true_share(logprobs)
        judgments, stats, index = [], [], 0
        for request in requests:
            row, forced_count = [], 0
            for _ in request.candidates:
                forced_count += index in forced_set
                score = scores[index] if scores[index] is not None else 0.5
                reasoning = generations[index].text.split(THINK_END)[0].strip()
                row.append(Judgment(score, reasoning or None, int(score >= 0.5)))
                index += 1
            judgments.append(row)
            stats.append({"reasoning_closed_by_force": forced_count} if forced_count else {})
        return judgments, stats


def _true_share(logprobs: dict[str, float]) -> float:
    true, false = (math.exp(logprobs.get(option, -math.inf)) for option in RANK1_OPTIONS)
    return true / (true + false) if true + false > 0 else 0.5


def build_pointwise(
    model: str,
    backend: Backend | str = "transformers",
    template: str | Template = "pointwise/interank-v1",
    max_new_tokens: int = 512,
    top_logprobs: int = 5,
    temperature: float = 0.0,
    max_passage_words: int | None = None,
    **backend_options: Any,
) -> PointwiseReranker:
    """InteRank-style pointwise reasoning on any instruct model; ``backend_options`` go to the backend.

    ``max_passage_words`` cuts passages as an SFT run with the same setting cut them in training.
    """
    loaded = load_template(template)
    check_adapter_template(backend_options.get("adapter"), loaded.id)
    return PointwiseReranker(
        LazyBackend(backend, model, backend_options),
        loaded,
        max_new_tokens,
        top_logprobs,
        temperature,
        max_passage_words,
    )


def build_rank1(
    model: str,
    backend: Backend | str = "transformers",
    template: str | Template = "rank1/v1",
    max_new_tokens: int = 8192,
    top_logprobs: int = 20,
    **backend_options: Any,
) -> Rank1Reranker:
    """A rank1 checkpoint (``jhu-clsp/rank1-7b`` ...); 8192 new tokens and 20 alternatives as in its reference code."""
    lazy = LazyBackend(backend, model, backend_options)
    return Rank1Reranker(lazy, load_template(template), max_new_tokens, top_logprobs)
