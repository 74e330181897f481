"""The offline effectiveness table: BM25 and every offline reranker on DL19 mini and SciFact test.

``python benchmarks/results_table.py`` runs each system as its own ``python -m reasonrank.search`` command (the exact
commands go into the table), one at a time, writes the runs to ``runs/results/`` and the table to
``docs/results.md``: nDCG@10, MAP@100, R@100 and seconds per query. On 2 CPU cores the encoders rerank all of DL19
mini (depth 100) and the first 100 SciFact test queries (depth 20: SciFact abstracts fill the 256-token limit); the
SmolLM2 generative rerankers see the first 10 DL19 queries at a shallow depth. BM25 on the same queries stands beside
each subset. A system whose registry name is not defined (yet) is listed as skipped.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from machine import machine  # noqa: E402  (this folder is on sys.path when the script runs)

from reasonrank.evaluation import METRICS, evaluate  # noqa: E402
from reasonrank.io.runs import read_run  # noqa: E402
from reasonrank.io.topics import load_qrels, load_topics  # noqa: E402
from reasonrank.pipeline import embedded_collection  # noqa: E402
from reasonrank.rerank.catalog import SPECS  # noqa: E402

SCIFACT_QUERIES = 100  # SciFact test queries the encoders rerank
GENERATIVE_QUERIES = 10  # DL19 queries the SmolLM2 rerankers see
EVENTS = "reranker events:"  # the line reasonrank.search prints with the reranker's repair/fallback counts


@dataclass(frozen=True, slots=True)
class Collection:
    name: str
    corpus: Path
    topics: Path
    qrels: Path


@dataclass(frozen=True, slots=True)
class System:
    """One row: a label, the reranking flags given to ``reasonrank.search``, and the registry names it needs."""

    label: str
    flags: tuple[str, ...]
    needs: tuple[str, ...] = ()
    first: int | None = None  # only the first N queries of the collection
    note: str = ""


@dataclass(frozen=True, slots=True)
class Row:
    collection: str
    label: str
    queries: int
    scores: dict[str, float] | None
    seconds_per_query: float | None
    command: str
    note: str = ""


def collections(data_dir: Path) -> list[Collection]:
    dl19 = embedded_collection()
    scifact = data_dir / "scifact"
    return [
        Collection("DL19 mini", dl19.corpus, dl19.topics, dl19.qrels),
        Collection("SciFact test", scifact / "corpus.jsonl", scifact / "topics.test.tsv", scifact / "qrels.test.txt"),
    ]


def students() -> list[str]:
    """Registry names of the students shipped in reasonrank/models/ (``reasonrank:NAME``, trained in this project)."""
    return sorted(name for name, spec in SPECS.items() if str(spec.model).startswith("reasonrank:"))


def systems(collection: Collection, extra: Sequence[str]) -> list[System]:
    trained = students()

    def encoder(name: str, depth: int, first: int | None = None) -> System:
        note = "trained student (reasonrank/models)" if name in trained else ""
        flags = ("--reranker", name, "--rerank-depth", str(depth))
        return System(f"{name} (depth {depth})", flags, (name,), first, note)

    encoders = ["minilm-bi", "minilm-hybrid", *trained, *extra]
    if collection.name.startswith("SciFact"):
        return [System("BM25", ("--reranker", "none"), first=SCIFACT_QUERIES),
                *(encoder(name, 20, SCIFACT_QUERIES) for name in encoders)]
    few = GENERATIVE_QUERIES
    return [
        System("BM25", ("--reranker", "none")),
        *(encoder(name, 100) for name in encoders),
        System("BM25", ("--reranker", "none"), first=few),
        System("smollm2-pointwise (depth 5)", ("--reranker", "smollm2-pointwise", "--rerank-depth", "5"),
               ("smollm2-pointwise",), few),
        System("smollm2-listwise (depth 10, window 5)", ("--reranker", "smollm2-listwise", "--rerank-depth", "10"),
               ("smollm2-listwise",), few),
        System("cascade minilm-hybrid:100 → smollm2-pointwise:5",
               ("--cascade", "minilm-hybrid:100,smollm2-pointwise:5"), ("minilm-hybrid", "smollm2-pointwise"), few),
    ]


def slug(label: str) -> str:
    keep = "".join(c if c.isalnum() or c in "-." else "-" for c in label.split(" (")[0].replace("→", "to"))
    return "-".join(part for part in keep.split("-") if part)


def subset_topics(collection: Collection, folder: Path, first: int) -> Path:
    """The first ``first`` topics of a collection as a TSV beside the runs."""
    path = folder / f"topics.{slug(collection.name)}.first{first}.tsv"
    queries = load_topics(str(collection.topics))[:first]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{q.qid}\t{q.text}\n" for q in queries), encoding="utf-8")
    return path


def run_system(collection: Collection, system: System, folder: Path, threads: int) -> Row:
    topics = subset_topics(collection, folder, system.first) if system.first else collection.topics
    suffix = f".first{system.first}" if system.first else ""
    output = folder / f"run.{slug(collection.name)}.{slug(system.label)}{suffix}.txt"
    argv = ["-m", "reasonrank.search", "--index", str(collection.corpus), "--topics", str(topics),
            "--hits", "100", *system.flags, "--output", str(output), "--no-resume", "--quiet"]
    command = shlex.join(["python", *[_relative(a) for a in argv]])
    missing = [name for name in system.needs if name not in SPECS]
    if missing:
        note = f"skipped: {', '.join(missing)} not registered"
        return Row(collection.name, system.label, 0, None, None, command, note)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "REASONRANK_TORCH_THREADS": str(threads)}
    print(f"[{collection.name}] {system.label}: {command}", file=sys.stderr, flush=True)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, *argv], cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["?"])[-1][:150]
        return Row(collection.name, system.label, 0, None, None, command, f"failed: {reason}")
    queries = load_topics(str(topics))
    result = evaluate(read_run(output), load_qrels(str(collection.qrels)))
    # What the reranker had to repair or fall back on (unparsed permutations, missing labels) explains a row.
    events = [line for line in done.stderr.splitlines() if line.startswith(EVENTS)]
    notes = [f"first {system.first} queries" if system.first else "", system.note, *events]
    return Row(collection.name, system.label, result.queries, result.mean, seconds / len(queries), command,
               "; ".join(n for n in notes if n))


def _relative(argument: str) -> str:
    """Paths as a reader types them from the repository root (``../shared/data/...``, ``reasonrank/...``)."""
    path = Path(argument)
    return os.path.relpath(path, ROOT) if path.is_absolute() else argument


def markdown(rows: Sequence[Row], threads: int) -> str:
    lines = [
        "# Offline effectiveness",
        "",
        "Regenerate with `python benchmarks/results_table.py` (about 40 minutes on 2 CPU cores); it runs each",
        "command below one after the other, writes the runs to `runs/results/` and this file. Metrics are",
        "pytrec_eval's (nDCG@10, MAP@100, Recall@100) over the judged queries of each run. BM25 is Pyserini's",
        "(k1=0.9, b=0.4) over the corpus, 100 hits per query.",
        "",
        f"Machine: {machine()}; torch limited to {threads} threads (`REASONRANK_TORCH_THREADS`).",
        "",
        "**s/query** is the wall time of the whole command (JVM start, index open, model load, BM25 and reranking;",
        "the BM25 indexes are built beforehand, untimed)",
        "divided by its queries, so short runs carry more start-up per query; compare a row with the BM25 row above",
        "it for the reranking cost. On SciFact the encoders rerank the BM25 top 20 of the first",
        f"{SCIFACT_QUERIES} test queries (abstracts fill the 256-token limit, so depth 100 on all 300 would take an",
        "hour here). The SmolLM2-135M rerankers are plumbing checks, not quality claims: they rerank a shallow head of",
        f"the first {GENERATIVE_QUERIES} DL19 queries, next to BM25 on the same queries. The note column quotes the",
        "`reranker events:` line of the command: permutations the listwise reranker had to repair (missing entries",
        "keep their incoming order), labels read from the label token's logprobs, labels missing (scored 0).",
        "",
        "| collection | system | queries | " + " | ".join(METRICS) + " | s/query | note |",
        "|---|---|---:|" + "---:|" * len(METRICS) + "---:|---|",
    ]
    for row in rows:
        if row.scores is None:
            cells = " | ".join("-" for _ in METRICS)
            lines.append(f"| {row.collection} | {row.label} | - | {cells} | - | {row.note} |")
            continue
        cells = " | ".join(f"{row.scores[m]:.4f}" for m in METRICS)
        lines.append(f"| {row.collection} | {row.label} | {row.queries} | {cells} | "
                     f"{row.seconds_per_query:.3f} | {row.note} |")
    lines += ["", "## Commands", "", "Each ran with `HF_HUB_OFFLINE=1` from the repository root.", ""]
    for row in rows:
        if row.command:
            lines += [f"- {row.collection}, {row.label}:", f"  `{row.command}`"]
    return "\n".join(lines) + "\n"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    shared = os.environ.get("REASONRANK_SHARED_DATA", str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--data-dir", default=shared,
                        help="the shared data folder holding scifact/ (default ../shared/data)")
    parser.add_argument("--output-dir", default=str(ROOT / "runs" / "results"), help="run files (runs/results)")
    parser.add_argument("--table", default=str(ROOT / "docs" / "results.md"), help="markdown output (docs/results.md)")
    parser.add_argument("--extra", action="append", default=[], metavar="NAME",
                        help="another registry name or model folder to add at depth 100 (repeatable)")
    parser.add_argument("--only", help="run only the systems whose label contains this text (BM25 always runs)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads per command (default 2)")
    return parser.parse_args(argv)


# What follows this line in the table file is measured by other commands (first stages) and kept as it is.
KEPT = "<!-- not generated by benchmarks/results_table.py: kept when it rewrites this file -->"


def kept_part(path: Path) -> str:
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    return "\n" + text[text.index(KEPT):] if KEPT in text else ""


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    kept = kept_part(Path(args.table))
    folder = Path(args.output_dir)
    from reasonrank.retrieval.index import ensure_index

    for collection in collections(Path(args.data_dir)):  # index once, untimed, so no row pays for indexing
        ensure_index(collection.corpus)
    Path(args.table).parent.mkdir(parents=True, exist_ok=True)
    rows: list[Row] = []
    for collection in collections(Path(args.data_dir)):
        chosen = [s for s in systems(collection, args.extra)
                  if not args.only or s.label.startswith("BM25") or args.only in s.label]
        for system in chosen:
            rows.append(run_system(collection, system, folder, args.threads))
            table = markdown(rows, args.threads)  # rewritten after every row: a long run leaves a usable table
            Path(args.table).write_text(table + kept, encoding="utf-8")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
