"""vLLM's offline engine (``vllm.LLM``) as a Backend, for GPUs.

Prompts are rendered with the tokenizer's chat template plus ``assistant_prefix`` exactly as
:class:`~reasonrank.backends.transformers.TransformersBackend` renders them, then passed as token ids, so both
backends see the same input. vLLM schedules all prompts of a call itself (continuous batching).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

from reasonrank.backends.base import Backend, ChatPrompt, Generation, GenerationParams, TokenLogprobs, render_prompt
from reasonrank.errors import UserError
from reasonrank.weights import locate_model

MISSING = "vLLM is not installed: pip install reasonrank[vllm]; needs a GPU"
# vLLM's default --max-logprobs: the most alternatives one request may ask for.
MAX_TOP_LOGPROBS = 20


def _import_vllm():
    try:
        import vllm
    except ImportError as error:
        raise UserError(MISSING) from error
    return vllm


class VLLMBackend(Backend):
    """Generation with ``vllm.LLM.generate`` and ``SamplingParams`` (logprobs when asked).

    ``data_parallel_size`` > 1 is refused: vLLM's offline engine does not support it in one
    process. Serve replicas with ``vllm serve --data-parallel-size N`` and use
    :class:`~reasonrank.backends.openai.OpenAICompatibleBackend` instead.
    ``adapter`` is a local LoRA folder applied to every request through a ``LoRARequest``.
    """

    name = "vllm"

    def __init__(
        self,
        model: str,
        tensor_parallel_size: int = 1,
        data_parallel_size: int = 1,
        dtype: str = "bfloat16",
        gpu_memory_utilization: float = 0.9,
        max_model_len: int | None = None,
        adapter: str | None = None,
    ) -> None:
        vllm = _import_vllm()
        if data_parallel_size != 1:
            raise UserError(
                "vLLM's offline engine runs one data-parallel replica: start `vllm serve --data-parallel-size N` "
                "and use the openai backend, or set data_parallel_size=1"
            )
        location = locate_model(model)
        # vLLM takes a GGUF model as the path of the file itself.
        path = str(Path(location.path) / location.gguf_file) if location.gguf_file else location.path
        engine_options: dict = {}
        self._lora = None
        if adapter is not None:
            config = Path(adapter) / "adapter_config.json"
            if not config.is_file():
                raise UserError(
                    f"adapter {adapter!r} is not a folder with adapter_config.json: pass a saved PEFT adapter"
                )
            rank = int(json.loads(config.read_text()).get("r", 16))
            engine_options.update(enable_lora=True, max_lora_rank=rank, max_loras=1)
            from vllm.lora.request import LoRARequest

            self._lora = LoRARequest("adapter", 1, str(Path(adapter).resolve()))
        self.llm = vllm.LLM(
            model=path,
            tensor_parallel_size=tensor_parallel_size,
            dtype=dtype,
            gpu_memory_utilization=gpu_memory_utilization,
            max_model_len=max_model_len,
            **engine_options,
        )
        self.tokenizer = self.llm.get_tokenizer()
        self._sampling_params = vllm.SamplingParams

    def _encode(self, prompt: ChatPrompt) -> dict[str, list[int]]:
        # The template already holds any BOS token; token ids keep vLLM from adding another.
        ids = self.tokenizer(render_prompt(self.tokenizer, prompt), add_special_tokens=False)["input_ids"]
        return {"prompt_token_ids": ids}  # a vllm.inputs.TokensPrompt (a TypedDict)

    def _run(self, prompts: Sequence[ChatPrompt], sampling) -> list:
        return self.llm.generate([self._encode(p) for p in prompts], sampling, lora_request=self._lora)

    def generate(self, prompts: Sequence[ChatPrompt], params: GenerationParams) -> list[Generation]:
        top = min(params.top_logprobs, MAX_TOP_LOGPROBS)
        sampling = self._sampling_params(
            max_tokens=params.max_new_tokens,
            temperature=params.temperature,
            top_p=params.top_p,
            stop=list(params.stop) or None,
            seed=params.seed,
            logprobs=top if top > 0 else None,
        )
        results = []
        for output in self._run(prompts, sampling):
            completion = output.outputs[0]
            tokens: tuple[TokenLogprobs, ...] = ()
            if top > 0 and completion.logprobs:
                tokens = tuple(
                    _token(t, step, top) for t, step in zip(completion.token_ids, completion.logprobs, strict=False)
                )
            results.append(
                Generation(
                    text=completion.text,
                    tokens=tokens,
                    prompt_tokens=len(output.prompt_token_ids or ()),
                    completion_tokens=len(completion.token_ids),
                    finish_reason="length" if completion.finish_reason == "length" else "stop",
                )
            )
        return results

    def next_token_logprobs(self, prompts: Sequence[ChatPrompt], options: Sequence[str]) -> list[dict[str, float]]:
        """One greedy token with the top 20 alternatives; an option outside them gets ``-inf``.

        Options match decoded token text exactly, so ``"1"`` and ``" 1"`` differ.
        """
        sampling = self._sampling_params(max_tokens=1, temperature=0.0, logprobs=MAX_TOP_LOGPROBS)
        results = []
        for output in self._run(prompts, sampling):
            steps = output.outputs[0].logprobs or [{}]
            top = {entry.decoded_token: entry.logprob for entry in steps[0].values()}
            results.append({o: top.get(o, -math.inf) for o in options})
        return results

    def close(self) -> None:
        del self.llm


def _token(token_id: int, step: dict, top: int) -> TokenLogprobs:
    """vLLM returns the chosen token plus the top-k, each a ``Logprob(logprob, rank, decoded_token)``."""
    ranked = sorted(step.values(), key=lambda entry: entry.rank or math.inf)[:top]
    chosen = step[token_id]
    return TokenLogprobs(chosen.decoded_token or "", chosen.logprob, {e.decoded_token or "": e.logprob for e in ranked})
