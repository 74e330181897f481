"""SIGKILL ``python -m reasonrank.search`` (BM25 + a torch reranker, with explanations) at random moments, rerun
the same command, and compare run and explanations byte for byte with an uninterrupted run.

Kill points cycle through four kinds: a random moment of the run; right after a checkpoint append lands; while
the run or explanations file is being written (its temporary file exists); and a random moment after which the
checkpoint is damaged by hand (a byte flipped in a middle line and a torn last line, as a crash of the machine
would leave it), where the rerun must say so in one warning line and redo those queries.

    nice -n 10 python benchmarks/kill_anywhere.py --kills 20 [--reranker minilm-hybrid] [--seed 0]

The topics are bundled DL19 queries including 1103812 and 1114819, whose top passages hold U+0085 (the
checkpoint bug of issue 19). Figures and the command behind them are in docs/robustness.md.
"""

from __future__ import annotations

import argparse
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
LINE_SEPARATOR_QUERIES = ("1103812", "1114819")
KINDS = ("random", "checkpoint", "output", "damaged")


def write_topics(folder: Path, count: int) -> Path:
    lines = BUNDLED_TOPICS.read_text(encoding="utf-8").strip("\n").split("\n")
    chosen = [line for line in lines if line.split("\t")[0] in LINE_SEPARATOR_QUERIES]
    chosen += [line for line in lines if line not in chosen][: max(0, count - len(chosen))]
    path = folder / "topics.tsv"
    path.write_text("\n".join(chosen) + "\n", encoding="utf-8")
    return path


def command(folder: Path, topics: Path, args: argparse.Namespace) -> list[str]:
    return [sys.executable, "-m", "reasonrank.search", "--topics", str(topics), "--reranker", args.reranker,
            "--hits", str(args.hits), "--batch-size", "2", "--output", str(folder / "run.txt"),
            "--explanations", str(folder / "explanations.jsonl"), "--quiet"]


def start(folder: Path, topics: Path, args: argparse.Namespace) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(command(folder, topics, args), cwd=folder, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def checkpoint_of(folder: Path) -> Path | None:
    found = list(folder.glob(".run.txt.*.partial.jsonl"))
    return found[0] if found else None


def size(path: Path | None) -> int:
    try:
        return path.stat().st_size if path else 0
    except FileNotFoundError:
        return 0


def kill_when(child: subprocess.Popen, folder: Path, kind: str, rng: random.Random, duration: float) -> str:
    """Wait for the moment of ``kind`` and SIGKILL; returns what the moment was (or that the run ended first)."""
    began = time.monotonic()
    at = rng.uniform(0.1, duration)
    appends = rng.randint(1, 3)
    seen, last = 0, 0
    while child.poll() is None:
        elapsed = time.monotonic() - began
        checkpoint = checkpoint_of(folder)
        now = size(checkpoint)
        if now > last:
            seen, last = seen + 1, now
        temporary = [p.name for p in folder.glob(".*.tmp")]
        if ((kind in ("random", "damaged") and elapsed >= at and (kind == "random" or now))
                or (kind == "checkpoint" and seen >= appends)
                or (kind == "output" and temporary)):
            child.send_signal(signal.SIGKILL)
            child.wait()
            what = f"{elapsed:.1f}s, checkpoint {now} bytes" + (f", writing {temporary[0]}" if temporary else "")
            return what
        time.sleep(0.0005 if kind == "output" or elapsed > 0.8 * duration else 0.01)
    return "finished before the kill"


def damage(checkpoint: Path) -> None:
    lines = checkpoint.read_bytes().split(b"\n")[:-1]
    middle = lines[len(lines) // 2]
    position = len(middle) // 2
    lines[len(lines) // 2] = middle[:position] + bytes([middle[position] ^ 0x01]) + middle[position + 1:]
    checkpoint.write_bytes(b"\n".join(lines) + b"\n" + lines[-1][: len(lines[-1]) // 3])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--queries", type=int, default=12)
    parser.add_argument("--hits", type=int, default=20)
    parser.add_argument("--reranker", default="minilm-hybrid")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="kill-anywhere-") as name:
        work = Path(name)
        topics = write_topics(work, args.queries)
        reference = work / "reference"
        reference.mkdir()
        began = time.monotonic()
        child = start(reference, topics, args)
        _, errors = child.communicate()
        duration = time.monotonic() - began
        if child.returncode != 0:
            print(f"the uninterrupted run failed:\n{errors}")
            return 1
        expected = ((reference / "run.txt").read_bytes(), (reference / "explanations.jsonl").read_bytes())
        print(f"reference: {args.queries} queries x {args.hits} hits, BM25 + {args.reranker}, {duration:.0f}s")
        print("| # | kill point | when | rerun | warning | identical |")
        print("|---:|---|---|---|---|---|")
        killed = identical = warned = 0
        for trial in range(1, args.kills + 1):
            kind = KINDS[(trial - 1) % len(KINDS)]
            folder = work / f"trial-{trial}"
            folder.mkdir()
            moment = kill_when(start(folder, topics, args), folder, kind, rng, duration)
            killed += moment != "finished before the kill"
            if kind == "damaged" and checkpoint_of(folder):
                damage(checkpoint_of(folder))
            left = [p.name for p in folder.iterdir() if p.name in ("run.txt", "explanations.jsonl")]
            rerun = start(folder, topics, args)
            _, errors = rerun.communicate()
            warning = next((line for line in errors.splitlines() if "checkpoint" in line), "")
            warned += bool(warning)
            same = rerun.returncode == 0 and (
                (folder / "run.txt").read_bytes(), (folder / "explanations.jsonl").read_bytes()) == expected
            identical += same
            state = f"exit {rerun.returncode}" + (f", outputs before: {', '.join(left)}" if left else "")
            print(f"| {trial} | {kind} | {moment} | {state} | {warning[:90]} | {'yes' if same else 'NO'} |", flush=True)
            if rerun.returncode != 0:
                print(errors[-1500:])
        print(f"\nkills {killed} / identical {identical} / damaged checkpoints reported {warned}")
        return 0 if identical == args.kills else 1


if __name__ == "__main__":
    sys.exit(main())
