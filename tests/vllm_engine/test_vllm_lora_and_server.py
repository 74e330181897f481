"""A LoRA adapter trained by reasonrank's own SFT command, served by vLLM's LoRA support; vLLM's OpenAI server
(chat and raw completions, logprobs) through the HTTP backend, round-robin over two servers."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml

from reasonrank.backends.base import ChatPrompt, GenerationParams
from reasonrank.backends.openai import OpenAICompatibleBackend

pytestmark = pytest.mark.slow
LABELS = ["0", "1", "2"]


def _label_prompts(test_data: Path) -> tuple[list[dict], list[ChatPrompt]]:
    """SciFact claims with their rationale sentences (label 2) and an unrelated claim's abstract (label 0)."""
    scifact = test_data / "scifact"
    claims = dict(line.split("\t", 1) for line in (scifact / "topics.train.tsv").read_text().splitlines())
    abstracts = {}
    with (scifact / "corpus.jsonl").open() as corpus:
        for line in corpus:
            document = json.loads(line)
            abstracts[document["_id"]] = document.get("text", "")
    rationales = [json.loads(line) for line in (scifact / "rationales.train.jsonl").read_text().splitlines()][:4]
    records = []
    for index, rationale in enumerate(rationales):
        claim = claims[rationale["qid"]]
        records.append({"query": claim, "passage": abstracts[rationale["docid"]][:600],
                        "explanation": f'The document states: "{rationale["rationale"][0][:200]}"', "label": 2})
        other = rationales[(index + 1) % len(rationales)]
        records.append({"query": claim, "passage": abstracts[other["docid"]][:600],
                        "explanation": "The document is about another finding than the claim.", "label": 0})
    prompts = [
        ChatPrompt.of(f"Is the document relevant to the claim? Claim: {r['query']}\nDocument: {r['passage'][:300]}",
                      assistant_prefix="Relevance Label: ")
        for r in records[:4]
    ]
    return records, prompts


@pytest.fixture(scope="module")
def adapter(model_folder, test_data, tmp_path_factory) -> Path:
    """A tiny LoRA (rank 8, q/v projections, 4 steps) trained with `python -m reasonrank.train.sft`."""
    folder = tmp_path_factory.mktemp("lora")
    records, _ = _label_prompts(test_data)
    data = folder / "explanations.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in records))
    config = folder / "sft.yaml"
    config.write_text(yaml.safe_dump({
        "model": str(model_folder), "data": str(data), "output": str(folder / "adapter"), "kind": "pointwise",
        "template": "pointwise/label-first-v1",
        "lora": {"r": 8, "lora_alpha": 16, "target_modules": ["q_proj", "v_proj"]},
        "max_length": 512, "max_steps": 4, "batch_size": 2, "learning_rate": 5.0e-3, "warmup_ratio": 0.0,
    }))
    done = subprocess.run([sys.executable, "-m", "reasonrank.train.sft", "--config", str(config)],
                          capture_output=True, text=True, timeout=1800, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert (folder / "adapter" / "adapter_config.json").is_file()
    return folder / "adapter"


def test_lora_adapter_served_by_vllm_matches_transformers(model_folder, adapter, test_data, engine,
                                                          engine_settings):
    """vLLM applies the adapter (LoRARequest) as transformers does (merged weights), and it changes the model."""
    from reasonrank.backends.transformers import TransformersBackend

    _, prompts = _label_prompts(test_data)
    engine_env, options = engine_settings
    base = engine.next_token_logprobs(prompts, LABELS)
    job = {
        "model": str(model_folder), "adapter": str(adapter), "engine": options, "labels": LABELS,
        "prompts": [{"messages": list(p.messages), "assistant_prefix": p.assistant_prefix} for p in prompts],
    }
    done = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("lora_probe.py"))], input=json.dumps(job),
        capture_output=True, text=True, timeout=1500,
        env={**os.environ, **engine_env, "VLLM_ENABLE_V1_MULTIPROCESSING": "0"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    with_lora = json.loads(done.stdout.strip().splitlines()[-1])
    merged = TransformersBackend(str(model_folder), adapter=str(adapter))
    expected = merged.next_token_logprobs(prompts, LABELS)
    moved = 0.0
    for ours, theirs, before in zip(with_lora, expected, base, strict=True):
        # Under LoRA the vLLM backend reads the top 20 alternatives: the likeliest label is always among them.
        assert max(LABELS, key=ours.get) == max(LABELS, key=theirs.get)
        for label in (label for label in LABELS if math.isfinite(ours[label])):
            assert ours[label] == pytest.approx(theirs[label], abs=0.3)
            moved = max(moved, abs(ours[label] - before[label]))
    assert moved > 0.3, "the adapter's four steps must change the label distribution"


@pytest.fixture(scope="module")
def http(servers):
    backend = OpenAICompatibleBackend(base_urls=servers, model="smollm2", concurrency=4, timeout=300)
    yield backend
    backend.close()


def _served_requests(url: str) -> float:
    metrics = httpx.get(url + "/metrics", timeout=10).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
               if line.startswith("vllm:request_success_total{"))


def test_chat_completions_with_logprobs_match_the_offline_engine(http, servers, engine):
    prompts = [ChatPrompt.of(f"Name a search engine ranking function. ({i})") for i in range(4)]
    before = [_served_requests(url) for url in servers]
    params = GenerationParams(max_new_tokens=8, top_logprobs=3)
    answers = http.generate(prompts, params)
    offline = engine.generate(prompts, params)
    for answer, local in zip(answers, offline, strict=True):
        assert answer.text == local.text and answer.completion_tokens == local.completion_tokens
        assert answer.prompt_tokens == local.prompt_tokens
        assert [t.token for t in answer.tokens] == [t.token for t in local.tokens]
        assert answer.tokens[0].logprob == pytest.approx(local.tokens[0].logprob, abs=1e-3)
        assert len(answer.tokens[0].top) == 3
    after = [_served_requests(url) for url in servers]
    assert all(b - a == 2 for a, b in zip(before, after, strict=True)), "round-robin over both servers"


def test_raw_completion_and_next_token_logprobs(http, engine):
    text = "Determine if the following passage is relevant to the query.\nQuery: fleas\nPassage: Fleas lay eggs.\n"
    raw = ChatPrompt((), text)
    answer, local = http.generate([raw], GenerationParams(max_new_tokens=6))[0], engine.generate(
        [raw], GenerationParams(max_new_tokens=6))[0]
    assert answer.text == local.text and answer.prompt_tokens == local.prompt_tokens
    label = ChatPrompt.of("Is 'Fleas lay eggs.' about fleas? Answer 0, 1 or 2.", assistant_prefix="Answer: ")
    rare = " zebra"  # a single token that no answer to this prompt starts with
    [greedy] = http.generate([label], GenerationParams(max_new_tokens=1, top_logprobs=20))
    assert rare not in greedy.tokens[0].top, "the option must lie outside the server's top 20"
    served = http.next_token_logprobs([label, raw], [*LABELS, rare])
    offline = engine.next_token_logprobs([label, raw], [*LABELS, rare])
    # vLLM's logprob_token_ids: every option's exact value, as the offline engine reads it from prompt logprobs.
    for remote, local in zip(served, offline, strict=True):
        assert remote == pytest.approx(local, abs=1e-3) and all(math.isfinite(v) for v in remote.values())
    assert served[0][rare] < greedy.tokens[0].top[greedy.tokens[0].token] - 5


def _whole_answer(url: str, path: str, body: dict) -> dict:
    """The same request, not streamed."""
    answer = httpx.post(url + path, json=body, timeout=300)
    assert answer.status_code == 200, answer.text
    return answer.json()["choices"][0] | {"usage": answer.json()["usage"]}


def test_streamed_answers_equal_the_servers_non_streamed_answers(http, servers):
    """Chat and raw completions: text, tokens, logprobs with alternatives, finish reason and usage, chunk by chunk
    as the one-piece answer holds them."""
    params = GenerationParams(max_new_tokens=12, top_logprobs=5)
    chat = ChatPrompt.of("Name a search engine ranking function.", assistant_prefix="One is")
    raw = ChatPrompt((), "BM25 is a ranking function that")
    streamed = http.generate([chat, raw], params)
    chat_whole = _whole_answer(servers[0], "/v1/chat/completions", http._chat_body(chat, params))
    raw_whole = _whole_answer(servers[0], "/v1/completions", http._completion_body(raw, params))
    for answer, whole in zip(streamed, (chat_whole, raw_whole), strict=True):
        assert (answer.prompt_tokens, answer.completion_tokens) == (
            whole["usage"]["prompt_tokens"], whole["usage"]["completion_tokens"])
        assert answer.finish_reason == whole["finish_reason"]
    assert streamed[0].text == chat_whole["message"]["content"] and streamed[1].text == raw_whole["text"]
    content, raw_logprobs = chat_whole["logprobs"]["content"], raw_whole["logprobs"]
    expected = [
        [(e["token"], e["logprob"], {a["token"]: a["logprob"] for a in e["top_logprobs"]}) for e in content],
        list(zip(raw_logprobs["tokens"], raw_logprobs["token_logprobs"], raw_logprobs["top_logprobs"], strict=True)),
    ]
    for answer, tokens in zip(streamed, expected, strict=True):
        assert [t.token for t in answer.tokens] == [token for token, _, _ in tokens]
        assert [list(t.top) for t in answer.tokens] == [list(top) for _, _, top in tokens]
        # Batched with other requests or not, float32 on the CPU agrees to rounding.
        assert [t.logprob for t in answer.tokens] == pytest.approx([logprob for _, logprob, _ in tokens], abs=1e-4)
        for mine, (_, _, top) in zip(answer.tokens, tokens, strict=True):
            assert mine.top == pytest.approx(top, abs=1e-4)
