"""Pointwise reasoning rerankers: each candidate alone, the model reasons, then judges.

* :class:`PointwiseReranker` — InteRank / R2R direct reasoning: an explanation ending in ``Relevance Label: 0|1|2``.
  The score is the expected label Σ p(l)·l over the label tokens right after the marker (renormalised over the
  labels), so two passages both labelled 2 are still told apart; the parsed integer is the fallback. A template
  with ``label_first: true`` turns the order round: the marker is written into the answer for the model, the label
  is its first token and the explanation follows, so the score never waits on (or goes missing in) the reasoning.
* :class:`Rank1Reranker` — rank1: reasoning until ``</think>``, score p(true) / (p(true) + p(false)) at the token
  after it, as in rank1's reference code (``orionw/rank1``, ``rank1.py``).
"""

from __future__ import annotations

import logging
import math
import re
from abc import abstractmethod
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from reasonrank.backends.base import Backend, ChatPrompt, Generation, MultiTokenOption
from reasonrank.errors import UserError
from reasonrank.prompts import Template, load_template
from reasonrank.prompts.builders import cut_passage
from reasonrank.prompts.readers import answer_token, explanation_before, option_distribution, option_token
from reasonrank.rerank.base import ScoringReranker
from reasonrank.rerank.generation import LazyBackend, marker_params
from reasonrank.types import ExplanationFrom, Judgment, Ranking, Request
from reasonrank.weights import check_adapter_template

logger = logging.getLogger(__name__)
POINTWISE = ExplanationFrom.POINTWISE


class _GenerativeScorer(ScoringReranker):
    """A scoring reranker on a generative backend that also counts events per query for ``Ranking.stats``."""

    backend: LazyBackend

    @abstractmethod
    def judge_with_stats(self, requests: Sequence[Request]) -> tuple[list[list[Judgment]], list[dict[str, int]]]:
        """Judgments per request, and event counts per request."""

    def judge(self, requests: Sequence[Request]) -> list[list[Judgment]]:
        return self.judge_with_stats(requests)[0]

    @property
    def queries_per_step(self) -> int:
        return self.backend.queries_per_step

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
        chat = ChatPrompt.of(user, system=system, assistant_prefix=self.marker if self.label_first else "")
        return replace(chat, add_special_tokens=self.template.setting("add_special_tokens", False))

    def read(self, generation: Generation) -> tuple[Judgment, str]:
        """A judgment from one generation, and where its score came from (for ``Ranking.stats``)."""
        if self.label_first:
            # The marker was the answer's prefix: the label is the first token written, the explanation the rest.
            text = self.marker + generation.text
            found = self._label_pattern.match(text)
            matches = [found] if found and found.group(1) in self.labels else []
            label_token = option_token(generation.tokens, self.labels)
            explanation = (text[found.end() :] if found else generation.text).replace("##", "").strip()
        else:
            matches = [m for m in self._label_pattern.finditer(generation.text) if m.group(1) in self.labels][-1:]
            label_token = answer_token(generation.tokens, self.marker, self.labels)
            explanation = explanation_before(generation.text, self.marker)
        parsed = int(matches[0].group(1)) if matches else None
        distribution = option_distribution(label_token, self.labels)
        if distribution is not None:
            score = sum(p * int(label) for label, p in distribution.items())
            label = parsed if parsed is not None else int(max(distribution, key=distribution.__getitem__))
            return Judgment(score, explanation, label, POINTWISE), "label_from_logprobs"
        if parsed is not None:
            return Judgment(float(parsed), explanation, parsed, POINTWISE), "label_from_text"
        return Judgment(0.0, explanation or None, None, POINTWISE), "label_missing"

    def judge_with_stats(self, requests: Sequence[Request]) -> tuple[list[list[Judgment]], list[dict[str, int]]]:
        prompts = [self.prompt(r.query.text, c.text) for r in requests for c in r.candidates]
        generations = self.backend.generate(prompts, self.params, desc=f"{self.name} pointwise")
        reads = [self.read(g) for g in generations]
        cut = [
            i
            for i, (g, (_, source)) in enumerate(zip(generations, reads, strict=True))
            if source == "label_missing" and g.finish_reason == "length" and not self.label_first
        ]
        if cut:
            forced = self.force_labels([prompts[i] for i in cut], [generations[i].text for i in cut])
            for i, judgment in zip(cut, forced, strict=True):
                reads[i] = judgment, "label_forced_after_length"
        judged = iter(reads)
        judgments, stats = [], []
        for request in requests:
            counts: Counter[str] = Counter()
            row = []
            for candidate in request.candidates:
                judgment, source = next(judged)
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

    def force_labels(self, prompts: Sequence[ChatPrompt], texts: Sequence[str]) -> list[Judgment]:
        """Labels for explanations cut by ``max_new_tokens``: the explanation, then the marker, written for the
        model, and the expected label under its next-token distribution over the labels (as rank1 closes a cut
        reasoning). Labels follow the marker after a space, as the model writes them: as one token (" 2") where the
        tokenizer has one, else the space is written too and the label read after it (SmolLM2 spells " 2" as a
        space token, then "2")."""
        continued = [
            replace(prompt, assistant_prefix=f"{text.rstrip()}\n{self.marker}")
            for prompt, text in zip(prompts, texts, strict=True)
        ]
        options = [f" {label}" for label in self.labels]
        try:
            distributions = self.backend.get().next_token_logprobs(continued, options)
        except MultiTokenOption:  # " 2" is not one token for this tokenizer
            continued = [replace(prompt, assistant_prefix=prompt.assistant_prefix + " ") for prompt in continued]
            options = list(self.labels)
            distributions = self.backend.get().next_token_logprobs(continued, options)
        judgments = []
        for text, logprobs in zip(texts, distributions, strict=True):
            weights = [math.exp(logprobs.get(option, -math.inf)) for option in options]
            total = sum(weights)
            if total <= 0:
                judgments.append(Judgment(0.0, explanation_before(text, self.marker) or None, None, POINTWISE))
                continue
            score = sum(w * int(label) for w, label in zip(weights, self.labels, strict=True)) / total
            best = self.labels[max(range(len(weights)), key=weights.__getitem__)]
            judgments.append(Judgment(score, explanation_before(text, self.marker) or None, int(best), POINTWISE))
        return judgments


# rank1's answer tokens carry a leading space: the reference stops on "</think> true" / "</think> false".
RANK1_OPTIONS = (" true", " false")
RANK1_LABELS = ("true", "false")
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
        special = self.template.setting("add_special_tokens", False)  # a string prompt to vLLM gets the BOS
        generations = self.backend.generate(
            [ChatPrompt((), t, add_special_tokens=special) for t in texts], self.params, desc=f"{self.name} rank1"
        )
        scores: list[float | None] = []
        for generation in generations:
            distribution = option_distribution(answer_token(generation.tokens, THINK_END, RANK1_LABELS), RANK1_LABELS)
            complete = distribution is not None and min(distribution.values()) > 0
            scores.append(distribution["true"] if complete else None)
        unfinished = [i for i, score in enumerate(scores) if score is None]
        forced_set = set(unfinished)
        if unfinished:
            forced = [
                ChatPrompt((), close_reasoning(texts[i], generations[i].text), add_special_tokens=special)
                for i in unfinished
            ]
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
                row.append(Judgment(score, reasoning or None, int(score >= 0.5), ExplanationFrom.RANK1_REASONING))
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
    template: str | Template = "rank1/v2",
    max_new_tokens: int = 8192,
    top_logprobs: int = 20,
    **backend_options: Any,
) -> Rank1Reranker:
    """A rank1 checkpoint (``jhu-clsp/rank1-7b`` ...); 8192 new tokens and 20 alternatives as in its reference code."""
    lazy = LazyBackend(backend, model, backend_options)
    return Rank1Reranker(lazy, load_template(template), max_new_tokens, top_logprobs)
