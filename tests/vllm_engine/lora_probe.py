"""Label log-probabilities from vLLM with a LoRA adapter, in a process of its own.

Run by test_vllm_lora_and_server.py: in-process vLLM engines share global parallel state, so a second engine
closed next to the session's engine would break it. Reads a JSON job on stdin, prints the results as JSON.
"""

from __future__ import annotations

import json
import sys

from reasonrank.backends.base import ChatPrompt
from reasonrank.backends.vllm import VLLMBackend


def main() -> None:
    job = json.load(sys.stdin)
    backend = VLLMBackend(job["model"], adapter=job["adapter"], **job["engine"])
    prompts = [ChatPrompt(tuple(p["messages"]), p["assistant_prefix"]) for p in job["prompts"]]
    print(json.dumps(backend.next_token_logprobs(prompts, job["labels"])))


if __name__ == "__main__":
    main()
