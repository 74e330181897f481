"""Property-based fuzzing of every reader and of the evaluate/merge/report commands (cases in tests/fuzzing.py).

Each generated file or command line must end in a valid result whose invariants hold, or in one ``error:``
line with nothing half-written; benchmarks/fuzz.py runs the same cases with a larger budget.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from fuzzing import command_cases, command_outcome, file_cases, file_outcome
from hypothesis import HealthCheck, given, settings

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)


@FAST
@given(file_cases)
def test_every_reader_accepts_or_refuses_in_one_line(case):
    kind, data, how = case
    with tempfile.TemporaryDirectory() as folder:
        assert file_outcome(Path(folder), kind, data, how) in {"accepted", "error"}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
@given(command_cases)
def test_every_command_ends_in_a_result_or_one_error_line(case):
    with tempfile.TemporaryDirectory() as folder:
        assert command_outcome(case, Path(folder)) in {"accepted", "error"}
