"""An OpenAI-compatible HTTP server (vLLM, SGLang, ``reasonrank.serve.openai_server``) as a Backend.

Each prompt is one ``/v1/chat/completions`` request (``/v1/completions`` for a raw-text prompt without
messages). Requests run concurrently on a thread pool, go round-robin over one or more base URLs, and are
retried on timeouts, connection errors, 429 and 5xx with exponential backoff (a retry moves on to the next
URL). Any other 4xx is the caller's mistake and is raised at once with the server's message. Results keep the
input order.

``ChatPrompt.assistant_prefix`` is sent as a final assistant message with vLLM's extensions
``continue_final_message: true`` and ``add_generation_prompt: false``, so the model continues that
text rather than starting a new turn. The hosted OpenAI API has no such option and rejects the request.
Likewise ``add_special_tokens`` (a BOS token on top of the chat template, or none before a raw prompt) and
``skip_special_tokens: false`` are vLLM's extensions, sent only when they differ from the server's default.
"""

from __future__ import annotations

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

from reasonrank.backends.base import Backend, ChatPrompt, Generation, GenerationParams, TokenLogprobs
from reasonrank.errors import UserError

logger = logging.getLogger(__name__)

# vLLM's default ceiling for top_logprobs (--max-logprobs 20), also OpenAI's limit.
MAX_TOP_LOGPROBS = 20
CONNECT_TIMEOUT = 10.0  # seconds: a server that does not accept a connection by then is down or overloaded
MAX_BACKOFF_SECONDS = 30.0


def _normalise(url: str) -> str:
    """``http://host:8000``, ``http://host:8000/`` and ``http://host:8000/v1`` all mean the same server."""
    url = url.strip().rstrip("/")
    return url.removesuffix("/v1")


class OpenAICompatibleBackend(Backend):
    """Chat completions over HTTP.

    ``api_key`` defaults to ``$OPENAI_API_KEY`` (servers started without a key ignore it).
    ``timeout`` is how long a request may wait for its answer, in seconds: 600 by default, sized for reasoning
    models that write thousands of tokens before answering (connecting gets :data:`CONNECT_TIMEOUT`).
    ``max_retries`` counts retries after the first try. A request that timed out is generated anew by its retry,
    with a warning that says so (a greedy answer comes out the same, a sampled one need not).
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

    # ---- transport -----------------------------------------------------------------------------

    def _next_url_index(self) -> int:
        with self._turn_lock:
            return next(self._turn) % len(self.base_urls)

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        first = self._next_url_index()
        problem = ""
        for attempt in range(self.max_retries + 1):
            if attempt:
                time.sleep(min(self.backoff * 2 ** (attempt - 1), MAX_BACKOFF_SECONDS))
            url = self.base_urls[(first + attempt) % len(self.base_urls)] + path
            try:
                response = self._client.post(url, json=body)
            except httpx.TransportError as error:  # timeouts, refused or dropped connections
                problem = f"{type(error).__name__} from {url}"
                if isinstance(error, httpx.ReadTimeout) and attempt < self.max_retries:
                    logger.warning("%s: no answer within the timeout; generating it again (retry %d)", url, attempt + 1)
                continue
            if response.status_code == 429 or response.status_code >= 500:
                problem = f"HTTP {response.status_code} from {url}: {_server_message(response)}"
                continue
            if response.status_code >= 400:
                raise UserError(
                    f"{url} rejected the request (HTTP {response.status_code}): {_server_message(response)}"
                )
            return response.json()
        raise UserError(f"no answer after {self.max_retries + 1} tries ({problem}): check that the server is up")

    def _map(self, function, items: Sequence[Any], desc: str) -> list[Any]:
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            # map() yields in input order whatever order the requests finish in.
            results = pool.map(function, items)
            return list(tqdm(results, total=len(items), desc=desc, disable=not self.progress))

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

    def _complete_one(self, prompt: ChatPrompt, params: GenerationParams) -> Generation:
        answer = self._post("/v1/completions", self._completion_body(prompt, params))
        choice = answer["choices"][0]
        usage = answer.get("usage") or {}
        logprobs = choice.get("logprobs") or {}
        tokens = tuple(
            TokenLogprobs(token, logprob, dict(top or {}))
            for token, logprob, top in zip(
                logprobs.get("tokens") or [], logprobs.get("token_logprobs") or [], logprobs.get("top_logprobs") or [],
                strict=False,
            )
        )
        return Generation(
            text=choice.get("text") or "",
            tokens=tokens,
            prompt_tokens=usage.get("prompt_tokens", 0),
            completion_tokens=usage.get("completion_tokens", 0),
            finish_reason="length" if choice.get("finish_reason") == "length" else "stop",
        )

    def _generate_one(self, job: tuple[ChatPrompt, GenerationParams]) -> Generation:
        prompt, params = job
        if not prompt.messages:  # raw text (rank1): no chat template, so the completions endpoint
            return self._complete_one(prompt, params)
        answer = self._post("/v1/chat/completions", self._chat_body(prompt, params))
        choice = answer["choices"][0]
        usage = answer.get("usage") or {}
        content = (choice.get("logprobs") or {}).get("content") or []
        tokens = tuple(
            TokenLogprobs(t["token"], t["logprob"], {a["token"]: a["logprob"] for a in t.get("top_logprobs", [])})
            for t in content
        )
        return Generation(
            text=choice["message"].get("content") or "",
            tokens=tokens,
            prompt_tokens=usage.get("prompt_tokens", 0),
            completion_tokens=usage.get("completion_tokens", 0),
            # Servers may also say "abort" or "tool_calls"; only a length cut matters to callers.
            finish_reason="length" if choice.get("finish_reason") == "length" else "stop",
        )

    def generate(self, prompts: Sequence[ChatPrompt], params: GenerationParams) -> list[Generation]:
        return self._map(self._generate_one, [(p, params) for p in prompts], "generate")

    def next_token_logprobs(self, prompts: Sequence[ChatPrompt], options: Sequence[str]) -> list[dict[str, float]]:
        """One greedy token with the top 20 alternatives; an option outside the top 20 gets ``-inf``.

        Options are matched to the server's token strings exactly, so ``"1"`` and ``" 1"`` differ
        (see :meth:`TransformersBackend.option_token_id`).
        """
        params = GenerationParams(max_new_tokens=1, temperature=0.0, top_logprobs=MAX_TOP_LOGPROBS)
        generations = self.generate(prompts, params)
        results = []
        for generation in generations:
            top = generation.tokens[0].top if generation.tokens else {}
            results.append({o: top.get(o, -math.inf) for o in options})
        return results

    def close(self) -> None:
        self._client.close()


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
