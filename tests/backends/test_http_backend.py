"""OpenAICompatibleBackend against reasonrank's own server around SmolLM2, on loopback ports only."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math

import pytest
from fastapi.responses import StreamingResponse
from test_backends import relevance_prompts

from reasonrank.backends.base import ChatPrompt, GenerationParams
from reasonrank.backends.openai import OpenAICompatibleBackend
from reasonrank.errors import UserError
from reasonrank.serve.openai_server import background_server, create_app

SERVED = "smollm2"


class Scripted:
    """Test-only ASGI wrapper: counts chat requests and answers the first ones with scripted faults.

    A fault is an HTTP status (answered without calling the model), "hang" (no answer until the
    client hangs up, at most 30 s, so that no test can wait forever) or "cut" (the connection dropped
    after the stream's first event, the one with the answer's text).
    """

    def __init__(self, app, faults=()) -> None:
        self.app = app
        self.faults = list(faults)
        self.calls = 0

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["path"] == "/v1/chat/completions":
            self.calls += 1
            fault = self.faults.pop(0) if self.faults else None
            if fault == "hang":
                # The first message is the request body; the next arrives when the client hangs up.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(_hang_up(receive), timeout=30)
                return
            if fault == "cut":
                with contextlib.suppress(_Cut):
                    await self.app(scope, receive, _cut_after_first_event(send))
                return
            if fault is not None:
                body = json.dumps({"error": {"message": f"scripted fault {fault}", "code": fault}}).encode()
                headers = [(b"content-type", b"application/json")]
                await send({"type": "http.response.start", "status": fault, "headers": headers})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


class _Cut(Exception):
    pass


def _cut_after_first_event(send):
    async def cutting(message) -> None:
        await send(message)
        if message["type"] == "http.response.body" and message.get("body"):
            raise _Cut  # the app stops there and the server closes the connection mid-body
    return cutting


async def _hang_up(receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


@pytest.fixture(scope="module")
def app(smollm):
    return create_app(smollm, SERVED)


@pytest.fixture(scope="module")
def prompts(test_data):
    return relevance_prompts(test_data, count=2)


def client(urls, **options) -> OpenAICompatibleBackend:
    return OpenAICompatibleBackend(urls, SERVED, api_key="", **{"backoff": 0.05, **options})


@pytest.mark.slow
def test_http_results_equal_in_process_results(smollm, app, prompts, caplog):
    params = GenerationParams(max_new_tokens=8, top_logprobs=3)
    prefixed = ChatPrompt(prompts[0].messages, assistant_prefix="Relevance:")
    expected = smollm.generate([*prompts, prefixed], params)
    with background_server(app) as url:
        remote = client(url + "/v1")
        got = remote.generate([*prompts, prefixed], params)
        with caplog.at_level(logging.WARNING):
            scores = remote.next_token_logprobs(prompts, ["0", "1", "2", "never-a-token"])
            remote.next_token_logprobs(prompts[:1], ["0"])
        remote.close()
    # This server has no /tokenize and no logprob_token_ids: the top 20, said once.
    refusal = "/tokenize does not tokenize (HTTP 404): option log-probabilities come from the top 20"
    assert caplog.text.count(refusal) == 1
    assert [g.text for g in got] == [g.text for g in expected]  # order kept, prefix honoured
    assert [(g.prompt_tokens, g.completion_tokens, g.finish_reason) for g in got] == [
        (g.prompt_tokens, g.completion_tokens, g.finish_reason) for g in expected
    ]
    for mine, theirs in zip(got, expected, strict=True):
        assert [t.token for t in mine.tokens] == [t.token for t in theirs.tokens]
        assert [t.logprob for t in mine.tokens] == pytest.approx([t.logprob for t in theirs.tokens], abs=1e-4)
        assert [list(t.top) for t in mine.tokens] == [list(t.top) for t in theirs.tokens]
    direct = smollm.next_token_logprobs(prompts, ["0", "1", "2"])
    for remote_score, local_score in zip(scores, direct, strict=True):
        assert remote_score["never-a-token"] == -math.inf  # outside the top 20
        for option, value in local_score.items():
            if remote_score[option] != -math.inf:
                assert remote_score[option] == pytest.approx(value, abs=1e-4)


@pytest.mark.slow
def test_requests_alternate_between_servers(app, prompts):
    first, second = Scripted(app), Scripted(app)
    with background_server(first) as url_a, background_server(second) as url_b:
        remote = client([url_a, url_b], concurrency=2)
        got = remote.generate([prompts[0]] * 4, GenerationParams(max_new_tokens=2))
        remote.close()
    assert (first.calls, second.calls) == (2, 2)
    assert len({g.text for g in got}) == 1


@pytest.mark.slow
def test_timeout_then_success_on_retry(app, prompts, caplog):
    flaky = Scripted(app, faults=["hang"])
    with background_server(flaky) as url, caplog.at_level(logging.WARNING):
        remote = client(url, timeout=15, max_retries=2)
        got = remote.generate(prompts[:1], GenerationParams(max_new_tokens=2))
        remote.close()
    assert flaky.calls == 2 and got[0].completion_tokens > 0
    assert caplog.text.count("nothing arrived within the 15 s timeout; generating the answer again from the start "
                             "(retry 1, greedy, so the same answer is expected)") == 1


@pytest.mark.slow
def test_a_stream_cut_after_its_text_is_regenerated_with_a_warning(app, prompts, caplog):
    params = GenerationParams(max_new_tokens=6, temperature=0.7, seed=3)
    with background_server(app) as url:
        expected = client(url).generate(prompts[:1], params)
    flaky = Scripted(app, faults=["cut"])
    with background_server(flaky) as url, caplog.at_level(logging.WARNING):
        remote = client(url, max_retries=1)
        got = remote.generate(prompts[:1], params)
        remote.close()
    assert flaky.calls == 2 and got == expected  # the cut answer's text is not kept: the retry's answer is whole
    cut = [r.getMessage() for r in caplog.records if "stream was cut" in r.getMessage()]
    assert len(cut) == 1 and f"cut after {len(expected[0].text)} characters" in cut[0]
    assert "regenerating the answer from the start (retry 1, sampled, so it may differ)" in cut[0]


@pytest.mark.slow
def test_streamed_answer_equals_the_server_non_streamed_answer(app, prompts):
    """Text, tokens, logprobs, alternatives, finish reason and usage as the one-piece JSON answer holds them."""
    import httpx

    params = GenerationParams(max_new_tokens=5, top_logprobs=3)
    with background_server(app) as url:
        remote = client(url)
        [streamed] = remote.generate(prompts[:1], params)
        whole = httpx.post(url + "/v1/chat/completions", json=remote._chat_body(prompts[0], params), timeout=120).json()
        remote.close()
    [choice] = whole["choices"]
    assert streamed.text == choice["message"]["content"] and streamed.finish_reason == choice["finish_reason"]
    assert (streamed.prompt_tokens, streamed.completion_tokens) == (
        whole["usage"]["prompt_tokens"], whole["usage"]["completion_tokens"])
    assert [(t.token, t.logprob, t.top) for t in streamed.tokens] == [
        (e["token"], e["logprob"], {a["token"]: a["logprob"] for a in e["top_logprobs"]})
        for e in choice["logprobs"]["content"]
    ]


@pytest.mark.slow
def test_server_errors_are_retried_and_rate_limits_too(app, prompts):
    flaky = Scripted(app, faults=[500, 429])
    with background_server(flaky) as url:
        remote = client(url, max_retries=3)
        got = remote.generate(prompts[:1], GenerationParams(max_new_tokens=2))
        remote.close()
    assert flaky.calls == 3 and got[0].text


def test_client_errors_fail_fast_with_the_server_message(prompts):
    from fastapi import FastAPI

    broken = Scripted(FastAPI(), faults=[400, 400])
    with background_server(broken) as url:
        remote = client(url, max_retries=3)
        with pytest.raises(UserError, match=r"HTTP 400\): scripted fault 400"):
            remote.generate(prompts[:1], GenerationParams(max_new_tokens=2))
        remote.close()
    assert broken.calls == 1


@pytest.mark.slow
def test_real_server_rejections(app, prompts):
    import httpx

    with background_server(app) as url:
        assert httpx.get(url + "/health").json() == {"status": "ok"}
        assert httpx.get(url + "/v1/models").json()["data"][0]["id"] == SERVED
        wrong = OpenAICompatibleBackend(url, "gpt-4o", api_key="", max_retries=3)
        with pytest.raises(UserError, match=r"HTTP 404.*does not exist"):
            wrong.generate(prompts[:1], GenerationParams(max_new_tokens=2))
        wrong.close()
        body = {"model": SERVED, "messages": [{"role": "user", "content": "hi"}], "continue_final_message": True}
        answer = httpx.post(url + "/v1/chat/completions", json={**body, "add_generation_prompt": False})
        assert answer.status_code == 400 and "assistant message last" in answer.json()["error"]["message"]
        answer = httpx.post(url + "/v1/chat/completions", json={**body, "temperature": -1})
        assert answer.status_code == 400 and "temperature" in answer.json()["error"]["message"]


def test_unreachable_server_gives_up_after_the_retries(prompts):
    import socket

    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    remote = client(f"http://127.0.0.1:{port}", max_retries=2, timeout=2)
    with pytest.raises(UserError, match=r"no answer after 3 tries.*ConnectError"):
        remote.generate(prompts[:1], GenerationParams(max_new_tokens=2))
    remote.close()


def test_server_command_reports_a_bad_model_in_one_line(tmp_path, capsys):
    from reasonrank.serve.openai_server import main

    assert main(["--model", str(tmp_path), "--port", "0"]) == 2  # a folder with no model in it
    error = capsys.readouterr().err.strip()
    assert error.startswith(f"error: could not load model from {tmp_path}") and "\n" not in error


def events(*chunks: dict, done: bool = True):
    """A fake server's answer as server-sent events."""
    lines = [f"data: {json.dumps(chunk)}\n\n" for chunk in chunks] + (["data: [DONE]\n\n"] if done else [])
    return StreamingResponse(iter(lines), media_type="text/event-stream")


def test_a_stream_without_its_end_or_with_an_error_event_is_retried_then_reported():
    from fastapi import FastAPI

    answers = [events({"choices": [{"delta": {"content": "[1]"}}]}, done=False),
               events({"error": {"message": "engine died", "code": 500}})]
    chat = FastAPI()

    @chat.post("/v1/chat/completions")
    def complete(body: dict) -> StreamingResponse:
        return answers.pop(0)

    with background_server(chat) as url:
        remote = client(url, max_retries=1)
        with pytest.raises(UserError, match=r"no answer after 2 tries \(StreamBroken from .*: engine died\)"):
            remote.generate([ChatPrompt.of("Rank.")], GenerationParams(max_new_tokens=2))
        remote.close()
    assert answers == []


def test_raw_text_prompts_use_the_completions_endpoint():
    """A prompt without messages (rank1's raw text) goes to /v1/completions with its logprobs count."""
    from fastapi import FastAPI
    received = []
    completions = FastAPI()

    @completions.post("/v1/completions")
    def complete(body: dict) -> StreamingResponse:
        received.append(body)
        return events({"choices": [{"text": " true", "finish_reason": "stop", "logprobs": {
            "tokens": [" true"], "token_logprobs": [-0.1], "top_logprobs": [{" true": -0.1, " false": -2.4}]}}]},
            {"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 1}})

    with background_server(completions) as url:
        remote = client(url)
        prompt = ChatPrompt((), "Determine if the passage is relevant.</think>")
        [generation] = remote.generate([prompt], GenerationParams(max_new_tokens=1, top_logprobs=2))
        [options] = remote.next_token_logprobs([prompt], [" true", " false", " maybe"])
        remote.close()
    assert received[0]["prompt"] == prompt.assistant_prefix and received[0]["logprobs"] == 2
    assert "messages" not in received[0] and received[0]["stream"] is True
    assert received[0]["stream_options"] == {"include_usage": True}
    assert generation.text == " true" and generation.tokens[0].top == {" true": -0.1, " false": -2.4}
    assert generation.prompt_tokens == 7
    assert options == {" true": -0.1, " false": -2.4, " maybe": -math.inf}


def test_top_k_is_sent_only_when_set_and_the_local_server_honours_it():
    """top_k is vLLM's extension to the OpenAI request: sent for templates that set it (DeAR-L), never otherwise,
    and reasonrank's own OpenAI server passes it on to its backend."""
    from fastapi import FastAPI

    from reasonrank.serve.openai_server import ChatRequest, to_prompt

    received = []
    chat = FastAPI()

    @chat.post("/v1/chat/completions")
    def complete(body: dict) -> StreamingResponse:
        received.append(body)
        return events({"choices": [{"delta": {"content": "[1] > [2]"}, "finish_reason": "stop"}]})

    with background_server(chat) as url:
        remote = client(url)
        remote.generate([ChatPrompt.of("Rank.")], GenerationParams(temperature=0.5, top_p=0.9, top_k=50))
        remote.generate([ChatPrompt.of("Rank.")], GenerationParams(temperature=0.5, top_p=0.9))
        remote.close()
    assert received[0]["top_k"] == 50 and "top_k" not in received[1]
    _, params = to_prompt(ChatRequest(messages=[{"role": "user", "content": "Rank."}], top_k=50))
    assert params.top_k == 50
