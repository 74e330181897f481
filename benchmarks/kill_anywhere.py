"""SIGKILL ``python -m reasonrank.search`` (BM25 + a reranker, with explanations) at random moments, rerun the
same command, and compare run and explanations byte for byte with an uninterrupted run.

Kill points cycle through these kinds (the output write twice: once the run's, once the explanations'):

* ``random``: a random moment of the run (JVM start, BM25, reranking, writing);
* ``checkpoint``: the instant the checkpoint file is appended to (an inotify ``IN_MODIFY`` event: the kill
  lands between the append's write and its fsync, or just after);
* ``run write`` / ``explanations write``: the instant that output's temporary file is created (inotify
  ``IN_CREATE``); such a kill counts only when that temporary file is left behind (it was being written);
* ``damaged``: the instant of a checkpoint append, after which the checkpoint is damaged by hand (a byte
  flipped in a middle line and a torn last line, as a crash of the machine would leave it); the rerun must say
  so in one warning line and redo those queries.

Every trial is a real kill: when the run ends before its kill point, the trial is tried again (an earlier
random moment, an earlier checkpoint append) until a kill lands. ``--parallel`` runs trials side by side.

    REASONRANK_CACHE=$(mktemp -d) nice -n 10 python benchmarks/kill_anywhere.py --kills 20 --parallel 2

The reranker computes every embedding (``--option cache=false`` by default), so kills land in real work. The
topics are bundled DL19 queries including 1103812 and 1114819, whose top passages hold U+0085 (they once broke
the checkpoint reader). Figures and the command behind them are in docs/robustness.md.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import random
import select
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUNDLED_TOPICS = ROOT / "reasonrank" / "data" / "msmarco-dl19-mini" / "topics.dl19-passage.tsv"
LINE_SEPARATOR_QUERIES = ("1103812", "1114819")
KINDS = ("random", "checkpoint", "run write", "damaged", "random", "checkpoint", "explanations write", "damaged")
IN_MODIFY, IN_CREATE = 0x2, 0x100
EVENT = struct.Struct("iIII")
ATTEMPTS = 6


def write_topics(folder: Path, count: int) -> Path:
    lines = BUNDLED_TOPICS.read_text(encoding="utf-8").strip("\n").split("\n")
    chosen = [line for line in lines if line.split("\t")[0] in LINE_SEPARATOR_QUERIES]
    chosen += [line for line in lines if line not in chosen][: max(0, count - len(chosen))]
    path = folder / "topics.tsv"
    path.write_text("\n".join(chosen) + "\n", encoding="utf-8")
    return path


def command(folder: Path, topics: Path, args: argparse.Namespace) -> list[str]:
    options = [part for option in args.option for part in ("--option", option)]
    return [sys.executable, "-m", "reasonrank.search", "--topics", str(topics), "--reranker", args.reranker,
            "--hits", str(args.hits), "--batch-size", "2", "--output", str(folder / "run.txt"),
            "--explanations", str(folder / "explanations.jsonl"), "--quiet", *options]


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


class Watch:
    """inotify on one folder: the names of files created or modified there, as they happen."""

    def __init__(self, folder: Path):
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.fd = self.libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0 or self.libc.inotify_add_watch(self.fd, str(folder).encode(), IN_MODIFY | IN_CREATE) < 0:
            raise OSError(ctypes.get_errno(), "inotify")

    def events(self, timeout: float) -> list[tuple[int, str]]:
        if not select.select([self.fd], [], [], timeout)[0]:
            return []
        data, found = os.read(self.fd, 65536), []
        while data:
            _, mask, _, length = EVENT.unpack_from(data)
            name = data[EVENT.size : EVENT.size + length].rstrip(b"\0").decode()
            found.append((mask, name))
            data = data[EVENT.size + length :]
        return found

    def close(self) -> None:
        os.close(self.fd)


@dataclass
class Trial:
    number: int
    kind: str
    moment: str = ""
    attempts: int = 0
    killed: bool = False
    left: str = ""
    rerun: str = ""
    warning: str = ""
    identical: bool = False


def kill_when(child: subprocess.Popen, folder: Path, kind: str, at: float, appends: int) -> str:
    """SIGKILL at the moment of ``kind``; returns what the moment was, or "" when the run ended first."""
    watch = Watch(folder)
    began, seen = time.monotonic(), 0
    try:
        while child.poll() is None:
            elapsed = time.monotonic() - began
            if kind == "random" and elapsed >= at:
                break
            events = watch.events(min(0.05, max(0.0, at - elapsed)) if kind == "random" else 0.05)
            seen += sum(1 for mask, name in events if mask & IN_MODIFY and name.endswith(".partial.jsonl"))
            created = [name for mask, name in events if mask & IN_CREATE and name.endswith(".tmp")]
            if (kind in ("checkpoint", "damaged") and seen >= appends) or (
                    kind.endswith(" write") and any(name.startswith(f".{kind.split()[0]}.") for name in created)):
                break
        else:
            return ""
        child.send_signal(signal.SIGKILL)
        child.wait()
        if child.returncode != -signal.SIGKILL:
            return ""  # it ended on its own just before the signal
        temporary = [p.name for p in folder.glob(".*.tmp") if ".partial" not in p.name]
        left = " and ".join(sorted(name.split(".")[1] for name in temporary))
        return (f"{time.monotonic() - began:.1f}s, checkpoint {size(checkpoint_of(folder))} bytes"
                + (f", after append {appends}" if kind in ("checkpoint", "damaged") else "")
                + (f", left {left} .tmp" if temporary else ""))
    finally:
        watch.close()


def damage(checkpoint: Path) -> None:
    lines = checkpoint.read_bytes().split(b"\n")[:-1]
    middle = lines[len(lines) // 2]
    position = len(middle) // 2
    lines[len(lines) // 2] = middle[:position] + bytes([middle[position] ^ 0x01]) + middle[position + 1:]
    checkpoint.write_bytes(b"\n".join(lines) + b"\n" + lines[-1][: len(lines[-1]) // 3])


def run_trial(trial: Trial, work: Path, topics: Path, args: argparse.Namespace, duration: float,
              expected: tuple[bytes, bytes], appends_total: int) -> Trial:
    rng = random.Random(args.seed * 1000 + trial.number)
    latest, appends = duration, rng.randint(1, appends_total)
    folder = work / f"trial-{trial.number}"
    while not trial.killed and trial.attempts < ATTEMPTS:
        trial.attempts += 1
        if folder.exists():
            for path in folder.iterdir():
                path.unlink()
        folder.mkdir(exist_ok=True)
        at = rng.uniform(0.1, latest)
        began = time.monotonic()
        moment = kill_when(start(folder, topics, args), folder, trial.kind, at, appends)
        left_behind = moment.partition(", left ")[2]
        if moment and (not trial.kind.endswith(" write") or trial.kind.split()[0] in left_behind):
            trial.killed, trial.moment = True, moment
        else:  # ended before the kill, or killed after the output was renamed: try an earlier point
            latest = min(latest, time.monotonic() - began) * 0.8
            appends = max(1, appends - 1)
            trial.moment = "missed"
    if trial.kind == "damaged" and checkpoint_of(folder) and size(checkpoint_of(folder)):
        damage(checkpoint_of(folder))
        trial.moment += ", checkpoint damaged"
    trial.left = ", ".join(p.name for p in folder.iterdir() if p.name in ("run.txt", "explanations.jsonl"))
    rerun = start(folder, topics, args)
    _, errors = rerun.communicate()
    trial.warning = next((line for line in errors.splitlines() if "checkpoint" in line), "")
    trial.rerun = f"exit {rerun.returncode}" + ("" if rerun.returncode == 0 else f": {errors.strip()[-300:]}")
    trial.identical = rerun.returncode == 0 and (
        (folder / "run.txt").read_bytes(), (folder / "explanations.jsonl").read_bytes()) == expected
    return trial


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--queries", type=int, default=6)
    parser.add_argument("--hits", type=int, default=10)
    parser.add_argument("--reranker", default="minilm-hybrid")
    parser.add_argument("--option", action="append", default=["cache=false"],
                        help="reranker option (default: cache=false)")
    parser.add_argument("--parallel", type=int, default=1, help="trials run side by side")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
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
        appends_total = (args.queries + 1) // 2
        print(f"reference: {args.queries} queries x {args.hits} hits, BM25 + {args.reranker} "
              f"({', '.join(args.option)}), {duration:.0f}s; {args.parallel} trial(s) at a time", flush=True)
        print("| # | kill point | when | tries | outputs before the rerun | rerun | warning | identical |")
        print("|---:|---|---|---:|---|---|---|---|", flush=True)
        lock = threading.Lock()
        trials = [Trial(number, KINDS[(number - 1) % len(KINDS)]) for number in range(1, args.kills + 1)]

        def one(trial: Trial) -> Trial:
            run_trial(trial, work, topics, args, duration, expected, appends_total)
            with lock:
                print(f"| {trial.number} | {trial.kind} | {trial.moment} | {trial.attempts} | {trial.left or '-'} "
                      f"| {trial.rerun} | {trial.warning.rpartition('.partial.jsonl: ')[2]} "
                      f"| {'yes' if trial.identical else 'NO'} |", flush=True)
            return trial

        with ThreadPoolExecutor(args.parallel) as pool:
            done = list(pool.map(one, trials))
        killed = sum(t.killed for t in done)
        identical = sum(t.identical for t in done)
        during_output = sum(t.kind.endswith(" write") and t.killed for t in done)
        warned = sum(bool(t.warning) for t in done)
        damaged = sum(t.kind == "damaged" and "damaged" in t.moment for t in done)
        print(f"\nkills {killed} of {args.kills} / identical {identical} / killed during an output write "
              f"{during_output} / damaged checkpoints {damaged}, reported in one warning line {warned}")
        return 0 if identical == killed == args.kills else 1


if __name__ == "__main__":
    sys.exit(main())
