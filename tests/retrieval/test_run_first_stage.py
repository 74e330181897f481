"""A TREC run as the first stage, on the bundled DL19 mini collection: another system's (here BM25's) run, shuffled
and retagged, reranks exactly as BM25 itself does; a corpus or a Lucene index gives the passages; bad runs are one
line naming the file and line."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from reasonrank.cli.search import main
from reasonrank.errors import UserError
from reasonrank.pipeline import SearchSettings, embedded_collection, run_search
from reasonrank.retrieval.base import load_first_stage
from reasonrank.retrieval.index import ensure_index
from reasonrank.types import Query

TOPICS = 5
HITS = 20


@pytest.fixture(scope="module")
def topics(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("topics") / "topics.tsv"
    lines = embedded_collection().topics.read_text(encoding="utf-8").splitlines()[:TOPICS]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def search(tmp_path: Path, topics: Path, first_stage: str, reranker: str, name: str, index: str | None = None):
    settings = SearchSettings(
        index=index or str(embedded_collection().corpus), topics=str(topics), first_stage=first_stage, hits=HITS,
        reranker=reranker, rerank_depth=HITS, evidence=False, output=str(tmp_path / f"{name}.txt"), progress=False,
    )
    return run_search(settings)


def shuffled_copy(run: Path, target: Path) -> Path:
    """The run's lines in a random order under another system's tag."""
    lines = [line.rsplit(" ", 1)[0] + " OtherSystem" for line in run.read_text().splitlines()]
    random.Random(7).shuffle(lines)
    target.write_text("\n".join(lines) + "\n")
    return target


def test_a_shuffled_bm25_run_reranks_as_bm25_itself(tmp_path, topics):
    bm25 = search(tmp_path, topics, "bm25", "none", "bm25")
    other = shuffled_copy(bm25.output, tmp_path / "other.txt")
    direct = search(tmp_path, topics, "bm25", "minilm-bi", "direct")
    from_run = search(tmp_path, topics, f"run:{other}", "minilm-bi", "from-run")
    assert [r.docids for r in from_run.first_stage] == [r.docids for r in bm25.first_stage]
    assert [[i.text for i in r] for r in from_run.first_stage] == [[i.text for i in r] for r in direct.first_stage]
    assert from_run.output.read_text() == direct.output.read_text()
    assert from_run.first_stage[0].model == "run:other.txt"


def test_passages_from_a_lucene_index_and_fewer_or_more_hits_than_asked(tmp_path, topics):
    queries = [Query("19335", "anthropological definition of environment"), Query("47923", "axon terminals")]
    run = tmp_path / "run.txt"
    # 47923 has three hits (fewer than asked), 19335 five (more), with a tie that the rank column breaks.
    run.write_text("19335 Q0 4380635 2 3.0 x\n19335 Q0 8757180 1 3.0 x\n19335 Q0 3423059 3 1.0 x\n"
                   "47923 Q0 3423059 1 9.5 x\n19335 Q0 1381477 4 0.5 x\n47923 Q0 8757180 2 2.0 x\n"
                   "19335 Q0 7104826 5 0.1 x\n47923 Q0 4380635 3 -1.0 x\n")
    lucene = str(ensure_index(embedded_collection().corpus))
    with load_first_stage(f"run:{run}", lucene) as stage:
        first, second = stage.search(queries, hits=4, text_depth=1)
    assert [c.docid for c in first.candidates] == ["8757180", "4380635", "3423059", "1381477"]
    assert [c.docid for c in second.candidates] == ["3423059", "8757180", "4380635"]
    assert first.candidates[0].text.startswith("monotonic increasing") and first.candidates[1].text == ""
    with load_first_stage(f"run:{run}", str(embedded_collection().corpus)) as stage:
        excluded = Query("19335", "environment", frozenset({"8757180"}))
        (only,) = stage.search([excluded], hits=2)
    assert [c.docid for c in only.candidates] == ["4380635", "3423059"]  # excluded ids drop out, as for BM25


def test_run_stage_bad_input_is_one_line(tmp_path, topics, capsys):
    corpus = str(embedded_collection().corpus)
    run = tmp_path / "run.txt"
    run.write_text("19335 Q0 4380635 1 3.0 x\n19335 Q0 no-such-doc 2 2.0 x\n")
    with load_first_stage(f"run:{run}", corpus) as stage, pytest.raises(UserError, match=rf"{run}:2: document "
                                                                         "no-such-doc is not in"):
        stage.search([Query("19335", "environment")], hits=10)
    with load_first_stage(f"run:{run}", corpus) as stage, pytest.raises(UserError, match="1 of 2 topics have no"):
        stage.search([Query("19335", "environment"), Query("47923", "axon")], hits=1)
    with load_first_stage(f"run:{run}", corpus) as stage:
        stage.search([], hits=1)
    assert "1 of its queries are not among these topics, ignored (19335)" in capsys.readouterr().err
    run.write_text("19335 Q0 4380635 1 3.0 x\n19335 Q0 4380635 2 2.0 x\n")
    with pytest.raises(UserError, match=rf"{run}:2: document 4380635 appears twice .*first at {run}:1"):
        load_first_stage(f"run:{run}", corpus)
    output = tmp_path / "out.txt"
    for first_stage, message in [(f"run:{tmp_path / 'none.txt'}", "the run file does not exist"),
                                 ("run", "needs the run file"), ("bm26", "unknown first stage 'bm26'")]:
        code = main(["--topics", str(topics), "--first-stage", first_stage, "--reranker", "none", "--output",
                     str(output), "--quiet"])
        error = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(error) == 1 and error[0].startswith("error:") and message in error[0]
        assert not output.exists()
