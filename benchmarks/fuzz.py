"""The input fuzzing of tests/test_fuzz_inputs.py with a larger budget: counts of cases, clean errors, accepted
inputs and failures (tracebacks, silently wrong results, partial outputs, inputs changed), which must be 0.

    python benchmarks/fuzz.py --files 3000 --commands 600 --configs 600 --collisions 300 [--seed 0]

Besides files and evaluate/merge/report command lines: training and teacher configs (settings changed, added,
dropped, outputs set to inputs, damaged YAML, ``--set`` overrides) through everything those commands check before
a model loads, and every command's outputs set to its inputs, input folders or other outputs (tests/collisions.py).

Figures and the command behind them are in docs/robustness.md.
"""

from __future__ import annotations

import argparse
import collections
import random
import sys
import tempfile
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from collisions import collision_outcome, collisions  # noqa: E402
from fuzzing import command_cases, command_outcome, config_cases, config_outcome, file_cases, file_outcome  # noqa: E402
from hypothesis import HealthCheck, given, seed, settings  # noqa: E402


def run(strategy, budget: int, check, label: str, rng_seed: int) -> collections.Counter:
    counts: collections.Counter = collections.Counter()
    failures: dict[str, str] = {}
    if budget < 1:  # this kind of case left out of the run
        return counts

    @seed(rng_seed)
    @settings(max_examples=budget, deadline=None, database=None,
              suppress_health_check=list(HealthCheck), phases=["generate"])
    @given(strategy)
    def one(case) -> None:
        with tempfile.TemporaryDirectory() as folder:
            try:
                outcome = check(case, Path(folder).resolve())
            except Exception as error:  # a failure of the property: count it and keep going
                outcome = "failure"
                where = traceback.extract_tb(error.__traceback__)[-1]
                key = f"{type(error).__name__} at {Path(where.filename).name}:{where.lineno}"
                failures.setdefault(key, f"{str(error)[:200]!r} case={case!r}"[:600])
        counts[outcome] += 1
        counts[f"{label}:{getattr(case, 'command', None) or case[0]}:{outcome}"] += 1

    one()
    for key, example in failures.items():
        print(f"  failure {key}: {example}")
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=3000, help="generated input files, all kinds together")
    parser.add_argument("--commands", type=int, default=600, help="generated evaluate/merge/report command lines")
    parser.add_argument("--configs", type=int, default=600, help="generated teacher/sft/distill/reward configs")
    parser.add_argument("--collisions", type=int, default=300, help="outputs set to inputs or other outputs")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    random.seed(args.seed)
    counts = run(file_cases, args.files, lambda case, folder: file_outcome(folder, *case), "file", args.seed)
    counts += run(command_cases, args.commands, command_outcome, "command", args.seed)
    counts += run(config_cases, args.configs, config_outcome, "config", args.seed)
    refused = {"refused": "error"}  # a collision refused is the clean error it must be
    counts += run(collisions, args.collisions, lambda case, folder: refused[collision_outcome(case, folder)],
                  "collision", args.seed)
    print("| input | cases | clean errors | accepted | failures (tracebacks, wrong results) |")
    print("|---|---:|---:|---:|---:|")
    groups = sorted({key.rsplit(":", 1)[0] for key in counts if key.count(":") == 2})
    for group in groups:
        row = [counts[f"{group}:{o}"] for o in ("error", "accepted", "failure")]
        print(f"| {group.split(':', 1)[1]} ({group.split(':')[0]}) | {sum(row)} | {row[0]} | {row[1]} | {row[2]} |")
    total = [counts[o] for o in ("error", "accepted", "failure")]
    print(f"| **all** | {sum(total)} | {total[0]} | {total[1]} | {total[2]} |")
    return 1 if total[2] else 0


if __name__ == "__main__":
    sys.exit(main())
