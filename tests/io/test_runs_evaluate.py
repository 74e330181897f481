"""Run files, explanations and pytrec_eval metrics on the real DL19 qrels."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from reasonrank.cli.evaluate import main as evaluate_main
from reasonrank.errors import UserError
from reasonrank.evaluation import evaluate
from reasonrank.io.runs import read_run, write_explanations, write_run
from reasonrank.io.topics import load_qrels
from reasonrank.types import Candidate, Judgment, Query, Ranking


def qrels_ranking(qrels: dict[str, dict[str, int]], qid: str, reverse: bool) -> Ranking:
    """Judged documents of one query ordered by their grade (ideal) or against it (worst)."""
    docs = sorted(qrels[qid].items(), key=lambda kv: (kv[1], kv[0]), reverse=not reverse)
    candidates = [Candidate(docid, f"text of {docid}") for docid, _ in docs]
    judgments = [Judgment(float(len(docs) - i), explanation=f"because {d}", label=min(g, 2))
                 for i, (d, g) in enumerate(docs)]
    return Ranking.from_judgments(Query(qid, "q"), candidates, judgments, "test-model")


@pytest.fixture(scope="module")
def dl19_qrels(test_data):
    return load_qrels(str(test_data / "msmarco-dl19-mini" / "qrels.dl19-passage.txt"))


def test_run_round_trip_and_metrics(tmp_path, dl19_qrels):
    qids = sorted(dl19_qrels)[:5]
    ideal = [qrels_ranking(dl19_qrels, q, reverse=False) for q in qids]
    worst = [qrels_ranking(dl19_qrels, q, reverse=True) for q in qids]
    write_run(tmp_path / "ideal.txt", ideal)
    write_run(tmp_path / "worst.txt", worst)
    lines = (tmp_path / "ideal.txt").read_text().splitlines()
    qid, q0, _, rank, _, tag = lines[0].split()
    assert (qid, q0, rank, tag) == (qids[0], "Q0", "1", "test-model")
    assert [line.split()[3] for line in lines[:3]] == ["1", "2", "3"]
    ideal_eval = evaluate(read_run(tmp_path / "ideal.txt"), dl19_qrels)
    worst_eval = evaluate(read_run(tmp_path / "worst.txt"), dl19_qrels)
    assert ideal_eval.queries == 5
    assert ideal_eval.mean["nDCG@10"] == pytest.approx(1.0)
    assert worst_eval.mean["nDCG@10"] < 0.5
    # DL19 judges more than 100 documents a query: the worst order fills the top 100 with non-relevant ones.
    assert worst_eval.mean["R@100"] < ideal_eval.mean["R@100"]


def test_excluded_ids_are_dropped_before_scoring(dl19_qrels):
    qid = sorted(dl19_qrels)[0]
    best = max(dl19_qrels[qid], key=dl19_qrels[qid].get)
    run = {qid: {best: 2.0, "not-judged": 1.0}}
    kept = evaluate(run, dl19_qrels).mean["nDCG@10"]
    dropped = evaluate(run, dl19_qrels, excluded={qid: frozenset({best})}).mean["nDCG@10"]
    assert kept > 0 and dropped == 0


def test_explanations_align_with_run(tmp_path, dl19_qrels):
    ranking = qrels_ranking(dl19_qrels, sorted(dl19_qrels)[0], reverse=False)
    write_run(tmp_path / "run.txt", [ranking])
    write_explanations(tmp_path / "expl.jsonl", [ranking])
    run_docids = [line.split()[2] for line in (tmp_path / "run.txt").read_text().splitlines()]
    records = [json.loads(line) for line in (tmp_path / "expl.jsonl").read_text().splitlines()]
    assert [r["docid"] for r in records] == run_docids
    assert records[0]["explanation"] == f"because {run_docids[0]}" and records[0]["model"] == "test-model"


@pytest.mark.parametrize(
    ("content", "message"),
    [("q1 Q0 d1 1 0.5\n", "run.txt:1: expected 6 fields"),
     ("q1 Q0 d1 1 high tag\n", "run.txt:1: score 'high'"),
     ("q1 Q0 d1 1 0.5 t\nq1 Q0 d1 2 0.4 t\n", "run.txt:2: document d1 appears twice")],
)
def test_bad_run_lines_name_file_and_line(tmp_path, content, message):
    (tmp_path / "run.txt").write_text(content)
    with pytest.raises(UserError, match=message):
        read_run(tmp_path / "run.txt")


def test_failed_write_leaves_nothing(tmp_path):
    def broken():
        yield qrels_ranking({"q": {"a": 1, "b": 0}}, "q", reverse=False)
        raise RuntimeError("model crashed")

    with pytest.raises(RuntimeError):
        write_run(tmp_path / "run.txt", broken())
    assert list(tmp_path.iterdir()) == []


def test_a_killed_writers_temporary_file_is_removed_by_the_next_write(tmp_path, dl19_qrels):
    """SIGKILL mid-write leaves ``.run.txt.<pid>.<random>.tmp``; the rerun's write removes it, not a live writer's."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    orphan = tmp_path / f".run.txt.{dead.pid}.k1ll3d.tmp"
    live = tmp_path / f".run.txt.{os.getppid()}.wr1t1ng.tmp"
    other = tmp_path / f".run.txt.explanations.jsonl.{dead.pid}.x.tmp"
    for path in (orphan, live, other):
        path.write_text("partial")
    write_run(tmp_path / "run.txt", [qrels_ranking(dl19_qrels, q, reverse=False) for q in sorted(dl19_qrels)])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["run.txt", live.name, other.name])


def test_evaluate_cli(tmp_path, dl19_qrels, capsys, test_data):
    write_run(tmp_path / "run.txt", [qrels_ranking(dl19_qrels, q, reverse=False) for q in sorted(dl19_qrels)])
    qrels = str(test_data / "msmarco-dl19-mini" / "qrels.dl19-passage.txt")
    assert evaluate_main(["--run", str(tmp_path / "run.txt"), "--qrels", qrels]) == 0
    table = capsys.readouterr().out
    assert "nDCG@10" in table and "1.0000" in table
    assert evaluate_main(["--run", str(tmp_path / "missing.txt"), "--qrels", qrels]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: run file") and "\n" not in error


@pytest.mark.parametrize("repeat", ["document", "query"])
def test_a_repeated_query_document_pair_is_never_written(tmp_path, repeat):
    query = Query("q1", "q")
    docids = ["d1", "d1"] if repeat == "document" else ["d1", "d2"]
    ranking = Ranking.from_judgments(query, [Candidate(d, "text") for d in docids],
                                     [Judgment(2.0), Judgment(1.0)], "m")
    rankings = [ranking] if repeat == "document" else [ranking, ranking]
    with pytest.raises(UserError, match=r"query q1 would list .* a TREC run holds each"):
        write_run(tmp_path / "run.txt", rankings)
    assert list(tmp_path.iterdir()) == []
