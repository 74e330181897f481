"""The BRIGHT command offline: real BRIGHT topics and qrels, a small made-up corpus per task.

The corpus holds each query's gold documents (real ids from the qrels), made-up distractors, and bait: documents
that repeat the query (excluded ids, and a document whose id is the qid) or its reasoning text, so that
BM25 would rank them first if the BRIGHT rules or the query field were ignored.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from reasonrank.cli.bright import TASKS, format_bright_table, main, parse_tasks, task_sources
from reasonrank.errors import UserError
from reasonrank.io.runs import read_run
from reasonrank.io.topics import load_topics
from reasonrank.rerank.base import Reranker
from reasonrank.rerank.registry import FAMILIES
from reasonrank.types import Ranking, Request

QUERIES_PER_TASK = 6
FILLER = ("river", "copper", "lantern", "orbit", "meadow", "cipher", "harbor", "velvet", "glacier", "ember",
          "quartz", "falcon", "tundra", "mosaic", "pylon", "saddle", "thicket", "beacon", "canyon", "ledger")


def reasoning_bait(qid: str) -> str:
    return f"reasoning-bait-{qid}"


def build_offline_bright(test_data: Path, folder: Path, tasks=("biology", "aops")) -> tuple[Path, Path]:
    """``topics/`` with the first queries of each task (real text) and ``corpus/{task}.jsonl`` made up here."""
    topics_dir, corpus_dir = folder / "topics", folder / "corpus"
    topics_dir.mkdir(parents=True)
    corpus_dir.mkdir(parents=True)
    rng = random.Random(0)
    for task in tasks:
        lines = (test_data / "bright" / f"topics.bright-{task}-original.jsonl").read_text().splitlines()
        records = [json.loads(line) for line in lines[:QUERIES_PER_TASK]]
        topics = topics_dir / f"topics.bright-{task}-original.jsonl"
        topics.write_text("\n".join(lines[:QUERIES_PER_TASK]) + "\n")
        qids = {r["id"] for r in records}
        qrels = [line for line in (test_data / "bright" / f"qrels.bright-{task}.txt").read_text().splitlines()
                 if line.split()[0] in qids]
        (topics_dir / f"qrels.bright-{task}.txt").write_text("\n".join(qrels) + "\n")
        documents: dict[str, str] = {}
        for line in qrels:  # gold documents: the real ids, text made up from the query's own words
            qid, _, docid, _ = line.split()
            query = next(r["query"] for r in records if r["id"] == qid)
            words = query.split()
            documents[docid] = " ".join(rng.sample(words, min(12, len(words))) + rng.sample(FILLER, 5))
        topics = topics_dir / f"topics.bright-{task}-original.jsonl"
        excluded = {q.qid: q.excluded_ids for q in load_topics(str(topics))}
        for record in records:  # bait: would rank first if the rules were ignored
            for docid in sorted(excluded[record["id"]])[:3]:
                documents[docid] = record["query"]
            documents[record["id"]] = record["query"]  # removed by --remove-query semantics
            documents[reasoning_bait(record["id"])] = record["reasoning"]
        for number in range(60):
            documents.setdefault(f"distractor_{number}", " ".join(rng.choices(FILLER, k=30)))
        with (corpus_dir / f"{task}.jsonl").open("w") as out:
            for docid, text in documents.items():
                out.write(json.dumps({"id": docid, "contents": text}) + "\n")
    return topics_dir, corpus_dir


@pytest.fixture(scope="module")
def offline_bright(test_data, tmp_path_factory) -> tuple[Path, Path]:
    return build_offline_bright(test_data, tmp_path_factory.mktemp("bright"))


class ReverseReranker(Reranker):
    """Reverses the first stage's order: a visible, model-free change for the reranker row."""

    def rerank_request(self, request: Request) -> Ranking:
        return Ranking.from_order(request.query, reversed(request.candidates), self.name)


def build_reverse(model: str, **options) -> Reranker:
    return ReverseReranker()


def table_rows(output: str) -> dict[str, list[str]]:
    lines = [line for line in output.splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    assert header == ["model", *TASKS, "avg"]
    return {cells[0]: cells[1:] for cells in ([c.strip() for c in line.strip("|").split("|")] for line in lines[2:])}


def run_bright(offline_bright, tmp_path, *extra: str) -> int:
    topics_dir, corpus_dir = offline_bright
    return main(["--tasks", "biology,aops", "--topics-dir", str(topics_dir), "--corpus-dir", str(corpus_dir),
                 "--hits", "20", "--output-dir", str(tmp_path), "--quiet", *extra])


def test_table_runs_and_bright_rules(offline_bright, tmp_path, capsys):
    assert run_bright(offline_bright, tmp_path) == 0
    rows = table_rows(capsys.readouterr().out)
    assert list(rows) == ["BM25"]
    bm25 = dict(zip([*TASKS, "avg"], rows["BM25"], strict=True))
    assert all(bm25[task] == "-" for task in TASKS if task not in ("biology", "aops"))
    biology, aops = float(bm25["biology"]), float(bm25["aops"])
    assert 0 < biology <= 100 and 0 < aops <= 100
    average, marker = bm25["avg"].split()
    assert marker == "(2/12)" and float(average) == pytest.approx((biology + aops) / 2, abs=0.06)
    assert (tmp_path / "bright.bm25.query.md").read_text().count("| BM25 |") == 1

    topics_dir, _ = offline_bright
    for task in ("biology", "aops"):
        queries = load_topics(str(topics_dir / f"topics.bright-{task}-original.jsonl"))
        run = read_run(tmp_path / f"run.bright-{task}.bm25.query.txt")
        assert set(run) == {q.qid for q in queries}
        for query in queries:
            assert query.qid not in run[query.qid]
            assert not query.excluded_ids & set(run[query.qid])
    assert any(q.excluded_ids for q in load_topics(str(topics_dir / "topics.bright-aops-original.jsonl")))


def bait_wins(run: dict[str, dict[str, float]], qid: str, reasoning: dict[str, str]) -> bool:
    """The first document repeats this query's reasoning text (several queries may share one text)."""
    top = max(run[qid], key=run[qid].get)
    return any(top == reasoning_bait(other) for other, text in reasoning.items() if text == reasoning[qid])


def test_reasoning_field_changes_the_queries(offline_bright, tmp_path, capsys):
    assert run_bright(offline_bright, tmp_path, "--query-field", "reasoning") == 0
    assert run_bright(offline_bright, tmp_path) == 0
    topics_dir, _ = offline_bright
    for task in ("biology", "aops"):
        texts = {q.qid: q.text for q in load_topics(str(topics_dir / f"topics.bright-{task}-original.jsonl"),
                                                     query_field="reasoning")}
        reasoning = read_run(tmp_path / f"run.bright-{task}.bm25.reasoning.txt")
        query = read_run(tmp_path / f"run.bright-{task}.bm25.query.txt")

        assert all(bait_wins(reasoning, qid, texts) for qid in reasoning)
        assert sum(bait_wins(query, qid, texts) for qid in query) < len(query) / 2


def test_reranker_row(offline_bright, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(FAMILIES, "reverse", f"{__name__}:build_reverse")
    code = run_bright(offline_bright, tmp_path, "--reranker", "reverse-model", "--reranker-family", "reverse",
                      "--rerank-depth", "10")
    assert code == 0
    rows = table_rows(capsys.readouterr().out)
    assert list(rows) == ["BM25", "reverse-model"]
    first = read_run(tmp_path / "run.bright-biology.bm25.query.txt")
    reranked = read_run(tmp_path / "run.bright-biology.reverse-model.query.txt")
    for qid, scores in first.items():
        head = sorted(scores, key=scores.get, reverse=True)[:10]
        assert sorted(reranked[qid], key=reranked[qid].get, reverse=True)[:10] == head[::-1]


def test_offline_without_corpus_is_one_line_per_task(offline_bright, tmp_path, capsys, monkeypatch):
    from reasonrank.retrieval.java import PyseriniCatalogUnavailable, import_pyserini_search

    try:
        lucene = import_pyserini_search()
        # What Pyserini does when every download URL fails: print, and return None.
        monkeypatch.setattr(lucene.LuceneSearcher, "from_prebuilt_index", classmethod(lambda cls, name: None))
    except PyseriniCatalogUnavailable:  # Pyserini 2.x offline: its catalog of index names cannot be read either
        pass
    topics_dir, _ = offline_bright
    code = main(["--tasks", "biology,aops", "--topics-dir", str(topics_dir), "--output-dir", str(tmp_path),
                 "--quiet"])
    assert code == 2
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if "skipped" in line]
    assert [line.split(":")[0] for line in lines] == ["biology", "aops"]
    assert all("bright-" in line and "--corpus-dir" in line for line in lines)
    assert all(cell == "-" for cell in table_rows(captured.out)["BM25"])


def test_sources_and_task_names(tmp_path):
    assert parse_tasks("all") == list(TASKS)
    assert parse_tasks("aops, biology") == ["biology", "aops"]
    with pytest.raises(UserError, match="earth_science"):
        parse_tasks("earth_science")
    online = task_sources("pony", query_field="reasoning")
    assert (online.index, online.topics, online.qrels, online.prebuilt) == (
        "bright-pony", "bright-pony-original", "bright-pony", True)
    with pytest.raises(UserError, match=r"pony\.jsonl"):
        task_sources("pony", corpus_dir=tmp_path)
    with pytest.raises(UserError, match=r"topics\.bright-pony-original\.jsonl"):
        task_sources("pony", topics_dir=tmp_path)


def test_table_format():
    table = format_bright_table({"BM25": {t: 0.1 for t in TASKS}, "x": {"pony": 0.25}})
    lines = table.splitlines()
    assert lines[2].endswith("| 10.0 |") and lines[2].count("10.0") == 13
    assert lines[3] == "| x | " + " | ".join("25.0" if t == "pony" else "-" for t in TASKS) + " | 25.0 (1/12) |"


def test_a_run_per_task_as_the_first_stage_obeys_the_bright_rules(offline_bright, tmp_path, capsys):
    """BM25's runs with bait on top (each query's excluded ids and its own id) as ``run:{task}`` runs: the bait is
    dropped as for BM25, and what remains scores as BM25 does."""
    assert run_bright(offline_bright, tmp_path / "bm25") == 0
    bm25 = table_rows(capsys.readouterr().out)["BM25"]
    topics_dir, _ = offline_bright
    for task in ("biology", "aops"):
        lines = (tmp_path / "bm25" / f"run.bright-{task}.bm25.query.txt").read_text().splitlines()
        bait = [f"{q.qid} Q0 {docid} 0 1000.0 bait"
                for q in load_topics(str(topics_dir / f"topics.bright-{task}-original.jsonl"))
                for docid in dict.fromkeys([q.qid, *sorted(q.excluded_ids)[:3]])]
        (tmp_path / f"theirs-{task}.txt").write_text("\n".join(bait + lines[::-1]) + "\n")
    assert run_bright(offline_bright, tmp_path / "run", "--first-stage", f"run:{tmp_path}/theirs-{{task}}.txt") == 0
    rows = table_rows(capsys.readouterr().out)
    assert list(rows) == ["run:theirs-{task}.txt"] and rows["run:theirs-{task}.txt"] == bm25
    for task in ("biology", "aops"):
        ours = read_run(tmp_path / "run" / f"run.bright-{task}.run-theirs-{task}.txt.query.txt")
        assert ours == read_run(tmp_path / "bm25" / f"run.bright-{task}.bm25.query.txt")


def test_bm25_conditions_and_figures_are_pyserinis_2cr(tmp_path):
    """The BM25 condition of Pyserini's ``2cr/bright.yaml`` (the installed Pyserini's copy, byte-identical to
    Pyserini 2.3.0's) is what ``reasonrank.bright`` runs, and docs/bright.md quotes its figures."""
    import ast
    from importlib import resources

    import yaml

    from reasonrank.cli.bright import build_parser, first_stage_settings

    conditions = yaml.safe_load((resources.files("pyserini") / "2cr" / "bright.yaml").read_text())["conditions"]
    bm25 = next(c for c in conditions if c["name"] == "bm25")
    words = bm25["command"].split()
    flag = {word: words[i + 1] for i, word in enumerate(words[:-1]) if word.startswith("--")}
    args = build_parser().parse_args([])
    settings = first_stage_settings(task_sources("biology"), args.first_stage, args)
    assert flag["--index"].replace("${dataset}", "biology") == settings.index
    assert flag["--topics"].replace("${dataset}", "biology") == settings.topics
    assert int(flag["--hits"]) == settings.hits == 1000 and "--remove-query" in words and settings.remove_query
    # Pyserini's own defaults, read from its source (Pyserini 2.x's search module cannot be imported offline).
    source = (resources.files("pyserini") / "search" / "lucene" / "_searcher.py").read_text()
    set_bm25 = next(node for node in ast.walk(ast.parse(source))
                    if isinstance(node, ast.FunctionDef) and node.name == "set_bm25")
    defaults = [ast.literal_eval(d.args[0] if isinstance(d, ast.Call) else d) for d in set_bm25.args.defaults]
    assert "--bm25" in words and (settings.k1, settings.b) == tuple(defaults) == (0.9, 0.4)
    docs = (Path(__file__).resolve().parents[2] / "docs" / "bright.md").read_text()
    for dataset in bm25["datasets"]:
        scores = dataset["scores"][0]
        row = f"| {dataset['dataset']} | {scores['nDCG@10']:.4f} | {scores['R@100']:.4f} | {scores['R@1000']:.4f} |"
        assert row in docs
