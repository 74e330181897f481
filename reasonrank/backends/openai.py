"""An OpenAI-compatible HTTP server (vLLM, SGLang, ``reasonrank.serve.openai_server``) as a Backend.

Each prompt is one ``/v1/chat/completions`` request (``/v1/completions`` for a raw-text prompt without
messages), sent with ``stream: true`` and read as server-sent events: text, per-token logprobs with their
alternatives, the finish reason and the usage (``stream_options: {include_usage: true}``) are put together from
the chunks as the non-streaming answer holds them. Streaming is what lets a reasoning model write for minutes: the
read timeout bounds the silence between two chunks, not the whole answer.

Requests run concurrently on a thread pool, go round-robin over one or more base URLs, and are retried on
timeouts, connection errors, cut streams, 429 and 5xx with exponential backoff (a retry moves on to the next URL).
A retry generates the answer again from the start, and says so in a warning, with whether the request was greedy
(the same answer comes back) or sampled (it need not). Any other 4xx is the caller's mistake and is raised at once
with the server's message. Results keep the input order.

``ChatPrompt.assistant_prefix`` is sent as a final assistant message with vLLM's extensions
``continue_final_message: true`` and ``add_generation_prompt: false``, so the model continues that
text rather than starting a new turn. The hosted OpenAI API has no such option and rejects the request.
Likewise ``add_special_tokens`` (a BOS token on top of the chat template, or none before a raw prompt) and
``skip_special_tokens: false`` are vLLM's extensions, sent only when they differ from the server's default.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from itertools import count
from typing import Any

import httpx
from tqdm.auto import tqdm

from reasonrank.backends.base import (
    Backend,
    ChatPrompt,
    Generation,
    GenerationParams,
    TokenLogprobs,
    option_token_id,
)
from reasonrank.errors import UserError

logger = logging.getLogger(__name__)

# vLLM's default ceiling for top_logprobs (--max-logprobs 20), also OpenAI's limit.
MAX_TOP_LOGPROBS = 20
CONNECT_TIMEOUT = 10.0  # seconds: a server that does not accept a connection by then is down or overloaded
MAX_BACKOFF_SECONDS = 30.0
CHAT_PATH = "/v1/chat/completions"
COMPLETIONS_PATH = "/v1/completions"


class RequestRejected(UserError):
    """The server refused the request (a 4xx other than 429): trying again cannot help."""


class StreamBroken(Exception):
    """A stream that reported an error or ended before ``data: [DONE]``."""


def _normalise(url: str) -> str:
    """``http://host:8000``, ``http://host:8000/`` and ``http://host:8000/v1`` all mean the same server."""
    url = url.strip().rstrip("/")
    return url.removesuffix("/v1")


class OpenAICompatibleBackend(Backend):
    """Chat completions over HTTP, streamed.

    ``api_key`` defaults to ``$OPENAI_API_KEY`` (servers started without a key ignore it).
    ``timeout`` is the longest silence a request may meet, in seconds: waiting for the first chunk (the prompt's
    prefill and the server's queue) or between two chunks of the stream; 600 by default (connecting gets
    :data:`CONNECT_TIMEOUT`). An answer of thousands of reasoning tokens may take much longer in all.
    ``max_retries`` counts retries after the first try; each retry regenerates the answer from the start, with a
    warning (see the module docstring).
    """

    name = "openai"

    def __init__(
        self,
        base_urls: str | Sequence[str],
        model: str,
        api_key: str | None = None,
        concurrency: int = 8,
        timeout: float = 600,
        max_retries: int = 3,
        backoff: float = 0.5,
        progress: bool = False,
    ) -> None:
        # A comma-separated string is how several servers arrive from the command line (--option base_urls=a,b).
        urls = [u.strip() for u in base_urls.split(",") if u.strip()] if isinstance(base_urls, str) else list(base_urls)
        if not urls or not all(u.startswith(("http://", "https://")) for u in urls):
            raise UserError(f"base URLs {urls!r} must be http(s) addresses, e.g. http://127.0.0.1:8000/v1")
        if concurrency < 1 or max_retries < 0 or timeout <= 0:
            raise UserError("concurrency and timeout must be positive and max_retries at least 0")
        self.base_urls = [_normalise(u) for u in urls]
        self.model = model
        self.concurrency = concurrency
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.progress = progress
        key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._client = httpx.Client(
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=min(timeout, CONNECT_TIMEOUT)),
            limits=httpx.Limits(max_connections=concurrency * len(self.base_urls)),
        )
        self._turn = count()  # round-robin position, shared by all threads
        self._turn_lock = threading.Lock()
        self._exact_options = True  # until the server refuses logprob_token_ids
        self._option_ids: dict[str, int] = {}

    # ---- transport -----------------------------------------------------------------------------

    def _next_url_index(self) -> int:
        with self._turn_lock:
            return next(self._turn) % len(self.base_urls)

    def _request(self, path: str, body: dict[str, Any]) -> Generation:
        """One streamed request, retried on transient failures; the answer put together from its chunks."""
        body = {**body, "stream": True, "stream_options": {"include_usage": True}}
        greedy = "greedy, so the same answer is expected" if body["temperature"] == 0 else "sampled, so it may differ"
        first = self._next_url_index()
        problem = ""
        for attempt in range(self.max_retries + 1):
            if attempt:
                time.sleep(min(self.backoff * 2 ** (attempt - 1), MAX_BACKOFF_SECONDS))
            url = self.base_urls[(first + attempt) % len(self.base_urls)] + path
            answer = StreamedAnswer(chat=path == CHAT_PATH)
            try:
                with self._client.stream("POST", url, json=body) as response:
                    if response.status_code == 429 or response.status_code >= 500:
                        response.read()
                        problem = f"HTTP {response.status_code} from {url}: {_server_message(response)}"
                        continue
                    if response.status_code >= 400:
                        response.read()
                        raise RequestRejected(
                            f"{url} rejected the request (HTTP {response.status_code}): {_server_message(response)}"
                        )
                    answer.read(response.iter_lines())
                    return answer.generation()
            except (httpx.TransportError, StreamBroken) as error:  # timeouts, refused, dropped or cut connections
                problem = f"{type(error).__name__} from {url}"
                if isinstance(error, StreamBroken):
                    problem += f": {error}"
                if attempt < self.max_retries:
                    self._warn_regeneration(url, answer, error, f"retry {attempt + 1}, {greedy}")
        raise UserError(f"no answer after {self.max_retries + 1} tries ({problem}): check that the server is up")

    def _warn_regeneration(self, url: str, answer: StreamedAnswer, error: Exception, retry: str) -> None:
        """Never regenerate silently what the server had begun to answer, or may still be answering."""
        if answer.started:
            logger.warning("%s: the answer stream was cut after %d characters (%s); regenerating the answer from "
                           "the start (%s)", url, answer.characters, type(error).__name__, retry)
        elif isinstance(error, httpx.ReadTimeout):
            logger.warning("%s: nothing arrived within the %g s timeout; generating the answer again from the "
                           "start (%s)", url, self.timeout, retry)

    def _map(self, function, items: Sequence[Any], desc: str) -> list[Any]:
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            # map() yields in input order whatever order the requests finish in.
            results = pool.map(function, items)
            return list(tqdm(results, total=len(items), desc=desc, disable=not self.progress))

    def _send_all(self, requests: Sequence[tuple[str, dict[str, Any]]], desc: str) -> list[Generation]:
        return self._map(lambda request: self._request(*request), requests, desc)

    # ---- requests ------------------------------------------------------------------------------

    def _chat_body(self, prompt: ChatPrompt, params: GenerationParams) -> dict[str, Any]:
        messages = list(prompt.messages)
        body: dict[str, Any] = {
            "model": self.model,
            "max_tokens": params.max_new_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
        }
        if params.top_k:  # not an OpenAI parameter: vLLM's and other open servers' extension, sent only when set
            body["top_k"] = params.top_k
        if prompt.assistant_prefix:
            messages.append({"role": "assistant", "content": prompt.assistant_prefix})
            body.update(continue_final_message=True, add_generation_prompt=False)
        body["messages"] = messages
        if params.stop:
            body["stop"] = list(params.stop)
        if params.seed is not None:
            body["seed"] = params.seed
        if params.top_logprobs > 0:
            body.update(logprobs=True, top_logprobs=min(params.top_logprobs, MAX_TOP_LOGPROBS))
        if not params.skip_special_tokens:
            body["skip_special_tokens"] = False
        if prompt.add_special_tokens:  # vLLM's chat default is False: the template holds the BOS
            body["add_special_tokens"] = True
        return body

    def _completion_body(self, prompt: ChatPrompt, params: GenerationParams) -> dict[str, Any]:
        """A raw-text prompt (no messages) for ``/v1/completions``; its ``logprobs`` is a count of alternatives."""
        chat_only = {"messages", "logprobs", "top_logprobs", "continue_final_message", "add_generation_prompt"}
        body = {key: value for key, value in self._chat_body(prompt, params).items() if key not in chat_only}
        body["prompt"] = prompt.assistant_prefix
        if not prompt.add_special_tokens:  # vLLM's completions default is True
            body["add_special_tokens"] = False
        if params.top_logprobs > 0:
            body["logprobs"] = min(params.top_logprobs, MAX_TOP_LOGPROBS)
        return body

    def _path_and_body(self, prompt: ChatPrompt, params: GenerationParams) -> tuple[str, dict[str, Any]]:
        if not prompt.messages:  # raw text (rank1): no chat template, so the completions endpoint
            return COMPLETIONS_PATH, self._completion_body(prompt, params)
        return CHAT_PATH, self._chat_body(prompt, params)

    def generate(self, prompts: Sequence[ChatPrompt], params: GenerationParams) -> list[Generation]:
        return self._send_all([self._path_and_body(p, params) for p in prompts], "generate")

    def next_token_logprobs(self, prompts: Sequence[ChatPrompt], options: Sequence[str]) -> list[dict[str, float]]:
        """The log-probability of each option token as the next one.

        Exact over the whole vocabulary where the server takes vLLM's ``logprob_token_ids`` (the log-probabilities
        of given token ids at the generated position, raw, as the offline vLLM and transformers backends read them),
        the ids coming from the server's own ``/tokenize``. Where the server refuses either, or answers without the
        asked ids, a one-time warning says so and the options are read from the top 20 alternatives of one greedy
        token, an option outside them getting ``-inf``. Options are single tokens spelt exactly (``"1"`` and
        ``" 1"`` differ; see :func:`~reasonrank.backends.base.option_token_id`).
        """
        params = GenerationParams(max_new_tokens=1, temperature=0.0, top_logprobs=MAX_TOP_LOGPROBS)
        if self._exact_options:
            try:
                return self._exact_option_logprobs(prompts, options, params)
            except (ExactOptionsRefused, RequestRejected) as refusal:  # a server without vLLM's extension
                self._exact_options = False
                logger.warning("%s: option log-probabilities come from the top %d alternatives from now on "
                               "(-inf outside them)", refusal, MAX_TOP_LOGPROBS)
        results = []
        for generation in self.generate(prompts, params):
            top = generation.tokens[0].top if generation.tokens else {}
            results.append({o: top.get(o, -math.inf) for o in options})
        return results

    def _exact_option_logprobs(
        self, prompts: Sequence[ChatPrompt], options: Sequence[str], params: GenerationParams
    ) -> list[dict[str, float]]:
        ids = [self._option_token_id(o) for o in options]
        keys = [f"token_id:{i}" for i in ids]  # return_tokens_as_token_ids: no two options can decode alike
        requests = []
        for prompt in prompts:
            path, body = self._path_and_body(prompt, params)
            requests.append((path, {**body, "logprob_token_ids": ids, "return_tokens_as_token_ids": True}))
        results = []
        for generation in self._send_all(requests, "options"):
            top = generation.tokens[0].top if generation.tokens else {}
            if not all(key in top for key in keys):
                raise ExactOptionsRefused(f"{self.base_urls[0]} ignored logprob_token_ids")
            results.append({option: top[key] for option, key in zip(options, keys, strict=True)})
        return results

    def _option_token_id(self, option: str) -> int:
        if option not in self._option_ids:
            self._option_ids[option] = option_token_id(ServerTokenizer(self), option)
        return self._option_ids[option]

    def tokenize(self, text: str, add_special_tokens: bool = False) -> dict[str, Any]:
        """vLLM's ``/tokenize`` of ``text``: ``tokens`` (ids) and ``token_strs``."""
        url = self.base_urls[0] + "/tokenize"
        body = {"model": self.model, "prompt": text, "return_token_strs": True}
        body["add_special_tokens"] = add_special_tokens
        try:
            response = self._client.post(url, json=body)
        except httpx.TransportError as error:
            raise UserError(f"{url}: {type(error).__name__}: check that the server is up") from None
        if response.status_code >= 400:
            raise ExactOptionsRefused(f"{url} does not tokenize (HTTP {response.status_code})")
        return response.json()

    def close(self) -> None:
        self._client.close()


class ExactOptionsRefused(Exception):
    """The server cannot give the log-probabilities of chosen tokens (no ``/tokenize`` or ``logprob_token_ids``)."""


class ServerTokenizer:
    """The served model's tokenizer through ``/tokenize``, in the shape :func:`option_token_id` calls."""

    def __init__(self, backend: OpenAICompatibleBackend) -> None:
        self._backend = backend
        self._strings: dict[int, str] = {}

    def __call__(self, text: str, add_special_tokens: bool = False) -> dict[str, list[int]]:
        answer = self._backend.tokenize(text, add_special_tokens)
        self._strings.update(zip(answer["tokens"], answer.get("token_strs") or [], strict=False))
        return {"input_ids": answer["tokens"]}

    def convert_ids_to_tokens(self, ids: Sequence[int]) -> list[str]:
        return [self._strings.get(i, str(i)) for i in ids]


class StreamedAnswer:
    """The server-sent events of one answer, put together as the non-streaming answer gives it."""

    def __init__(self, chat: bool) -> None:
        self.chat = chat
        self.text: list[str] = []
        self.tokens: list[TokenLogprobs] = []
        self.finish_reason: str | None = None
        self.usage: dict[str, int] = {}

    @property
    def characters(self) -> int:
        return sum(map(len, self.text))

    @property
    def started(self) -> bool:
        return bool(self.tokens) or self.characters > 0

    def read(self, lines) -> None:
        for line in lines:
            if not line.startswith("data:"):
                continue  # the blank line after each event, comments, event names
            data = line.removeprefix("data:").strip()
            if data == "[DONE]":
                return
            self.add(json.loads(data))
        raise StreamBroken("the stream ended before data: [DONE]")

    def add(self, chunk: dict[str, Any]) -> None:
        if "error" in chunk:  # vLLM reports a failure after the 200 header as an event
            error = chunk["error"]
            raise StreamBroken(str(error.get("message", error) if isinstance(error, dict) else error))
        self.usage = chunk.get("usage") or self.usage  # the last event with include_usage, choices empty
        for choice in chunk.get("choices") or []:
            self.finish_reason = choice.get("finish_reason") or self.finish_reason
            logprobs = choice.get("logprobs") or {}
            if self.chat:
                self.text.append((choice.get("delta") or {}).get("content") or "")
                self.tokens.extend(
                    TokenLogprobs(t["token"], t["logprob"], _alternatives(t))
                    for t in logprobs.get("content") or []
                )
            else:
                self.text.append(choice.get("text") or "")
                self.tokens.extend(
                    TokenLogprobs(token, logprob, dict(top or {}))
                    for token, logprob, top in zip(
                        logprobs.get("tokens") or [], logprobs.get("token_logprobs") or [],
                        logprobs.get("top_logprobs") or [], strict=False,
                    )
                )

    def generation(self) -> Generation:
        return Generation(
            text="".join(self.text),
            tokens=tuple(self.tokens),
            prompt_tokens=self.usage.get("prompt_tokens", 0),
            completion_tokens=self.usage.get("completion_tokens", 0),
            # Servers may also say "abort" or "tool_calls"; only a length cut matters to callers.
            finish_reason="length" if self.finish_reason == "length" else "stop",
        )


def _alternatives(entry: dict[str, Any]) -> dict[str, float]:
    return {a["token"]: a["logprob"] for a in entry.get("top_logprobs") or ()}


def _server_message(response: httpx.Response) -> str:
    """The error text of an OpenAI-style ``{"error": {"message": ...}}`` body, else the raw body."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:500].strip() or response.reason_phrase
    if isinstance(body, dict):
        error = body.get("error", body.get("detail", body))
        if isinstance(error, dict) and "message" in error:
            return str(error["message"])
        return str(error)[:500]
    return str(body)[:500]
