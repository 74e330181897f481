"""What a speed figure was measured on: the CPU model and its matrix units, printed at the top of every speed table.

A ratio against fp32 depends on the matrix units more than on anything else (bf16 on AMX tiles runs several times
faster than on AVX-512 BF16 alone), so a number is only quotable with them. Read from ``/proc/cpuinfo`` (Linux).
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

# cpuinfo flag -> the name a reader knows it by; the units bf16 and int8 inference run on.
MATRIX_FLAGS = {
    "amx_tile": "AMX",
    "amx_bf16": "AMX-BF16",
    "amx_int8": "AMX-INT8",
    "avx512_bf16": "AVX-512 BF16",
    "avx512_vnni": "AVX-512 VNNI",
    "avx_vnni": "AVX-VNNI",
    "avx512f": "AVX-512",
}


def _cpuinfo_field(name: str) -> str | None:
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.is_file():
        return None
    for line in cpuinfo.read_text().splitlines():
        key, _, value = line.partition(":")
        if key.strip() == name:
            return value.strip()
    return None


def cpu_model() -> str:
    """``AMD EPYC 9B14``, ``Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz``, ... (the platform's name elsewhere)."""
    return _cpuinfo_field("model name") or platform.processor() or platform.machine()


def matrix_units() -> str:
    """The matrix/dot-product units the CPU reports, e.g. ``AVX-512, AVX-512 VNNI, AVX-512 BF16, no AMX``."""
    flags = set((_cpuinfo_field("flags") or "").split())
    found = [label for flag, label in reversed(MATRIX_FLAGS.items()) if flag in flags]
    if "amx_tile" not in flags:
        found.append("no AMX")
    return ", ".join(found)


def cpu_line() -> str:
    """One line for a table's header: model, matrix units and the cores this process may use."""
    return f"CPU: {cpu_model()} ({matrix_units()}), {len(os.sched_getaffinity(0))} cores available"


def machine() -> str:
    """The CPU line plus memory, GPU and software versions, for the reports written into docs/."""
    import torch

    memory = ""
    meminfo = Path("/proc/meminfo")
    if meminfo.is_file():
        kib = int(meminfo.read_text().split("MemTotal:")[1].split()[0])
        memory = f", {kib / 2**20:.0f} GiB RAM"
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{cpu_line().removeprefix('CPU: ')}{memory}, {gpu}; Python {platform.python_version()}, "
            f"torch {torch.__version__}, {platform.system()} {platform.release()}")
