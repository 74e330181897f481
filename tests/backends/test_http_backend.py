"""OpenAICompatibleBackend against reasonrank's own server around SmolLM2, on loopback ports only."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math

import pytest
from test_backends import relevance_prompts

from reasonrank.backends.base import ChatPrompt, GenerationParams
from reasonrank.backends.openai import OpenAICompatibleBackend
from reasonrank.errors import UserError
from reasonrank.serve.openai_server import background_server, create_app

SERVED = "smollm2"


class Scripted:
    """Test-only ASGI wrapper: counts chat requests and answers the first ones with scripted faults.

    A fault is an HTTP status (answered without calling the model) or "hang" (no answer until the
    client hangs up, at most 30 s, so that no test can wait forever).
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
            if fault is not None:
                body = json.dumps({"error": {"message": f"scripted fault {fault}", "code": fault}}).encode()
                headers = [(b"content-type", b"application/json")]
                await send({"type": "http.response.start", "status": fault, "headers": headers})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


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
def test_http_results_equal_in_process_results(smollm, app, prompts):
    params = GenerationParams(max_new_tokens=8, top_logprobs=3)
    prefixed = ChatPrompt(prompts[0].messages, assistant_prefix="Relevance:")
    expected = smollm.generate([*prompts, prefixed], params)
    with background_server(app) as url:
        remote = client(url + "/v1")
        got = remote.generate([*prompts, prefixed], params)
        scores = remote.next_token_logprobs(prompts, ["0", "1", "2", "never-a-token"])
        remote.close()
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
        remote = client(url, timeout=8, max_retries=2)
        got = remote.generate(prompts[:1], GenerationParams(max_new_tokens=2))
        remote.close()
    assert flaky.calls == 2 and got[0].completion_tokens > 0
    assert caplog.text.count("no answer within the timeout; generating it again (retry 1)") == 1


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


def test_raw_text_prompts_use_the_completions_endpoint():
    """A prompt without messages (rank1's raw text) goes to /v1/completions with its logprobs count."""
    from fastapi import FastAPI

    received = []
    completions = FastAPI()

    @completions.post("/v1/completions")
    def complete(body: dict) -> dict:
        received.append(body)
        return {"choices": [{"text": " true", "finish_reason": "stop", "logprobs": {
            "tokens": [" true"], "token_logprobs": [-0.1], "top_logprobs": [{" true": -0.1, " false": -2.4}]}}],
            "usage": {"prompt_tokens": 7, "completion_tokens": 1}}

    with background_server(completions) as url:
        remote = client(url)
        prompt = ChatPrompt((), "Determine if the passage is relevant.</think>")
        [generation] = remote.generate([prompt], GenerationParams(max_new_tokens=1, top_logprobs=2))
        [options] = remote.next_token_logprobs([prompt], [" true", " false", " maybe"])
        remote.close()
    assert received[0]["prompt"] == prompt.assistant_prefix and received[0]["logprobs"] == 2
    assert "messages" not in received[0]
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
    def complete(body: dict) -> dict:
        received.append(body)
        return {"choices": [{"message": {"content": "[1] > [2]"}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 5, "completion_tokens": 4}}

    with background_server(chat) as url:
        remote = client(url)
        remote.generate([ChatPrompt.of("Rank.")], GenerationParams(temperature=0.5, top_p=0.9, top_k=50))
        remote.generate([ChatPrompt.of("Rank.")], GenerationParams(temperature=0.5, top_p=0.9))
        remote.close()
    assert received[0]["top_k"] == 50 and "top_k" not in received[1]
    _, params = to_prompt(ChatRequest(messages=[{"role": "user", "content": "Rank."}], top_k=50))
    assert params.top_k == 50
