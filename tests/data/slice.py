"""How the slices in this folder were cut from the full collections (run once; the tests read only the slices).

    python tests/data/slice.py FULL_DATA_FOLDER tests/data

FULL_DATA_FOLDER holds the full collections in the same layout (``scifact/``, ``bright/``, ``trec-dl/``). Every
slice keeps whole records in their original order: the first claims/queries of a file, their judgments and
rationales, and for SciFact the abstracts those claims need (judged ones, the first 100 of the corpus, and each
claim's BM25 top 20 over the whole corpus as hard negatives), so retrieval on the slice still meets real
distractors. The DL19 mini collection is not sliced: it ships inside the package (``reasonrank/data``).
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

SCIFACT_TRAIN_CLAIMS = 40
SCIFACT_TEST_CLAIMS = 30
SCIFACT_LEADING_ABSTRACTS = 100
SCIFACT_HARD_NEGATIVES = 20
BRIGHT_QUERIES = {"biology": 12, "aops": 6, "leetcode": 6}


def first_lines(path: Path, count: int) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()[:count]


def write_lines(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def judged(qrels: Path, qids: set[str]) -> list[str]:
    return [line for line in qrels.read_text(encoding="utf-8").splitlines() if line.split()[0] in qids]


def bm25_top(corpus: Path, topics: list[str], hits: int) -> set[str]:
    from reasonrank.io.topics import load_topics
    from reasonrank.retrieval.bm25 import Bm25FirstStage

    queries = [q for q in load_topics(str(corpus.parent / "topics.train.tsv")) + load_topics(
        str(corpus.parent / "topics.test.tsv")) if q.qid in set(topics)]
    with Bm25FirstStage(str(corpus)) as bm25:
        return {c.docid for r in bm25.search(queries, hits=hits) for c in r.candidates}


def slice_scifact(source: Path, target: Path) -> None:
    train = first_lines(source / "topics.train.tsv", SCIFACT_TRAIN_CLAIMS)
    test = first_lines(source / "topics.test.tsv", SCIFACT_TEST_CLAIMS)
    train_ids, test_ids = {line.split("\t")[0] for line in train}, {line.split("\t")[0] for line in test}
    qrels_train, qrels_test = judged(source / "qrels.train.txt", train_ids), judged(source / "qrels.test.txt", test_ids)
    rationales = [line for line in (source / "rationales.train.jsonl").read_text(encoding="utf-8").splitlines()
                  if json.loads(line)["qid"] in train_ids]
    keep = {line.split()[2] for line in qrels_train + qrels_test} | {json.loads(r)["docid"] for r in rationales}
    keep |= bm25_top(source / "corpus.jsonl", sorted(train_ids | test_ids), SCIFACT_HARD_NEGATIVES)
    corpus = (source / "corpus.jsonl").read_text(encoding="utf-8").splitlines()
    leading = {json.loads(line)["_id"] for line in corpus[:SCIFACT_LEADING_ABSTRACTS]}
    write_lines(target / "corpus.jsonl", [line for line in corpus if json.loads(line)["_id"] in keep | leading])
    write_lines(target / "topics.train.tsv", train)
    write_lines(target / "topics.test.tsv", test)
    write_lines(target / "qrels.train.txt", qrels_train)
    write_lines(target / "qrels.test.txt", qrels_test)
    write_lines(target / "rationales.train.jsonl", rationales)


def slice_bright(source: Path, target: Path) -> None:
    for task, count in BRIGHT_QUERIES.items():
        original = first_lines(source / f"topics.bright-{task}-original.jsonl", count)
        qids = {json.loads(line)["id"] for line in original}
        write_lines(target / f"topics.bright-{task}-original.jsonl", original)
        write_lines(target / f"topics.bright-{task}.tsv", first_lines(source / f"topics.bright-{task}.tsv", count))
        write_lines(target / f"qrels.bright-{task}.txt", judged(source / f"qrels.bright-{task}.txt", qids))


def main(source: Path, target: Path) -> None:
    slice_scifact(source / "scifact", target / "scifact")
    slice_bright(source / "bright", target / "bright")
    (target / "trec-dl").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source / "trec-dl" / "topics.dl19-passage.tsv", target / "trec-dl" / "topics.dl19-passage.tsv")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
