"""Soak ``python -m reasonrank.search`` (BM25 in the JVM + a torch reranker in one process) and count crashes.

Each search runs in a fresh temporary folder that is also its ``TMPDIR`` (the JVM writes a crash report,
``hs_err_pid*.log`` or reasonrank's ``reasonrank-jvm-crash-*.log``, to one of the two). The reranker runs on
torch (``--option runtime=torch``; since the encoders default to the exported ONNX graph on CPUs, torch would
otherwise never run beside the JVM) with the embedding cache off (``--option cache=false``), so every run
computes every embedding with torch.

* ``--minutes M``: searches back to back for M minutes. Each is, at random, left to finish, or sent SIGTERM or
  SIGINT at a random moment of its run (JVM start, BM25, reranking, output writing: uniform over the length of
  an uninterrupted run). A signalled run must end by that signal with nothing torn down under it (SIGTERM: exit
  -15 or 143; SIGINT: 130 with the "re-run to continue" line) and is then rerun in its folder, which must
  resume and finish. Every finished run's run file and explanations must be byte for byte those of an
  uninterrupted reference run. A crash is anything else: a JVM crash report, a death by SIGSEGV/SIGABRT/SIGBUS,
  a traceback or torch error, another exit code, or different outputs.
* ``--sigterm N``: N runs each sent SIGTERM 0-3 s after their first checkpoint (the figure before/after
  ``-Xrs``).

    nice -n 10 python benchmarks/soak.py --minutes 60 --hits 20 --log soak.log

One line per search goes to ``--log`` (and stdout) as it ends, so a long soak can be watched; the table comes
last. Figures and the commands behind them are in docs/robustness.md.
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
BUNDLED_TOPICS = ROOT / "reasonrank" / "data" / "msmarco-dl19-mini" / "topics.dl19-passage.tsv"
CRASH_EXITS = {-signal.SIGSEGV, -signal.SIGABRT, -signal.SIGBUS, 134, 135, 139}
EXPECTED_EXITS = {None: {0}, signal.SIGTERM: {-signal.SIGTERM, 143}, signal.SIGINT: {130}}
TORN_DOWN = ("Traceback", "RuntimeError", "Fatal Python error", "Segmentation fault", "core dumped")


def search_command(folder: Path, args: argparse.Namespace, topics: Path | None, resume: bool = False) -> list[str]:
    command = [sys.executable, "-m", "reasonrank.search", "--reranker", args.reranker, "--hits", str(args.hits),
               "--rerank-depth", str(args.hits), "--batch-size", "2", "--output", str(folder / "run.txt"),
               "--explanations", str(folder / "explanations.jsonl"), "--quiet"]
    command += [part for option in args.option for part in ("--option", option)]
    command += ["--topics", str(topics)] if topics else []
    return command + ([] if resume else ["--no-resume"])


def crash_reports(*folders: Path) -> list[str]:
    return [p for folder in folders for pattern in ("hs_err_pid*.log", "reasonrank-jvm-crash-*.log")
            for p in glob.glob(str(folder / pattern))]


def start(folder: Path, args: argparse.Namespace, topics: Path | None, resume: bool = False) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TMPDIR": str(folder), "PYTHONPATH": str(ROOT)}
    with (folder / "stderr.txt").open("w") as err:
        return subprocess.Popen(search_command(folder, args, topics, resume), cwd=folder, env=env,
                                stdout=subprocess.DEVNULL, stderr=err)


def verdict(rc: int, folder: Path, sent: signal.Signals | None) -> str:
    """Empty when the search ended as it should have; otherwise what went wrong."""
    text = (folder / "stderr.txt").read_text(errors="replace")
    if crash_reports(folder):
        return f"JVM crash report (rc {rc})"
    if rc in CRASH_EXITS:
        return f"died by signal/abort (rc {rc})"
    if any(mark in text for mark in TORN_DOWN):
        last = [line for line in text.splitlines() if line.strip()][-1]
        return f"traceback (rc {rc}): {last[:120]}"
    if rc not in EXPECTED_EXITS[sent]:
        return f"unexpected exit {rc} after {sent.name if sent else 'no signal'}: {text.strip()[-120:]}"
    if sent == signal.SIGINT and "re-run the same command" not in text:
        return f"SIGINT without the re-run line: {text.strip()[-120:]}"
    return ""


def outputs(folder: Path) -> tuple[bytes, bytes]:
    return (folder / "run.txt").read_bytes(), (folder / "explanations.jsonl").read_bytes()


class Log:
    def __init__(self, path: Path | None):
        self.file = path.open("a", buffering=1) if path else None

    def __call__(self, line: str) -> None:
        print(line, flush=True)
        if self.file:
            self.file.write(line + "\n")


def reference_run(args: argparse.Namespace, topics: Path | None) -> tuple[tuple[bytes, bytes], float]:
    with tempfile.TemporaryDirectory(prefix="soak-reference-") as name:
        folder = Path(name)
        began = time.monotonic()
        rc = start(folder, args, topics).wait()
        duration = time.monotonic() - began
        problem = verdict(rc, folder, None)
        if problem:
            raise SystemExit(f"the reference run failed: {problem}")
        return outputs(folder), duration


def one_search(args: argparse.Namespace, topics: Path | None, expected: tuple[bytes, bytes], duration: float,
               rng: random.Random) -> tuple[str, str]:
    """One soak iteration; returns (what was done, problem or empty)."""
    sent = rng.choice([None, None, signal.SIGTERM, signal.SIGINT])
    with tempfile.TemporaryDirectory(prefix="soak-") as name:
        folder = Path(name)
        began = time.monotonic()
        child = start(folder, args, topics)
        at = rng.uniform(0.0, duration) if sent else None
        if sent:
            try:
                child.wait(timeout=at)
                sent = None  # finished before the moment: an ordinary run
            except subprocess.TimeoutExpired:
                child.send_signal(sent)
        rc = child.wait()
        what = f"{sent.name} at {at:.1f}s" if sent else "to the end"
        what += f", rc {rc}, {time.monotonic() - began:.0f}s"
        problem = verdict(rc, folder, sent)
        if problem:
            return what, problem
        if sent:
            rc = start(folder, args, topics, resume=True).wait()
            what += f"; rerun rc {rc}"
            problem = verdict(rc, folder, None)
            if problem:
                return what, "rerun: " + problem
        if outputs(folder) != expected:
            return what, "outputs differ from the reference run"
        return what, ""


def soak(args: argparse.Namespace, topics: Path | None, log: Log) -> None:
    rng = random.Random(args.seed)
    expected, duration = reference_run(args, topics)
    log(f"reference run: {duration:.0f}s")
    searches = crashes = signalled = 0
    began = time.monotonic()
    while time.monotonic() - began < args.minutes * 60:
        what, problem = one_search(args, topics, expected, duration, rng)
        searches += 1
        signalled += "SIG" in what
        crashes += bool(problem)
        log(f"{time.strftime('%H:%M:%S')} #{searches} {what}: {problem or 'ok'}")
    hours = (time.monotonic() - began) / 3600
    log("| measurement | searches | of them signalled | crashes | duration | crashes per hour |")
    log("|---|---:|---:|---:|---:|---:|")
    log(f"| soak, SIGTERM/SIGINT at random moments | {searches} | {signalled} | {crashes} | {hours * 60:.1f} min "
        f"| {crashes / hours:.1f} |")


def sigterm_trials(args: argparse.Namespace, topics: Path | None, log: Log) -> None:
    rng = random.Random(args.seed)
    crashes = 0
    for trial in range(1, args.sigterm + 1):
        with tempfile.TemporaryDirectory(prefix="sigterm-") as name:
            folder = Path(name)
            child = start(folder, args, topics)
            while child.poll() is None and not list(folder.glob(".run.txt.*.partial.jsonl")):
                time.sleep(0.05)
            time.sleep(rng.uniform(0.0, 3.0))
            child.send_signal(signal.SIGTERM)
            problem = verdict(child.wait(), folder, signal.SIGTERM)
            crashes += bool(problem)
            log(f"SIGTERM trial {trial}: {problem or 'ok'}")
    log(f"| SIGTERM 0-3 s after the first checkpoint | {args.sigterm} | {crashes} |")


def write_topics(folder: Path, count: int) -> Path:
    lines = BUNDLED_TOPICS.read_text(encoding="utf-8").strip("\n").split("\n")[:count]
    path = folder / "topics.tsv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=0.0, help="soak duration")
    parser.add_argument("--sigterm", type=int, default=0, help="runs sent SIGTERM just after their first checkpoint")
    parser.add_argument("--reranker", default="minilm-hybrid")
    parser.add_argument("--option", action="append", default=["runtime=torch", "cache=false"],
                        help="reranker option (default: runtime=torch, cache=false)")
    parser.add_argument("--hits", type=int, default=20)
    parser.add_argument("--queries", type=int, default=0, help="the first N bundled DL19 queries (default: all 43)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--log", type=Path, help="also append the progress lines here")
    args = parser.parse_args()
    # A job started in the background with ``&`` inherits SIGINT ignored, and so would every search it starts
    # (Python installs no KeyboardInterrupt handler then): a handler here makes exec reset it to the default.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    log = Log(args.log)
    with tempfile.TemporaryDirectory(prefix="soak-topics-") as name:
        topics = write_topics(Path(name), args.queries) if args.queries else None
        log(f"search: BM25 + {args.reranker} ({', '.join(args.option)}) on the bundled DL19 mini collection, "
            f"{args.queries or 43} queries x {args.hits} hits")
        if args.minutes:
            soak(args, topics, log)
        if args.sigterm:
            sigterm_trials(args, topics, log)
    return 0


if __name__ == "__main__":
    sys.exit(main())
