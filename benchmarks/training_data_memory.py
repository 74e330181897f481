"""Peak memory of building the distillation set from synthetic candidates and teacher files of growing size.

For each size N the script writes a TREC run and a teacher scores JSONL of N lines each (N/100 queries × 100
candidates drawn from one synthetic corpus of ``--corpus-docs`` passages, the first candidate judged relevant), then
builds the set in a fresh process per (builder, size) and reads that process's peak resident memory
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``: the whole process, imports and memory-mapped pages it touched
included; ``file-backed`` is the part of the resident memory at the end that is mapped files, shared libraries and
the memory-mapped tables, pages the kernel can drop). ``arrow`` is :func:`reasonrank.train.groups.build_groups` with
an empty cache (the tables are built, not read back); ``dict`` is the earlier builder that reads every file into
Python dicts (tests/dict_groups.py). ``imports only`` is a process that imports the builder and builds nothing:
the floor under both.

    .venv/bin/python benchmarks/training_data_memory.py [--sizes 100000 1000000 --dict-sizes 100000 1000000]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "benchmarks"), str(ROOT / "tests")]
from machine import cpu_line  # noqa: E402  (this folder is on sys.path when the script runs)

CANDIDATES_PER_QUERY = 100
WORDS = [f"w{n}" for n in range(5000)]


def write_inputs(folder: Path, lines: int, corpus_docs: int) -> dict[str, str]:
    """Corpus, topics, qrels, run and teacher scores of ``lines`` candidates (fixed seed)."""
    rng = random.Random(lines)
    corpus = folder / "corpus.jsonl"
    if not corpus.is_file():
        corpus.write_text("".join(
            json.dumps({"id": f"d{n}", "contents": " ".join(rng.choices(WORDS, k=40))}) + "\n"
            for n in range(corpus_docs)
        ))
    queries = lines // CANDIDATES_PER_QUERY
    paths = {name: folder / f"{name}-{lines}.{suffix}" for name, suffix in
             (("topics", "tsv"), ("qrels", "txt"), ("run", "txt"), ("teacher", "jsonl"))}
    with (paths["topics"].open("w") as topics, paths["qrels"].open("w") as qrels, paths["run"].open("w") as run,
          paths["teacher"].open("w") as teacher):
        for q in range(queries):
            topics.write(f"q{q}\t{' '.join(rng.choices(WORDS, k=8))}\n")
            docids = rng.sample(range(corpus_docs), CANDIDATES_PER_QUERY)
            qrels.write(f"q{q} 0 d{docids[0]} 1\n")
            for rank, doc in enumerate(docids, start=1):
                run.write(f"q{q} Q0 d{doc} {rank} {CANDIDATES_PER_QUERY - rank} synthetic\n")
                teacher.write(json.dumps({"qid": f"q{q}", "docid": f"d{doc}", "score": rng.random()}) + "\n")
    return {"corpus": str(corpus), **{name: str(path) for name, path in paths.items()}}


def child(builder: str, files: dict[str, str], output: str) -> None:
    """Runs in its own process: build the set, print groups, seconds and peak RSS as JSON."""
    from dict_groups import dict_groups

    from reasonrank.train.distill import DistillConfig
    from reasonrank.train.groups import build_groups

    config = DistillConfig(model="unused", output=output, corpus=files["corpus"], topics=files["topics"],
                           qrels=files["qrels"], candidates=files["run"], teacher_scores=files["teacher"],
                           alpha=0.5, group_size=8, negatives_depth=CANDIDATES_PER_QUERY)
    start = time.perf_counter()
    groups = {"arrow": build_groups, "dict": dict_groups, "imports": lambda _: []}[builder](config)
    seconds = time.perf_counter() - start
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    mapped_mib = int(status["RssFile"].split()[0]) / 1024  # file-backed pages: libraries and mapped tables
    print(json.dumps({"groups": len(groups), "seconds": seconds, "peak_mib": peak_mib, "mapped_mib": mapped_mib}))


def measure(builder: str, files: dict[str, str], scratch: Path) -> dict:
    with tempfile.TemporaryDirectory(dir=scratch) as cache:
        env = {**os.environ, "REASONRANK_CACHE": cache, "HF_HUB_OFFLINE": "1"}
        done = subprocess.run(
            [sys.executable, __file__, "--child", builder, json.dumps(files), str(Path(cache) / "out")],
            env=env, check=True, capture_output=True, text=True,
        )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000], help="lines per file")
    parser.add_argument("--dict-sizes", type=int, nargs="*", default=[100_000], help="sizes the dict builder runs")
    parser.add_argument("--corpus-docs", type=int, default=20_000)
    parser.add_argument("--child", nargs=3, metavar=("BUILDER", "FILES", "OUTPUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child[0], json.loads(args.child[1]), args.child[2])
        return 0
    print(cpu_line())
    print(f"{'builder':<13} {'lines':>9} {'groups':>7} {'seconds':>8} {'peak RSS MiB':>13} {'file-backed MiB':>16}")
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        runs = [("imports", min(args.sizes))] + [("arrow", n) for n in args.sizes] + [("dict", n) for n in
                                                                                        args.dict_sizes]
        inputs = {n: write_inputs(folder, n, args.corpus_docs) for n in sorted({n for _, n in runs})}
        for builder, lines in runs:
            result = measure(builder, inputs[lines], folder)
            name = "imports only" if builder == "imports" else builder
            print(f"{name:<13} {lines:>9} {result['groups']:>7} {result['seconds']:>8.1f} {result['peak_mib']:>13.0f} "
                  f"{result['mapped_mib']:>16.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
