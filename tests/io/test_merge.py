"""Shard runs of reasonrank.search merged by reasonrank.merge equal the unsharded run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reasonrank.cli.merge import main as merge_main
from reasonrank.cli.search import main as search_main

SHARDS = 3
TOPICS = 8  # DL19 queries searched: enough for uneven shards (3, 3, 2), small enough for 2 CPU cores


@pytest.fixture(scope="module")
def dl19(test_data, tmp_path_factory):
    folder = tmp_path_factory.mktemp("merge")
    lines = (test_data / "msmarco-dl19-mini" / "topics.dl19-passage.tsv").read_text().splitlines()[:TOPICS]
    topics = folder / "topics.tsv"
    topics.write_text("\n".join(lines) + "\n")
    return folder, topics, test_data / "msmarco-dl19-mini" / "corpus.jsonl"


def search_shards(dl19, reranker: str) -> tuple[Path, Path]:
    """The unsharded run and the merge of its three shards (runs, then explanations, merged in topic order)."""
    folder, topics, corpus = dl19
    for shard in (None, *range(SHARDS)):
        name = f"{reranker}.{'full' if shard is None else shard}"
        argv = ["--index", str(corpus), "--topics", str(topics), "--reranker", reranker, "--hits", "20", "--quiet",
                "--output", str(folder / f"{name}.txt"), "--explanations", str(folder / f"{name}.jsonl")]
        assert search_main(argv + ([] if shard is None else ["--shard", f"{shard}/{SHARDS}"])) == 0
    shards = [str(folder / f"{reranker}.{shard}.txt") for shard in range(SHARDS)]
    assert [len({line.split()[0] for line in Path(s).read_text().splitlines()}) for s in shards] == [3, 3, 2]
    notes = [str(folder / f"{reranker}.{shard}.jsonl") for shard in range(SHARDS)]
    merged = folder / f"{reranker}.merged.txt"
    # Shard files in any order: the topics decide the order of the merged run.
    assert merge_main(["--runs", *reversed(shards), "--topics", str(topics), "--output", str(merged),
                       "--explanations", *reversed(notes), "--explanations-output", str(merged.with_suffix(".jsonl"))
                       ]) == 0
    return folder / f"{reranker}.full.txt", merged


@pytest.mark.slow
def test_merged_bm25_shards_equal_the_unsharded_run_byte_for_byte(dl19):
    full, merged = search_shards(dl19, "none")
    assert merged.read_bytes() == full.read_bytes()
    assert merged.with_suffix(".jsonl").read_bytes() == full.with_suffix(".jsonl").read_bytes()


@pytest.mark.slow
def test_merged_reranked_shards_equal_the_unsharded_run(dl19):
    """Encoders score each query on its own, so shards reproduce the unsharded scores exactly."""
    full, merged = search_shards(dl19, "minilm-bi")
    assert merged.read_bytes() == full.read_bytes()
    assert merged.with_suffix(".jsonl").read_bytes() == full.with_suffix(".jsonl").read_bytes()
    records = [json.loads(line) for line in merged.with_suffix(".jsonl").read_text().splitlines()]
    assert len(records) == TOPICS * 10 and all(record["evidence"] and record["explanation"] for record in records)


def write(path, lines: list[str]) -> str:
    path.write_text("".join(line + "\n" for line in lines))
    return str(path)


def test_without_topics_queries_keep_their_order_of_appearance(tmp_path):
    first = write(tmp_path / "a.txt", ["q2 Q0 d1 1 2.0 m", "q2 Q0 d2 2 1.0 m", "q9 Q0 d1 1 1.0 m"])
    second = tmp_path / "b.txt"
    second.write_text("q1 Q0 d3 1 5.0 m")  # no final newline: must not glue onto the next line
    assert merge_main(["--runs", first, str(second), "--output", str(tmp_path / "out.txt")]) == 0
    assert (tmp_path / "out.txt").read_text().splitlines() == [
        "q2 Q0 d1 1 2.0 m", "q2 Q0 d2 2 1.0 m", "q9 Q0 d1 1 1.0 m", "q1 Q0 d3 1 5.0 m"
    ]


def test_topics_order_the_merged_run(tmp_path, test_data):
    topics = test_data / "msmarco-dl19-mini" / "topics.dl19-passage.tsv"
    qids = [line.split("\t")[0] for line in topics.read_text().splitlines()[:3]]
    late = write(tmp_path / "late.txt", [f"{qids[2]} Q0 d 1 1.0 m"])
    early = write(tmp_path / "early.txt", [f"{qids[0]} Q0 d 1 1.0 m", f"{qids[1]} Q0 d 1 1.0 m"])
    assert merge_main(["--runs", late, early, "--topics", str(topics), "--output", str(tmp_path / "out.txt")]) == 0
    assert [line.split()[0] for line in (tmp_path / "out.txt").read_text().splitlines()] == qids


@pytest.mark.parametrize(
    ("second", "extra", "message"),
    [
        (["q1 Q0 d9 1 1.0 m"], [], "query q1 is also in"),
        (["q2 Q0 d9 1.0 m"], [], ":1: expected 6 fields"),
        (["q2 Q0 d9 1 1.0 m"], ["--explanations", "x.jsonl"], "go together"),
        (["q7 Q0 d9 1 1.0 m"], ["--topics", "topics.tsv"], "query q7 of"),
    ],
)
def test_bad_input_is_one_line_and_nothing_is_written(tmp_path, monkeypatch, capsys, second, extra, message):
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "topics.tsv", ["q1\tfirst", "q2\tsecond"])
    first = write(tmp_path / "a.txt", ["q1 Q0 d1 1 1.0 m"])
    other = write(tmp_path / "b.txt", second)
    assert merge_main(["--runs", first, other, "--output", "out.txt", *extra]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and message in error and error.count("\n") == 1
    assert not (tmp_path / "out.txt").exists()


def test_explanations_of_another_run_are_refused(tmp_path, capsys):
    run = write(tmp_path / "a.txt", ["q1 Q0 d1 1 1.0 m"])
    notes = write(tmp_path / "a.jsonl", ['{"qid": "q5", "docid": "d1", "explanation": "x"}'])
    argv = ["--runs", run, "--output", str(tmp_path / "out.txt"), "--explanations", notes,
            "--explanations-output", str(tmp_path / "out.jsonl")]
    assert merge_main(argv) == 2
    assert "query q5 of" in capsys.readouterr().err
    assert not (tmp_path / "out.txt").exists() and not (tmp_path / "out.jsonl").exists()


@pytest.mark.parametrize(
    ("line", "message"),
    [('{"qid": "q1", oops', ":1: malformed JSON (Expecting property name enclosed in double quotes): pass the file"),
     ('["q1"]', ":1: expected one JSON object per line: pass the file written by --explanations"),
     ('{"docid": "d1"}', ":1: an explanation line is a JSON object with a 'qid' key")],
)
def test_a_bad_explanation_line_is_named_with_what_to_pass(tmp_path, capsys, line, message):
    run = write(tmp_path / "a.txt", ["q1 Q0 d1 1 1.0 m"])
    notes = write(tmp_path / "a.jsonl", [line])
    argv = ["--runs", run, "--output", str(tmp_path / "out.txt"), "--explanations", notes,
            "--explanations-output", str(tmp_path / "out.jsonl")]
    assert merge_main(argv) == 2
    error = capsys.readouterr().err
    assert f"{notes}{message}" in error and error.count("\n") == 1
    assert not (tmp_path / "out.txt").exists() and not (tmp_path / "out.jsonl").exists()


@pytest.mark.parametrize("spelling", ["same", "relative", "symlink", "hardlink"])
def test_one_run_given_twice_is_refused_however_it_is_spelled(tmp_path, monkeypatch, capsys, spelling):
    monkeypatch.chdir(tmp_path)
    run = write(tmp_path / "a.txt", ["q1 Q0 d1 1 1.0 m", "q1 Q0 d2 2 0.5 m"])
    twin = {"same": run, "relative": "./a.txt"}.get(spelling, str(tmp_path / "twin.txt"))
    if spelling == "symlink":
        (tmp_path / "twin.txt").symlink_to(run)
    elif spelling == "hardlink":
        (tmp_path / "twin.txt").hardlink_to(run)
    assert merge_main(["--runs", run, twin, "--output", "out.txt"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: --runs names the file") and "twice" in error and error.count("\n") == 1
    assert not (tmp_path / "out.txt").exists()


def test_a_pair_that_would_appear_twice_is_refused_before_anything_is_written(tmp_path, capsys):
    run = write(tmp_path / "a.txt", ["q1 Q0 d1 1 1.0 m", "q1 Q0 d1 2 0.5 m"])
    other = write(tmp_path / "b.txt", ["q2 Q0 d1 1 1.0 m"])
    notes = write(tmp_path / "a.jsonl", ['{"qid": "q1", "docid": "d1"}', '{"qid": "q2", "docid": "d1"}'])
    argv = ["--runs", run, other, "--output", str(tmp_path / "out.txt"), "--explanations", notes,
            "--explanations-output", str(tmp_path / "out.jsonl")]
    assert merge_main(argv) == 2
    assert f"{run}: query q1 lists document d1 twice" in capsys.readouterr().err
    assert not (tmp_path / "out.txt").exists() and not (tmp_path / "out.jsonl").exists()
