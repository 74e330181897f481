"""InteRank's refinement data: a judge scores every answer to a prompt, and the scores become pairs or weights.

For each teacher record (query, passage, the teacher's explanation and label) the student samples ``k`` answers;
the teacher's own answer joins them as one more candidate, and each candidate gets a score. Then, as algoprog/InteRank
``score_outputs.py`` does (commit 55b182a, the only one holding its refinement code):

* :func:`preference_pair` (its ``create_preference_pairs``): the highest-scored candidate is *chosen*, the
  lowest-scored *rejected* (the first of equals, as Python's ``max``/``min``); no pair when they are the same one;
* :func:`reference_rewards` (its ``create_single_items`` with ``boosted``): scores min-max normalised over the
  prompt's candidates (all 1 when they are equal), kept at ``min_reward`` or more, multiplied by the share of
  sampled labels that differ from the teacher's, kept above 0. The trainer weighs each kept answer's NLL by
  the reward cubed (its ``RewardWeightedSFTTrainer``).

The score is the judge's rubric verdict (:func:`rubric_scores`: template ``judge/interank-rubric-v1``, the
reference's 5-point rubric, read from the JSON's ``final_score``), a sequence-classification reward model's logit
(:class:`RewardModel`: what ``score_outputs.py`` itself scores with), the built-in rewards, or a weighted sum.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)
JUDGE_TEMPLATE = "judge/interank-rubric-v1"
JUDGE_MAX_NEW_TOKENS = 1024  # reward_model.py's SamplingParams(max_tokens=1024)
REWARD_MODEL_TEMPLATE = "reward-model/interank-v1"
REWARD_MODEL_KEYS = frozenset({"model", "batch_size", "dtype", "device", "template"})
_FINAL_SCORE = re.compile(r'"final_score"\s*:\s*(-?\d+(?:\.\d+)?)')


@dataclass(frozen=True, slots=True)
class ScoredAnswer:
    """One answer to a prompt: the completion text as trained on, the label read from it, and its score."""

    text: str
    label: int | None
    score: float


def judged_score(response: str) -> float | None:
    """``final_score`` of the judge's JSON verdict (code fences stripped, as the reference does); None if absent.

    A small judge often writes JSON that does not parse; the score is then read from its ``"final_score": x``.
    """
    text = response.replace("```json", "").replace("```", "").strip()
    start, end = text.find("{"), text.rfind("}")
    if 0 <= start < end:
        try:
            value = json.loads(text[start : end + 1]).get("final_score")
            if isinstance(value, int | float) and not isinstance(value, bool):
                return float(value)
        except (json.JSONDecodeError, AttributeError):
            pass
    found = _FINAL_SCORE.search(text)
    return float(found.group(1)) if found else None


def answer_parts(completion: str, answer_template: Any) -> tuple[str, int | None]:
    """A pointwise answer's explanation (the stop symbol dropped) and the label the reader takes from it.

    Explanation first, the explanation is what precedes the marker; label first (``label_first``), what follows the
    label.
    """
    from reasonrank.prompts.readers import explanation_before
    from reasonrank.train.reward import label_pattern, parsed_label

    label = parsed_label(completion, answer_template)
    if not answer_template.setting("label_first"):
        return explanation_before(completion, answer_template.setting("marker", "Relevance Label:")), label
    stated = label_pattern(answer_template).search(completion)
    rest = completion[stated.end() :].lstrip("*") if stated else completion
    return rest.replace("##", "").strip(), label


def rubric_scores(backend: Any, judge_template: Any, answer_template: Any, completions: Sequence[str],
                  records: Sequence[dict[str, Any]], max_new_tokens: int = JUDGE_MAX_NEW_TOKENS) -> list[float]:
    """The judge's rubric score (0–5) of each completion, all in one backend call (greedy, as the reference).

    The judge reads the explanation (the text before the answer template's marker) and the label read by the
    pointwise reader. A verdict with no readable ``final_score`` counts as 0, the rubric's floor (the reference
    leaves it None, which its pair builder cannot compare).
    """
    from reasonrank.backends.base import ChatPrompt, GenerationParams

    prompts = []
    for completion, record in zip(completions, records, strict=True):
        explanation, label = answer_parts(completion, answer_template)
        user = judge_template.render("user", query=record["query"], passage=record["passage"],
                                     explanation=explanation, label="" if label is None else label)
        system = judge_template.sections.get("system")
        prompts.append(ChatPrompt.of(user, system=system))
    generations = backend.generate(prompts, GenerationParams(max_new_tokens=max_new_tokens, temperature=0.0))
    scores = [judged_score(g.text) for g in generations]
    unread = sum(score is None for score in scores)
    if unread:
        log.warning("%d of %d judge verdicts had no readable final_score; scored 0", unread, len(scores))
    return [0.0 if score is None else score for score in scores]


def preference_pair(candidates: Sequence[ScoredAnswer]) -> tuple[ScoredAnswer, ScoredAnswer] | None:
    """(chosen, rejected): the best- and worst-scored candidates, or None when that is one and the same."""
    best = max(candidates, key=lambda c: c.score)
    worst = min(candidates, key=lambda c: c.score)
    return None if best == worst else (best, worst)


def reference_rewards(candidates: Sequence[ScoredAnswer], teacher_label: int, min_reward: float,
                      boosted: bool = True) -> list[float | None]:
    """Each candidate's reward in [0, 1], or None where the reference drops it (see the module's description).

    The last candidate is the teacher's; the misclassification share counts the sampled ones only.
    """
    scores = [c.score for c in candidates]
    low, spread = min(scores), max(scores) - min(scores)
    sampled = candidates[:-1]
    misclassified = sum(c.label != teacher_label for c in sampled) / len(sampled) if sampled else 0.0
    rewards: list[float | None] = []
    for score in scores:
        reward = (score - low) / spread if spread else 1.0
        if reward < min_reward:
            rewards.append(None)
            continue
        reward *= misclassified if boosted else 1.0
        rewards.append(reward if reward > 0 else None)
    return rewards


def reward_conversation(template: Any, completion: str, record: dict[str, Any],
                        answer_template: Any) -> list[dict[str, str]]:
    """The (question, answer) conversation a reward model scores, the answer rebuilt in the reference's format."""
    explanation, label = answer_parts(completion, answer_template)
    return [
        {"role": "user", "content": template.render("user", query=record["query"], passage=record["passage"])},
        {"role": "assistant", "content": template.render("assistant", explanation=explanation,
                                                         label="" if label is None else label)},
    ]


class RewardModel:
    """A sequence-classification reward model's score of each answer, as ``score_outputs.py`` computes it.

    The reference rebuilds every answer as a conversation (its relevance prompt with the label definitions, then
    ``"{explanation}\n\nRelevance Label: {label} ##"``: template ``reward-model/interank-v1``), applies the reward
    model's chat template, right-pads batches with the pad token (batches of 2) and takes the one logit
    (Skywork/Skywork-Reward-Llama-3.1-8B-v0.2, loaded in bfloat16 and cast to float16). Right padding leaves a causal
    model's outputs before the padding unchanged, and the classifier reads the last token that is not padding, so a
    score does not depend on the batch it was computed in. An answer without a readable label gets an empty label,
    as the rubric judge does.
    """

    def __init__(self, model: str, batch_size: int = 2, dtype: str | None = None, device: str | None = None,
                 template: str = REWARD_MODEL_TEMPLATE):
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        from reasonrank.errors import UserError
        from reasonrank.prompts import load_template
        from reasonrank.weights import locate_model, offline_hint

        self.template = load_template(template)
        if self.template.kind != "reward-model":
            raise UserError(f"reward_model: template {template} is a {self.template.kind} template, "
                            "not a reward-model one")
        if batch_size < 1:
            raise UserError(f"reward_model: batch_size must be at least 1, got {batch_size}")
        if dtype is not None and not isinstance(getattr(torch, str(dtype), None), torch.dtype):
            raise UserError(f"reward_model: dtype {dtype!r} is not a torch dtype (float32, bfloat16, float16)")
        location = locate_model(model)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(location.path, gguf_file=location.gguf_file)
            self.model = AutoModelForSequenceClassification.from_pretrained(
                location.path, gguf_file=location.gguf_file, num_labels=1,
                dtype=getattr(torch, dtype) if dtype else "auto")
        except OSError as error:
            if location.is_local:
                raise UserError(f"reward_model: cannot load {model!r} as a sequence classifier: {error}") from None
            raise offline_hint(model, error) from None
        self.pad_id = self.tokenizer.pad_token_id
        if self.pad_id is None:
            self.pad_id = self.tokenizer.eos_token_id
        if self.model.config.pad_token_id is None:
            self.model.config.pad_token_id = self.pad_id
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model.to(self.device).eval()
        self.batch_size = batch_size

    def __call__(self, answer_template: Any, completions: Sequence[str],
                 records: Sequence[dict[str, Any]]) -> list[float]:
        import torch

        token_ids = [
            list(self.tokenizer.apply_chat_template(reward_conversation(self.template, c, r, answer_template),
                                                    tokenize=True, return_dict=True)["input_ids"])
            for c, r in zip(completions, records, strict=True)
        ]
        scores: list[float] = []
        for start in range(0, len(token_ids), self.batch_size):
            batch = token_ids[start : start + self.batch_size]
            longest = max(len(ids) for ids in batch)
            input_ids = torch.tensor([ids + [self.pad_id] * (longest - len(ids)) for ids in batch])
            mask = torch.tensor([[1] * len(ids) + [0] * (longest - len(ids)) for ids in batch])
            with torch.no_grad():
                logits = self.model(input_ids=input_ids.to(self.device), attention_mask=mask.to(self.device)).logits
            scores.extend(logits[:, 0].float().tolist())
        return scores

    def close(self) -> None:
        del self.model
