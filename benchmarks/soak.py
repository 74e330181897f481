"""Soak ``python -m reasonrank.search`` (BM25 in the JVM + a torch reranker in one process) and count crashes.

Two measurements, each in a fresh temporary folder (a JVM crash report ``hs_err_pid*.log`` lands in the working
directory unless the JVM is told otherwise, so it is looked for there and in the temporary folder):

* ``--minutes M``: the search repeated back to back for M minutes; a crash is a run that does not exit 0,
  prints a traceback, or leaves a JVM crash report.
* ``--sigterm N``: N runs each sent SIGTERM at a random moment while the reranker works (after its first
  checkpoint). The process must end by the signal with nothing torn down under it: no crash report, no
  traceback, exit by SIGTERM (-15) or 143.

    nice -n 10 python benchmarks/soak.py --minutes 20 --sigterm 10

Prints one table; figures and the commands behind them are in docs/robustness.md.
"""

from __future__ import annotations

import argparse
import glob
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CRASH_EXITS = {-signal.SIGSEGV, -signal.SIGABRT, -signal.SIGBUS, 134, 139}


def search_command(folder: Path, reranker: str, hits: int) -> list[str]:
    return [sys.executable, "-m", "reasonrank.search", "--reranker", reranker, "--hits", str(hits),
            "--rerank-depth", str(hits), "--batch-size", "2", "--output", str(folder / "run.txt"),
            "--explanations", str(folder / "explanations.jsonl"), "--quiet", "--no-resume"]


def crash_reports(*folders: Path) -> list[str]:
    return [p for folder in folders for p in glob.glob(str(folder / "hs_err_pid*.log"))]


def start(folder: Path, reranker: str, hits: int) -> tuple[subprocess.Popen, Path]:
    log = folder / "stderr.txt"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TMPDIR": str(folder)}
    with log.open("w") as err:
        child = subprocess.Popen(search_command(folder, reranker, hits), cwd=folder, env=env,
                                 stdout=subprocess.DEVNULL, stderr=err)
    return child, log


def verdict(rc: int, log: Path, folder: Path, expected: set[int]) -> str:
    text = log.read_text(errors="replace")
    if crash_reports(folder):
        return f"JVM crash report (rc {rc})"
    if rc in CRASH_EXITS:
        return f"died by signal/abort (rc {rc})"
    if "Traceback" in text or "RuntimeError" in text:
        last = [line for line in text.splitlines() if line.strip()][-1]
        return f"traceback (rc {rc}): {last[:120]}"
    if rc not in expected:
        return f"unexpected exit {rc}"
    return ""


def soak(minutes: float, reranker: str, hits: int) -> tuple[int, int, float, list[str]]:
    runs = crashes = 0
    problems: list[str] = []
    began = time.monotonic()
    while time.monotonic() - began < minutes * 60:
        with tempfile.TemporaryDirectory(prefix="soak-") as name:
            folder = Path(name)
            child, log = start(folder, reranker, hits)
            rc = child.wait()
            runs += 1
            problem = verdict(rc, log, folder, {0})
            if problem:
                crashes += 1
                problems.append(problem)
    return runs, crashes, (time.monotonic() - began) / 3600, problems


def sigterm_trials(trials: int, reranker: str, hits: int, rng: random.Random) -> tuple[int, list[str]]:
    crashes = 0
    problems: list[str] = []
    for _ in range(trials):
        with tempfile.TemporaryDirectory(prefix="sigterm-") as name:
            folder = Path(name)
            child, log = start(folder, reranker, hits)
            while child.poll() is None and not list(folder.glob(".run.txt.*.partial.jsonl")):
                time.sleep(0.05)
            time.sleep(rng.uniform(0.0, 3.0))
            child.send_signal(signal.SIGTERM)
            rc = child.wait()
            problem = verdict(rc, log, folder, {-signal.SIGTERM, 143, 130})
            if problem:
                crashes += 1
                problems.append(problem)
    return crashes, problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=0.0, help="back-to-back soak duration")
    parser.add_argument("--sigterm", type=int, default=0, help="runs sent SIGTERM mid-reranking")
    parser.add_argument("--reranker", default="minilm-hybrid")
    parser.add_argument("--hits", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    print(f"search: BM25 + {args.reranker} on the bundled DL19 mini collection (43 queries, {args.hits} hits)")
    print("| measurement | runs | crashes | duration | crashes per hour |")
    print("|---|---:|---:|---:|---:|")
    if args.minutes:
        runs, crashes, hours, problems = soak(args.minutes, args.reranker, args.hits)
        print(f"| soak, no signals | {runs} | {crashes} | {hours * 60:.1f} min | {crashes / hours:.1f} |")
        for problem in problems:
            print(f"  - {problem}")
    if args.sigterm:
        crashes, problems = sigterm_trials(args.sigterm, args.reranker, args.hits, rng)
        print(f"| SIGTERM mid-reranking | {args.sigterm} | {crashes} | | |")
        for problem in problems:
            print(f"  - {problem}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
