"""The public API as the docs show it: ``from reasonrank import ...`` and the README's Pyserini snippet offline."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from reasonrank.errors import UserError

ROOT = Path(__file__).resolve().parent.parent
PYTHON_API = ROOT / "docs" / "python-api.md"


def docs_snippet(containing: str) -> str:
    blocks = re.findall(r"```python\n(.*?)```", PYTHON_API.read_text(encoding="utf-8"), re.DOTALL)
    return next(block for block in blocks if containing in block)


def test_the_docs_evaluation_example_runs(tmp_path):
    """``from reasonrank import evaluate`` is the function (it used to be the module ``reasonrank.evaluate``)."""
    snippet = docs_snippet("from reasonrank import evaluate")
    data = ROOT / "reasonrank" / "data" / "msmarco-dl19-mini"
    # Offline: the bundled qrels instead of Pyserini's download, and rankings made from a committed BM25 run.
    snippet = snippet.replace('load_qrels("dl19-passage")', f"load_qrels({str(data / 'qrels.dl19-passage.txt')!r})")
    prelude = f"""
from reasonrank.io.runs import read_run
from reasonrank.types import Candidate, Query, RankedCandidate, Ranking
run = read_run({str(ROOT / 'runs' / 'results' / 'run.DL19-mini.BM25.txt')!r})
rankings = [
    Ranking(Query(qid, "q"), tuple(RankedCandidate(Candidate(d, "", s), s, r)
            for r, (d, s) in enumerate(sorted(docs.items(), key=lambda x: -x[1]), start=1)), "bm25")
    for qid, docs in run.items()
]
"""
    check = "\nassert callable(evaluate) and evaluate.__module__ == 'reasonrank.evaluation'\n"
    done = subprocess.run(
        [sys.executable, "-c", prelude + snippet + check], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    ndcg = float(done.stdout.split()[0])
    assert ndcg == pytest.approx(0.7320, abs=5e-4)  # BM25 on the bundled collection, as docs/results.md reports


def test_prebuilt_index_offline_is_one_line(monkeypatch):
    """README: ``LuceneSearcher.from_prebuilt_index(...)`` offline; Pyserini prints and returns None."""
    import reasonrank

    # Pyserini's LuceneSearcher, or (Pyserini 2.x offline, its search module unimportable) the Anserini-backed one
    (base,) = reasonrank.LuceneSearcher.__bases__
    monkeypatch.setattr(base, "from_prebuilt_index", classmethod(lambda cls, name: None))
    with pytest.raises(UserError, match=r"cannot open Pyserini prebuilt index 'msmarco-v1-passage'.*offline") as raised:
        reasonrank.LuceneSearcher.from_prebuilt_index("msmarco-v1-passage")
    assert "\n" not in str(raised.value)


def test_the_demo_and_crash_dumps_stay_out_of_the_checkout():
    from reasonrank.pipeline import SearchSettings, default_output, embedded_collection

    demo_run = default_output(SearchSettings(), str(embedded_collection().corpus))  # make demo: search, no arguments
    ignored = subprocess.run(["git", "check-ignore", "-q", str(demo_run)], cwd=ROOT)
    assert ignored.returncode == 0, f"make demo writes {demo_run}, which git would track"
    tracked = subprocess.run(["git", "ls-files", "hs_err_pid*.log"], cwd=ROOT, capture_output=True, text=True)
    assert tracked.stdout == ""
    assert subprocess.run(["git", "check-ignore", "-q", "hs_err_pid12345.log"], cwd=ROOT).returncode == 0


def test_the_readme_offline_snippet_runs(capsys):
    """The README's notebook example on the bundled collection: Pyserini hits reranked, three lines printed."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", readme, re.DOTALL)
    snippet = next(block for block in blocks if "embedded_collection" in block)
    exec(compile(snippet, "README.md", "exec"), {})
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == ["1", "2", "3"]
    scores = [float(line.split()[2]) for line in lines]
    assert scores == sorted(scores, reverse=True) and scores[0] > 0.5  # cosine of a truly matching passage
