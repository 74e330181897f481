"""reasonrank's listwise reranker against rank_llm 0.25.7 on one vLLM engine: wall time and greedy permutations.

Run in the vLLM environment (``make setup-vllm``; rank-llm is installed there with ``--no-deps``)::

    HF_HUB_OFFLINE=1 .venv-vllm/bin/python benchmarks/rank_llm_compare.py --cpu-settings \
        --model .venv-vllm/models/smollm2-135m-instruct

The DL19 queries of the bundled mini collection, BM25 top 20 each (Lucene, k1 0.9, b 0.4), reranked by rank_llm's
``RankListwiseOSLLM`` and by reasonrank's ``ListwiseReranker`` on the same ``vllm.LLM``: rank_llm's vLLM handler is
handed the engine reasonrank's backend built, so both use one engine, one tokenizer, one set of weights, in one
process. The prompt is RankZephyr's training-time one, ``listwise/rankzephyr-v2``: rank_llm gets a template file
holding its sections and renders it with its own handler, ``ftfy.fix_text`` over each passage and the rendered chat,
and sends the string to vLLM (which adds ``<s>`` where the tokenizer has one), so both sides send the same token ids
(tests/vllm_engine pins it on DL19-mini passages that ftfy repairs). Windows are rank_llm's defaults (20 / stride 10
over 100) scaled to 20 candidates: 10 / stride 5, three windows per query, every query's window of a step in one
``generate`` on both sides. Passages are cut to rank_llm's ``300 * 20 / window`` words; both sides generate at most
rank_llm's answer length (the tokens of ``[1] > ... > [10]``; rank_llm also forces that many, reasonrank stops at
EOS). Each side first runs untimed on 2 queries (warm-up), the prefix cache is emptied, then it is timed; every
prompt both send is compared token id for token id, as the engine received it.

rank_llm's package imports its LiT5 / FiD modules, which need transformers-4 internals
(``find_pruneable_heads_and_indices``, ``transformers.utils.model_parallel_utils``) that the transformers vLLM
pins no longer has; they are replaced by empty modules before import. ``RankListwiseOSLLM`` uses neither.

On a GPU drop ``--cpu-settings`` (and pass a bigger ``--max-model-len`` if wanted); nothing else changes.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import types
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

DL19 = ROOT / "reasonrank" / "data" / "msmarco-dl19-mini"
# RankZephyr's training-time prompt (ftfy over passages and prompt, <s> added by the tokenizer, as rank_llm sends it).
TEMPLATE = "listwise/rankzephyr-v2"
# Module -> the names other rank_llm modules import from it; none of them is used by the listwise class.
TRANSFORMERS4_ONLY = {
    "rank_llm.rerank.listwise.rank_fid": ("RankFiDDistill", "RankFiDScore"),
    "rank_llm.rerank.listwise.lit5_reranker": ("LiT5DistillReranker", "LiT5ScoreReranker"),
    "rank_llm.rerank.listwise.lit5.model": ("FiD", "FiDCrossAttentionScore"),
}


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return f"{line.split(':', 1)[1].strip()}, {os.cpu_count()} cores"
    return platform.processor() or platform.machine()


def device_name() -> str:
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU: {cpu_name()}"


def candidates(depth: int, limit: int | None):
    """BM25 top ``depth`` of each DL19-mini query with at least ``depth`` hits (rank_llm batches need equal sizes)."""
    from reasonrank.io.topics import load_topics
    from reasonrank.retrieval.bm25 import Bm25FirstStage
    from reasonrank.retrieval.index import ensure_index

    queries = load_topics(str(DL19 / "topics.dl19-passage.tsv"))[:limit]
    stage = Bm25FirstStage(str(ensure_index(DL19 / "corpus.jsonl")))
    requests = stage.search(queries, hits=depth, threads=1, progress=False, text_depth=depth)
    return [r for r in requests if len(r.candidates) == depth]


def import_rank_llm():
    for name, names in TRANSFORMERS4_ONLY.items():
        empty = sys.modules.setdefault(name, types.ModuleType(name))
        empty.__dict__.update(dict.fromkeys(names))
    from rank_llm.rerank.listwise import rank_listwise_os_llm

    return rank_listwise_os_llm


class SharedEngine:
    """rank_llm's ``VllmHandler`` on an engine that exists already (same call as rank_llm's own handler)."""

    engine = None

    def __init__(self, **_settings):
        self._vllm = SharedEngine.engine

    def get_tokenizer(self):
        return self._vllm.get_tokenizer()

    def generate_output(self, prompts, min_tokens, max_tokens, temperature, logprobs=None, **kwargs):
        import vllm

        sampling = vllm.SamplingParams(
            min_tokens=min_tokens, max_tokens=max_tokens, temperature=temperature, logprobs=logprobs, **kwargs
        )
        return self._vllm.generate(prompts, sampling)


class Recorder:
    """Wraps ``vllm.LLM.generate`` to keep, per call in call order, the token ids the engine got for every prompt and
    the text it wrote, with the seconds spent inside the engine and the tokens it generated."""

    def __init__(self, llm):
        self.llm, self.original = llm, llm.generate
        self.reset()
        llm.generate = self

    def reset(self) -> None:
        # New lists: the previous side's result keeps its own.
        self.calls, self.texts, self.engine_seconds, self.generated_tokens = [], [], 0.0, 0

    def __call__(self, prompts, sampling, **kwargs):
        start = time.perf_counter()
        outputs = self.original(prompts, sampling, **kwargs)
        self.engine_seconds += time.perf_counter() - start
        self.calls.append([list(output.prompt_token_ids) for output in outputs])
        self.texts.append([output.outputs[0].text for output in outputs])
        self.generated_tokens += sum(len(output.outputs[0].token_ids) for output in outputs)
        return outputs

    def close(self) -> None:
        self.llm.generate = self.original


def rank_llm_template(template: str) -> str:
    """rank_llm's template file holding the sections of our ``template``: its system message, prefix, passage
    line and suffix, filled by rank_llm's own handler."""
    import tempfile

    import yaml

    from reasonrank.prompts import load_template

    ours = load_template(template)
    sections = {
        "method": "singleturn_listwise", "system_message": ours.render("system"), "prefix": ours.sections["prefix"],
        "body": ours.sections["passage"].replace("{passage}", "{candidate}"), "suffix": ours.sections["suffix"],
        "output_validation_regex": r"^\[\d+\]( > \[\d+\])*$", "output_extraction_regex": r"\[(\d+)\]",
    }
    path = Path(tempfile.mkdtemp()) / f"{ours.id.replace('/', '-')}.yaml"
    path.write_text(yaml.safe_dump(sections))
    return str(path)


def rank_llm_requests(requests):
    from rank_llm.data import Candidate, Query
    from rank_llm.data import Request as RankLLMRequest

    return [
        RankLLMRequest(
            Query(r.query.text, r.query.qid),
            [Candidate(c.docid, c.score, {"text": c.text}) for c in r.candidates],
        )
        for r in requests
    ]


def rank_llm_reranker(module, model: str, window: int, stride: int):
    """rank_llm's ``RankListwiseOSLLM`` on ``SharedEngine.engine``, rendering ``TEMPLATE``'s sections."""
    module.VllmHandler = SharedEngine
    return module.RankListwiseOSLLM(
        model=model, window_size=window, stride=stride, prompt_template_path=rank_llm_template(TEMPLATE)
    )


def rank_llm_side(module, model: str, window: int, stride: int):
    reranker = rank_llm_reranker(module, model, window, stride)

    def run(requests):
        results = reranker.rerank_batch(
            rank_llm_requests(requests), rank_start=0, rank_end=len(requests[0].candidates)
        )
        return [[c.docid for c in result.candidates] for result in results]

    return reranker, run


def ours_side(backend, depth: int, window: int, stride: int, max_new_tokens: int):
    from reasonrank.rerank.listwise import build_listwise

    reranker = build_listwise(
        "unused", backend=backend, template=TEMPLATE, window_size=window, stride=stride, depth=depth,
        max_new_tokens=max_new_tokens, max_passage_words=int(300 * (20 / window)),
    )
    return lambda requests: [ranking.docids for ranking in reranker.rerank_many(requests)]


@dataclass
class Side:
    """One side's timed pass: its permutations, wall seconds, and what the engine did for it."""

    orders: list[list[str]]
    seconds: float
    calls: list[list[list[int]]]
    texts: list[list[str]]
    engine_seconds: float
    generated_tokens: int


def timed(run, requests, recorder: Recorder, warm_up: int) -> Side:
    """One untimed pass over the first ``warm_up`` queries (kernels, allocator), an empty prefix cache (neither side
    reads the other's or its own earlier KV blocks), then the timed pass with what the engine received and wrote."""
    recorder.reset()
    run(requests[:warm_up])
    recorder.llm.reset_prefix_cache()
    recorder.reset()
    start = time.perf_counter()
    result = run(requests)
    seconds = time.perf_counter() - start
    return Side(result, seconds, recorder.calls, recorder.texts, recorder.engine_seconds, recorder.generated_tokens)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="SmolLM2's transformers export (or any zephyr-style model)")
    parser.add_argument("--queries", type=int, default=None, help="first N DL19-mini queries (default: all)")
    parser.add_argument("--warm-up", type=int, default=2, help="queries of each side's untimed first pass")
    parser.add_argument("--depth", type=int, default=20)
    parser.add_argument("--window", type=int, default=10)
    parser.add_argument("--stride", type=int, default=5)
    parser.add_argument("--max-model-len", type=int, default=4096)
    parser.add_argument("--cpu-settings", action="store_true", help="small KV cache, eager mode, no CPU pinning")
    args = parser.parse_args(argv)
    if args.cpu_settings:
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
        os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")
    from reasonrank.backends.vllm import VLLMBackend

    requests = candidates(args.depth, args.queries)
    module = import_rank_llm()
    backend = VLLMBackend(
        args.model, max_model_len=args.max_model_len, enforce_eager=args.cpu_settings, seed=0,
        **({"distributed_executor_backend": "uni"} if args.cpu_settings else {}),
    )
    SharedEngine.engine = backend.llm
    theirs_reranker, theirs = rank_llm_side(module, args.model, args.window, args.stride)
    answer_tokens = theirs_reranker.num_output_tokens(args.window)
    ours = ours_side(backend, args.depth, args.window, args.stride, answer_tokens)
    recorder = Recorder(backend.llm)
    their_result = timed(theirs, requests, recorder, args.warm_up)
    print(f"rank_llm: {their_result.seconds:.1f} s", flush=True)
    our_result = timed(ours, requests, recorder, args.warm_up)
    recorder.close()
    report(args, requests, their_result, our_result)
    return 0


def report(args, requests, theirs: Side, ours: Side) -> None:
    pairs = [(a, b) for x, y in zip(theirs.calls, ours.calls, strict=False) for a, b in zip(x, y, strict=False)]
    same_prompts = sum(a == b for a, b in pairs)
    prompts = sum(len(call) for call in theirs.calls)
    same = sum(a == b for a, b in zip(theirs.orders, ours.orders, strict=True))
    n = len(requests)
    print(f"device: {device_name()}; {n} DL19-mini queries x BM25 top {args.depth}, window {args.window} / "
          f"stride {args.stride}, greedy")
    print(f"engine calls per side (prompts each): rank_llm {[len(c) for c in theirs.calls]}, "
          f"reasonrank {[len(c) for c in ours.calls]}; "
          f"prompts token-identical: {same_prompts}/{prompts}")
    print("| reranker | wall s | in the engine s | outside it s | tokens generated | queries/s | same permutation |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, side, agree in (("rank_llm 0.25.7 RankListwiseOSLLM", theirs, "-"),
                              (f"reasonrank {TEMPLATE}", ours, f"{same}/{n}")):
        print(f"| {name} | {side.seconds:.1f} | {side.engine_seconds:.1f} | {side.seconds - side.engine_seconds:.1f} "
              f"| {side.generated_tokens} | {n / side.seconds:.2f} | {agree} |")
    print(f"throughput ratio reasonrank / rank_llm: {theirs.seconds / ours.seconds:.2f}x")
    print_differences(requests, theirs, ours)


def print_differences(requests, theirs: Side, ours: Side) -> None:
    """For each query ranked differently: where the rankings part, and each window's answer on both sides while
    the prompts are the same (the first window whose answers differ is where they part)."""
    for q, (request, a, b) in enumerate(zip(requests, theirs.orders, ours.orders, strict=True)):
        if a == b:
            continue
        first = next(k for k, (x, y) in enumerate(zip(a, b, strict=True)) if x != y)
        print(f"differs: query {request.query.qid} from rank {first + 1}: rank_llm {a[first]} ours {b[first]}")
        for step, (their_call, our_call) in enumerate(zip(theirs.calls, ours.calls, strict=False)):
            if q >= min(len(their_call), len(our_call)) or their_call[q] != our_call[q]:
                break
            their_text, our_text = theirs.texts[step][q], ours.texts[step][q]
            if their_text != our_text:
                print(f"  window {step + 1}, same prompt: rank_llm wrote {their_text!r}")
                print(f"  window {step + 1}, same prompt: reasonrank wrote {our_text!r}")
                break


if __name__ == "__main__":
    sys.exit(main())
