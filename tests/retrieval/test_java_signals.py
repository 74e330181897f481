"""Pyserini's JVM and torch in one process: SIGTERM and Ctrl-C must stay Python's.

Left to itself the JVM takes SIGTERM and SIGINT, runs its shutdown and calls exit() from its own thread while
Python's main thread is still inside torch; torch's static state is then destroyed under it. Before the fix a
SIGTERM here ended with exit status 143 chosen by the JVM and, most of the time, a torch RuntimeError
("unknown parameter type") or a SIGSEGV in libtorch_python.so; Ctrl-C never reached Python at all.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHILD = """
import sys
from reasonrank.retrieval.java import anserini_class
anserini_class("io.anserini.search.SimpleSearcher")  # starts the JVM with Anserini on its classpath, as search does
from jnius import autoclass
import torch
autoclass("java.lang.System").getProperty("java.version")
weights, batch = torch.randn(256, 256), torch.randn(64, 256)
print("ready", flush=True)
try:
    while True:
        hidden = torch.nn.functional.gelu(batch @ weights)
        str(hidden[0, :2])
except KeyboardInterrupt:
    print("KeyboardInterrupt reached Python", flush=True)
    sys.exit(7)
"""


def signalled(signum: int, tmp_path: Path) -> tuple[int, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TMPDIR": str(tmp_path)}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # as in a terminal
    )
    started = []
    for line in child.stdout:  # the JVM's own warnings come first
        started.append(line)
        if line.strip() == "ready":
            break
    else:
        child.kill()
        pytest.fail("the child never got ready:\n" + "".join(started))
    time.sleep(1.0)  # well inside the torch loop
    child.send_signal(signum)
    output, _ = child.communicate(timeout=120)
    return child.returncode, output


@pytest.mark.parametrize(("signum", "expected"), [(signal.SIGTERM, -signal.SIGTERM), (signal.SIGINT, 7)])
def test_signals_reach_python_not_the_jvm(tmp_path, signum, expected):
    code, output = signalled(signum, tmp_path)
    assert code == expected, output
    assert "RuntimeError" not in output and "Traceback" not in output
    assert not list(tmp_path.glob("hs_err_pid*.log")) and not list(tmp_path.glob("reasonrank-jvm-crash-*.log"))
