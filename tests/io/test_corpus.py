"""Corpus formats, their validation, and the content-addressed index cache."""

from __future__ import annotations

import gzip
import importlib.metadata
import json
import re
from pathlib import Path

import cbor
import pytest

from reasonrank.errors import UserError
from reasonrank.io.corpus import iter_documents, read_documents
from reasonrank.retrieval import index as lucene_index
from reasonrank.retrieval.bm25 import Bm25FirstStage
from reasonrank.retrieval.index import ensure_index, is_lucene_index, lucene_version, open_index_reader
from reasonrank.types import Document, Query


def beir_records(test_data, name="scifact", count=None):
    lines = (test_data / name / "corpus.jsonl").read_text(encoding="utf-8").strip("\n").split("\n")
    return [json.loads(line) for line in lines[:count]]


def write_jsonl(path: Path, records) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def at_line(path: Path, line: int) -> str:
    return re.escape(f"{path}:{line}:")


def test_beir_corpus_contents_are_title_and_text(test_data):
    documents = read_documents(test_data / "scifact" / "corpus.jsonl")
    records = beir_records(test_data)
    first = records[0]
    assert len(documents) == len(records) > 1000
    assert documents[0] == Document(first["_id"], f"{first['title']} {first['text']}", first["title"])


def test_beir_corpus_with_empty_titles_has_text_only(test_data):
    documents = read_documents(test_data / "msmarco-dl19-mini" / "corpus.jsonl")
    first = beir_records(test_data, "msmarco-dl19-mini", count=1)[0]
    assert len(documents) == 5000
    assert first["title"] == ""
    assert documents[0].contents == first["text"] and documents[0].title == ""


def test_pyserini_jsonl_gzip_and_folder_give_the_same_documents(test_data, tmp_path):
    records = beir_records(test_data, count=40)
    pyserini = [{"id": r["_id"], "contents": f"{r['title']} {r['text']}"} for r in records]
    folder = tmp_path / "collection"
    folder.mkdir()
    write_jsonl(folder / "part0.jsonl", pyserini[:20])
    with gzip.open(folder / "part1.jsonl.gz", "wt", encoding="utf-8") as handle:
        handle.writelines(json.dumps(r) + "\n" for r in pyserini[20:])
    (folder / "README.md").write_text("not part of the corpus")
    beir = write_jsonl(tmp_path / "corpus.jsonl", records)
    # The same text; only the BEIR file says where its title ends.
    texts = [(d.docid, d.contents) for d in read_documents(beir)]
    assert [(d.docid, d.contents) for d in read_documents(folder)] == texts
    assert all(d.title == "" for d in read_documents(folder)) and all(d.title for d in read_documents(beir))
    assert [d.docid for d in read_documents(folder)] == [r["_id"] for r in records]


def write_car_paragraphs(path: Path, paragraphs) -> Path:
    """A TREC CAR paragraphs file: a CAR header, then an indefinite-length array of paragraphs."""
    header = ["CAR", [2], []]  # file type 2 = paragraphs
    with path.open("wb") as handle:
        handle.write(cbor.dumps(header) + b"\x9f")
        for para_id, bodies in paragraphs:
            handle.write(cbor.dumps([0, para_id.encode("ascii"), bodies]))
        handle.write(b"\xff")
    return path


def test_trec_car_paragraphs(test_data, tmp_path):
    records = beir_records(test_data, count=2)
    link = [1, [0, "Cerebral cortex", [], b"enwiki:Cerebral%20cortex", "cortex"]]  # ParaLink: page, section, id, anchor
    path = write_car_paragraphs(
        tmp_path / "paragraphs.cbor",
        [
            (records[0]["_id"], [[0, records[0]["text"]]]),
            (records[1]["_id"], [[0, "Development of the "], link, [0, " in infants."]]),
        ],
    )
    documents = read_documents(path)
    assert documents == [
        Document(records[0]["_id"], records[0]["text"]),
        Document(records[1]["_id"], "Development of the cortex in infants."),
    ]


def test_not_a_car_file(tmp_path):
    path = tmp_path / "broken.cbor"
    path.write_bytes(b"plain text, not CBOR")
    with pytest.raises(UserError, match="not a TREC CAR paragraphs file"):
        read_documents(path)


def test_malformed_json_names_file_and_line(test_data, tmp_path):
    path = write_jsonl(tmp_path / "corpus.jsonl", beir_records(test_data, count=3))
    with path.open("a") as handle:
        handle.write('{"_id": "x", "text": "unterminated\n')
    with pytest.raises(UserError, match=at_line(path, 4) + " malformed JSON"):
        read_documents(path)


def test_missing_id_names_file_and_line(test_data, tmp_path):
    records = beir_records(test_data, count=3)
    del records[1]["_id"]
    path = write_jsonl(tmp_path / "corpus.jsonl", records)
    with pytest.raises(UserError, match=at_line(path, 2) + " document has no id"):
        read_documents(path)


def test_empty_document_names_file_and_line(test_data, tmp_path):
    records = beir_records(test_data, count=3)
    records[2].update(title="", text="  ")
    path = write_jsonl(tmp_path / "corpus.jsonl", records)
    with pytest.raises(UserError, match=at_line(path, 3) + f" document '{records[2]['_id']}' is empty"):
        read_documents(path)


def test_duplicate_ids_across_files_name_both_places(test_data, tmp_path):
    records = beir_records(test_data, count=3)
    folder = tmp_path / "corpus"
    folder.mkdir()
    first = write_jsonl(folder / "a.jsonl", records)
    second = write_jsonl(folder / "b.jsonl", [records[1]])
    where_first = re.escape(f"{first}:2")
    with pytest.raises(UserError, match=at_line(second, 1) + f" duplicate document id .*first at {where_first}"):
        read_documents(folder)


def test_missing_unsupported_and_empty_corpora(tmp_path):
    with pytest.raises(UserError, match="corpus not found"):
        list(iter_documents(tmp_path / "nope.jsonl"))
    (tmp_path / "corpus.csv").write_text("id,text\n1,hello\n")
    with pytest.raises(UserError, match="unsupported corpus format"):
        list(iter_documents(tmp_path / "corpus.csv"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no corpus files"):
        list(iter_documents(tmp_path / "empty"))


def segments_mtime(index: Path) -> int:
    return next(index.glob("segments_*")).stat().st_mtime_ns


def test_index_is_cached_by_content_and_rebuilt_on_change(test_data, tmp_path):
    records = beir_records(test_data, count=60)
    (tmp_path / "mini").mkdir()
    path = write_jsonl(tmp_path / "mini" / "corpus.jsonl", records)
    cache = tmp_path / "cache"
    index = ensure_index(path, cache_dir=cache)
    assert index.parent == cache / "indexes"
    assert index.name.startswith(f"mini-corpus-lucene{lucene_version()}-")
    assert is_lucene_index(index)
    assert ensure_index(path, cache_dir=cache) == index  # reused: same folder, nothing rebuilt
    stamp = segments_mtime(index)

    write_jsonl(path, records[:59])
    changed = ensure_index(path, cache_dir=cache)
    assert changed != index and is_lucene_index(changed)
    assert sorted(p.name for p in (cache / "indexes").iterdir()) == sorted([index.name, changed.name])
    assert segments_mtime(index) == stamp  # the old index was left alone

    # The index holds every document and its stored raw JSON gives back each document's text.
    reader = open_index_reader(changed)
    assert reader.numDocs() == 59
    reader.close()
    with Bm25FirstStage(str(changed)) as bm25:
        (request,) = bm25.search([Query("q", records[0]["title"])], hits=100)
    top = request.candidates[0]
    assert (top.docid, top.text) == (records[0]["_id"], f"{records[0]['title']} {records[0]['text']}")


def test_index_cache_names_the_lucene_major_of_its_pyserini():
    """Lucene reads no index of a newer major: Pyserini 1.x (Lucene 9) and 2.x (Lucene 10) must not share one."""
    pyserini_major = int(importlib.metadata.version("pyserini").split(".")[0])
    assert lucene_version().split(".")[0] == ("9" if pyserini_major < 2 else "10")


def test_crashed_build_leaves_no_index(test_data, tmp_path, monkeypatch):
    path = write_jsonl(tmp_path / "corpus.jsonl", beir_records(test_data, count=5))

    def crash(collection, index, threads):
        index.mkdir()
        (index / "segments_1").write_text("half written")
        raise KeyboardInterrupt

    monkeypatch.setattr(lucene_index, "_index_collection", crash)
    with pytest.raises(KeyboardInterrupt):
        ensure_index(path, cache_dir=tmp_path / "cache")
    assert list((tmp_path / "cache" / "indexes").iterdir()) == []


def test_default_cache_is_reasonrank_cache(test_data, tmp_path, monkeypatch):
    monkeypatch.setenv("REASONRANK_CACHE", str(tmp_path / "elsewhere"))
    path = write_jsonl(tmp_path / "corpus.jsonl", beir_records(test_data, count=5))
    assert ensure_index(path).parent == tmp_path / "elsewhere" / "indexes"


def test_invalid_corpus_builds_nothing(test_data, tmp_path):
    records = beir_records(test_data, count=5)
    records[3]["text"] = records[3]["title"] = ""
    path = write_jsonl(tmp_path / "corpus.jsonl", records)
    with pytest.raises(UserError, match=at_line(path, 4)):
        ensure_index(path, cache_dir=tmp_path / "cache")
    assert list((tmp_path / "cache" / "indexes").iterdir()) == []
