"""The HTML run report on real DL19 runs (BM25 vs the MiniLM bi-encoder), read back as HTML and in Chromium."""

from __future__ import annotations

import json
import shutil
import subprocess
from html import escape
from html.parser import HTMLParser
from pathlib import Path

import pytest

from reasonrank.cli.report import main as report_main
from reasonrank.cli.search import main as search_main
from reasonrank.evaluation import evaluate
from reasonrank.io.runs import read_run
from reasonrank.io.topics import load_qrels

TOPICS = 6
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


class Page(HTMLParser):
    """Tags, attributes and visible text of a page; ``sections`` are the per-query sections' qids."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)

    @property
    def sections(self) -> list[str]:
        return [a["data-qid"] for t, a in self.tags if t == "section" and "query" in (a.get("class") or "").split()]

    @property
    def all_text(self) -> str:
        return "".join(self.text)


@pytest.fixture(scope="module")
def dl19_runs(test_data, tmp_path_factory):
    """A BM25 run and its MiniLM rerank on the first DL19 topics, with an explanation file for the rerank."""
    folder = tmp_path_factory.mktemp("report")
    data = test_data / "msmarco-dl19-mini"
    topics = folder / "topics.tsv"
    topics.write_text("\n".join((data / "topics.dl19-passage.tsv").read_text().splitlines()[:TOPICS]) + "\n")
    common = ["--index", str(data / "corpus.jsonl"), "--topics", str(topics), "--hits", "30", "--quiet"]
    assert search_main([*common, "--reranker", "none", "--output", str(folder / "bm25.txt")]) == 0
    assert search_main([*common, "--reranker", "minilm-bi", "--output", str(folder / "minilm.txt"),
                        "--explanations", str(folder / "minilm.jsonl")]) == 0
    # The bi-encoder writes no explanations; give the top three of each query one, with markup that must be escaped.
    records = [json.loads(line) for line in (folder / "minilm.jsonl").read_text().splitlines()]
    with (folder / "explained.jsonl").open("w") as out:
        for record in records:
            if record["rank"] <= 3:
                record |= {"explanation": f"Passage {record['docid']} answers <b>the question</b> & more.",
                           "label": 3 - record["rank"]}
            out.write(json.dumps(record) + "\n")
    return folder, topics, data / "qrels.dl19-passage.txt"


def build(dl19_runs, out: Path) -> Path:
    folder, topics, qrels = dl19_runs
    argv = ["--run", str(folder / "minilm.txt"), "--baseline", str(folder / "bm25.txt"), "--explanations",
            str(folder / "explained.jsonl"), "--qrels", str(qrels), "--topics", str(topics), "--out", str(out),
            "--corpus", str(qrels.parent / "corpus.jsonl")]
    assert report_main(argv) == 0
    return out


@pytest.mark.slow
def test_report_shows_every_query_metrics_and_explanations(dl19_runs, tmp_path):
    folder, topics, qrels_path = dl19_runs
    html = build(dl19_runs, tmp_path / "report.html").read_text()
    page = Page(html)
    qids = [line.split("\t")[0] for line in topics.read_text().splitlines()]
    assert page.sections == qids
    qrels = load_qrels(str(qrels_path))
    run, base = evaluate(read_run(folder / "minilm.txt"), qrels), evaluate(read_run(folder / "bm25.txt"), qrels)
    text = page.all_text
    assert f"{base.mean['nDCG@10']:.4f}" in text and f"{run.mean['nDCG@10']:.4f}" in text
    deltas = [run.per_query[q]["nDCG@10"] - base.per_query[q]["nDCG@10"] for q in qids]
    wins, losses = sum(d > 1e-9 for d in deltas), sum(d < -1e-9 for d in deltas)
    assert f"{wins} wins, {losses} losses, {TOPICS - wins - losses} ties" in text
    first = qids[0]
    assert f"{base.per_query[first]['nDCG@10']:.4f} → {run.per_query[first]['nDCG@10']:.4f}" in text
    # One bar per query in the wins/losses plot, each linking to its section; explanations collapsible and escaped.
    bars = [a["href"] for t, a in page.tags if t == "a" and (a.get("href") or "").startswith("#q")]
    assert sorted(bars[:TOPICS]) == sorted(f"#q{i}" for i in range(1, TOPICS + 1))
    assert sum(t == "details" for t, _ in page.tags) >= 3 * TOPICS
    assert "answers <b>the question</b> & more." in text and "<b>the question</b>" not in html
    # Passages are shown (clamped, unfolding on click) with the search's evidence spans marked.
    passages = {json.loads(line)["_id"]: json.loads(line) for line in (qrels_path.parent / "corpus.jsonl").open()}
    records = [json.loads(line) for line in (folder / "explained.jsonl").read_text().splitlines()]
    assert len(records) == 10 * TOPICS and all(r["evidence"] for r in records)
    for record in records:
        doc = passages[record["docid"]]
        passage = " ".join(part for part in (doc["title"], doc["text"]) if part)
        (span,) = record["evidence"]
        assert f"<mark>{escape(passage[span['start']:span['end']])}</mark>" in html
    top = {name: {(q, d) for q, docs in read_run(folder / f"{name}.txt").items()
                  for d in sorted(docs, key=docs.get, reverse=True)[:10]} for name in ("minilm", "bm25")}
    assert sum(t == "mark" for t, _ in page.tags) == len(top["minilm"]) + len(top["minilm"] & top["bm25"])
    assert sum("passage" in (a.get("class") or "").split() for t, a in page.tags if t == "details") == 20 * TOPICS
    # A paired t-test per metric (ranx), on the per-query values.
    assert "p (paired t)" in text and "paired t-test over the queries judged in both runs" in text
    # Self-contained: nothing is fetched from anywhere.
    assert not [t for t, _ in page.tags if t in {"script", "link", "img", "iframe"}]
    assert "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "") and "https://" not in html


def test_text_from_the_inputs_is_escaped(tmp_path):
    (tmp_path / "run.txt").write_text('q<1> Q0 "d&1" 1 2.0 tag<x>\nq<1> Q0 d2 2 1.0 tag<x>\n')
    (tmp_path / "notes.jsonl").write_text(json.dumps(
        {"qid": "q<1>", "docid": "d2", "explanation": "</details><script>alert(1)</script>", "label": 1}) + "\n")
    (tmp_path / "topics.tsv").write_text("q<1>\tis <i>this</i> & that relevant?\n")
    argv = ["--run", str(tmp_path / "run.txt"), "--explanations", str(tmp_path / "notes.jsonl"),
            "--topics", str(tmp_path / "topics.tsv"), "--out", str(tmp_path / "r.html")]
    assert report_main(argv) == 0
    html = (tmp_path / "r.html").read_text()
    page = Page(html)
    assert page.sections == ["q<1>"]
    assert not [t for t, _ in page.tags if t in {"script", "i"}]
    assert "</details><script>alert(1)</script>" in page.all_text and "is <i>this</i> & that relevant?" in page.all_text
    assert "No qrels given" in page.all_text


@pytest.mark.parametrize(
    ("files", "argv", "message"),
    [
        ({}, ["--run", "missing.txt"], "run file missing.txt does not exist"),
        ({"run.txt": "q1 Q0 d1 1 x tag\n"}, ["--run", "run.txt"], "run.txt:1: score 'x' is not a number"),
        ({"run.txt": "q1 Q0 d1 1 1.0 t\n", "e.jsonl": "{oops\n"}, ["--run", "run.txt", "--explanations", "e.jsonl"],
         "e.jsonl:1: malformed JSON"),
        ({"run.txt": "q1 Q0 d1 1 1.0 t\n", "e.jsonl": '{"qid": "q9", "docid": "d1"}\n'},
         ["--run", "run.txt", "--explanations", "e.jsonl"], "no explanation matches"),
        ({"run.txt": "q1 Q0 d1 1 1.0 t\n", "t.tsv": "q2\tother\n"}, ["--run", "run.txt", "--topics", "t.tsv"],
         "query q1 of run.txt is not in --topics"),
        ({"run.txt": "q1 Q0 d1 1 1.0 t\n", "qrels.txt": "q2 0 d1 1\n"}, ["--run", "run.txt", "--qrels", "qrels.txt"],
         "no query of the run has judgments"),
        ({"run.txt": "q1 Q0 d1 1 1.0 t\n"}, ["--run", "run.txt", "--depth", "0"], "--depth must be at least 1"),
    ],
)
def test_bad_input_is_one_line_exit_2(tmp_path, monkeypatch, capsys, files, argv, message):
    monkeypatch.chdir(tmp_path)
    for name, content in files.items():
        (tmp_path / name).write_text(content)
    assert report_main([*argv, "--out", "report.html"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and message in error and error.count("\n") == 1
    assert not (tmp_path / "report.html").exists()


@pytest.mark.slow
def test_report_renders_in_headless_chromium(dl19_runs, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed: run tests/setup_chromium.sh (as root) to install it")
    report = build(dl19_runs, tmp_path / "report.html")
    flags = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([*flags, "--dump-dom", report.as_uri()], capture_output=True, text=True, timeout=180,
                         check=True).stdout
    page = Page(dom)
    _, topics, _ = dl19_runs
    assert page.sections == [line.split("\t")[0] for line in topics.read_text().splitlines()]
    assert "nDCG@10" in page.all_text and "MAP@100" in page.all_text and "wins" in page.all_text
    assert "answers <b>the question</b> & more." in page.all_text
    assert sum(t == "rect" for t, _ in page.tags) == TOPICS  # the browser parsed the inline SVG plot
    assert sum(t == "mark" for t, _ in page.tags) >= 10 * TOPICS  # evidence highlighted in the passages
    assert "p (paired t)" in page.all_text
    shot = tmp_path / "report.png"
    subprocess.run([*flags, "--hide-scrollbars", "--window-size=1280,1000", f"--screenshot={shot}",
                    report.as_uri()], capture_output=True, timeout=180, check=True)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
