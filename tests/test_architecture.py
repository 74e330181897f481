"""Each extension point is one new module plus one table line: a reranker family (FAMILIES), a backend (BACKENDS),
a first stage (FIRST_STAGES) and a command (COMMANDS). Each test adds one from this file through its table only and
uses it the way a user would; the hybrid first stage and the openai-server command are registered that way too."""

from __future__ import annotations

import argparse
import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest
from fakes import generation

from reasonrank.backends import BACKENDS, BackendKind
from reasonrank.backends.base import Backend, ChatPrompt, Generation, GenerationParams
from reasonrank.cli import COMMANDS, main
from reasonrank.cli.docs_cli import render
from reasonrank.pipeline import embedded_collection
from reasonrank.rerank.base import ScoringReranker
from reasonrank.rerank.registry import FAMILIES, load_reranker
from reasonrank.retrieval.base import FIRST_STAGES, FirstStageSettings
from reasonrank.types import Candidate, Judgment, Request

ROOT = Path(__file__).resolve().parent.parent
SOURCES = {path: path.read_text(encoding="utf-8") for path in (ROOT / "reasonrank").rglob("*.py")}


def mentioned_in(module: str) -> set[str]:
    """The package files (other than the module itself) that import ``module`` or name it in a string (a table)."""
    own = ROOT / (module.replace(".", "/") + ".py")
    name = re.escape(module)
    pattern = re.compile(rf"""["']{name}[:"']|\bimport {name}\b|\bfrom {name} import""")
    return {str(path.relative_to(ROOT)) for path, text in SOURCES.items() if path != own and pattern.search(text)}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(SOURCES[path])
    names = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    return names | {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}


@pytest.mark.parametrize(
    ("room", "later"),
    [
        ("io", ("reasonrank.rerank", "reasonrank.backends", "reasonrank.train", "reasonrank.cli", "reasonrank.serve")),
        ("retrieval", ("reasonrank.rerank", "reasonrank.backends", "reasonrank.train", "reasonrank.cli",
                       "reasonrank.serve")),
        ("backends", ("reasonrank.rerank", "reasonrank.train", "reasonrank.cli", "reasonrank.pipeline")),
        ("encoders", ("reasonrank.rerank", "reasonrank.retrieval", "reasonrank.train", "reasonrank.cli")),
    ],
)
def test_data_flows_one_way(room, later):
    for path in (ROOT / "reasonrank" / room).glob("*.py"):
        wrong = sorted(m for m in imported_modules(path) if m.startswith(later))
        assert not wrong, f"{path.relative_to(ROOT)} imports {wrong}"


def test_hybrid_first_stage_and_openai_server_command_are_registered_only_in_their_tables():
    assert mentioned_in("reasonrank.retrieval.hybrid") == {"reasonrank/retrieval/base.py"}
    assert mentioned_in("reasonrank.serve.openai_server") == {"reasonrank/cli/__init__.py"}


# --- a first stage: every document, scored by how often the query's words occur in it ---
class WordCountFirstStage:
    name = "word-count"

    def __init__(self, corpus: str) -> None:
        from reasonrank.io.corpus import read_documents

        self.documents = read_documents(corpus)

    def search(self, queries, hits=100, threads=1, remove_query=False, progress=True, text_depth=None):
        requests = []
        for query in queries:
            words = set(query.text.lower().split())
            scored = [(sum(w in words for w in d.contents.lower().split()), d) for d in self.documents]
            best = sorted(scored, key=lambda pair: -pair[0])[:hits]
            requests.append(Request(query, tuple(Candidate(d.docid, d.contents, float(s)) for s, d in best)))
        return requests

    def close(self) -> None:
        pass


def build_word_count(index: str, settings: FirstStageSettings) -> WordCountFirstStage:
    return WordCountFirstStage(index)


def test_a_first_stage_is_one_table_line(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(FIRST_STAGES, "word-count", f"{__name__}:build_word_count")
    output = tmp_path / "run.txt"
    assert main(["search", "--first-stage", "word-count", "--reranker", "none", "--hits", "5", "--quiet",
                 "--output", str(output)]) == 0
    lines = output.read_text().splitlines()
    assert len(lines) == 43 * 5 and lines[0].split()[5] == "word-count"
    assert "nDCG@10" in capsys.readouterr().out  # the embedded collection's qrels score it


# --- a reranker family: longer passages first ---
class LongestFirst(ScoringReranker):
    def __init__(self, model: str, bonus: float = 0.0) -> None:
        self.bonus = bonus

    def judge(self, requests):
        return [[Judgment(len(c.text) + self.bonus) for c in r.candidates] for r in requests]


def test_a_reranker_family_is_one_table_line(monkeypatch):
    monkeypatch.setitem(FAMILIES, "longest", f"{__name__}:LongestFirst")
    reranker = load_reranker("anything", family="longest", bonus=1.0)
    ranking = reranker.rerank("q", [("a", "short"), ("b", "much longer text")])
    assert ranking.docids == ["b", "a"] and reranker.name == "anything"


# --- a backend: answers every pointwise prompt with the highest label ---
class AlwaysRelevant(Backend):
    def __init__(self, model: str, verdict: int = 2) -> None:
        self.verdict = verdict

    def generate(self, prompts: list[ChatPrompt], params: GenerationParams) -> list[Generation]:
        return [generation("It matches. Relevance Label: ", str(self.verdict)) for _ in prompts]

    def next_token_logprobs(self, prompts, options):
        raise AssertionError("pointwise reads the label from the generation")


def test_a_backend_is_one_table_line(monkeypatch):
    monkeypatch.setitem(BACKENDS, "always", BackendKind(f"{__name__}:AlwaysRelevant", "anything"))
    reranker = load_reranker("smollm2-pointwise", backend="always", verdict=1)
    ranking = reranker.rerank("q", [("a", "one"), ("b", "two")])
    assert [item.label for item in ranking] == [1, 1]
    assert "It matches" in ranking[0].explanation


# --- a command ---
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tests.hello", description="Say hello to the collection.")
    parser.add_argument("--name", default="world", help="whom to greet")
    return parser


def run(args: argparse.Namespace) -> int:
    print(f"hello {args.name}: {len(embedded_collection().topics.read_text().splitlines())} topics")
    return 0


from reasonrank.errors import command  # noqa: E402  (a command module's last lines, as in reasonrank.cli.*)

hello_main = command(build_parser, run)


def test_a_command_is_one_table_line(monkeypatch, capsys):
    import types

    module = types.SimpleNamespace(build_parser=build_parser, run=run, main=hello_main)
    monkeypatch.setitem(sys.modules, "reasonrank_test_hello", module)
    monkeypatch.setitem(COMMANDS, "hello", "reasonrank_test_hello")
    assert main(["hello", "--name", "DL19"]) == 0
    assert capsys.readouterr().out == "hello DL19: 43 topics\n"
    assert main([]) == 0 and "hello" in capsys.readouterr().out  # listed
    assert "## hello" in render() and "`--name NAME`" in render()  # documented in docs/cli.md


def test_python_m_reasonrank_lists_and_runs_commands():
    listed = subprocess.run([sys.executable, "-m", "reasonrank"], capture_output=True, text=True, timeout=300)
    assert listed.returncode == 0
    assert all(re.search(rf"^  {re.escape(name)} ", listed.stdout, re.M) for name in COMMANDS), listed.stdout
    unknown = subprocess.run([sys.executable, "-m", "reasonrank", "serch"], capture_output=True, text=True)
    assert unknown.returncode == 2 and unknown.stderr.startswith("error: unknown command 'serch'")
    assert len(unknown.stderr.strip().splitlines()) == 1
