"""Property-based fuzzing of every reader, of the evaluate/merge/report commands and of the training and teacher
configs (cases in tests/fuzzing.py).

Each generated file or command line must end in a valid result whose invariants hold, or in one ``error:``
line with nothing half-written; benchmarks/fuzz.py runs the same cases with a larger budget.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from fuzzing import command_cases, command_outcome, config_cases, config_outcome, file_cases, file_outcome
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reasonrank.errors import UserError

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


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
@given(config_cases)
def test_every_training_config_is_checked_in_one_line_before_any_model_loads(case):
    with tempfile.TemporaryDirectory() as folder:
        assert config_outcome(case, Path(folder).resolve()) in {"accepted", "error"}


@pytest.mark.parametrize("option", ["batch_sise=4", "batch_size=abc", "device=cuda", "max_length=-1x", "=3"])
def test_reported_option_mistakes_are_one_line_before_any_work(option, capsys, tmp_path):
    """Misspelt, ill-typed and impossible options (a CUDA device where there is none) are refused before BM25 runs."""
    from reasonrank.cli import search

    output = tmp_path / "run.txt"
    assert search.main(["--reranker", "minilm-bi", "--option", option, "--quiet", "--output", str(output)]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("error: ") and not output.exists()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
@given(st.lists(st.tuples(st.sampled_from(["batch_size", "max_length", "device", "dtype", "query_prefix", "weight",
                                           "x", "batch-size", ""]),
                          st.sampled_from(["0", "-1", "abc", "1.5", "true", "cuda", "cuda:7", "", "1e9", "nan"])),
                min_size=1, max_size=2))
def test_fuzzed_options_build_a_reranker_or_give_one_line(pairs):
    from reasonrank.cli.search import parse_options
    from reasonrank.pipeline import SearchSettings, build_reranker

    try:
        reranker = build_reranker(SearchSettings(reranker="minilm-hybrid",
                                                 options=parse_options([f"{k}={v}" for k, v in pairs])))
    except UserError as error:
        assert "\n" not in str(error)
        return
    reranker.close()
