"""Every command's path arguments, for the path rule (reasonrank.io.paths), shared by
tests/cli/test_path_collisions.py and benchmarks/fuzz.py.

A layout is one command's real input files in a folder (the DL19 mini collection's first lines, a run, qrels,
folders where the command reads a folder) and its outputs. A collision sets one output to one input, to a path
inside an input folder, or to another output, spelled as the same path, a relative path, a ``sub/..`` detour, a
symlink or a hard link. :func:`collision_outcome` runs the command in this process and checks what the rule
promises: exit 2, one ``error:`` line naming both flags, every file in the folder byte-identical and nothing new.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml
from hypothesis import strategies as st

from reasonrank.pipeline import embedded_collection

Paths = dict[str, Path]


@dataclass(frozen=True)
class Layout:
    """One command's inputs and outputs (flag -> path; several paths of one flag are ``--runs#2``), and its
    command line for a given mapping of flags to paths."""

    inputs: Paths
    folders: tuple[str, ...]  # the input flags that name a folder the command reads
    outputs: Paths
    argv: Callable[[Path, dict[str, str]], list[str]]


def _head(source: Path, target: Path, lines: int) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    with source.open(encoding="utf-8") as handle:
        target.write_text("".join(next(handle) for _ in range(lines)), encoding="utf-8")
    return target


def _dl19(folder: Path) -> Paths:
    mini = embedded_collection()
    return {
        "corpus": _head(mini.corpus, folder / "corpus.jsonl", 5),
        "topics": _head(mini.topics, folder / "topics.tsv", 2),
        "qrels": _head(mini.qrels, folder / "qrels.txt", 5),
    }


def _run_file(path: Path, qid: str = "q1") -> Path:
    path.write_text(f"{qid} Q0 d1 1 2.5 tag\n{qid} Q0 d2 2 1.0 tag\n", encoding="utf-8")
    return path


def _flag(name: str) -> str:
    return name.split("#")[0]


def _search(folder: Path) -> Layout:
    dl19 = _dl19(folder)
    inputs = {"--index": dl19["corpus"], "--topics": dl19["topics"], "--qrels": dl19["qrels"]}
    outputs = {"--output": folder / "out" / "run.txt", "--explanations": folder / "out" / "notes.jsonl"}
    return Layout(inputs, (), outputs, lambda _, p: [
        "--reranker", "none", "--quiet", *(a for flag, path in p.items() for a in (flag, path))])


def _bright(folder: Path) -> Layout:
    corpus, topics = folder / "corpus", folder / "topics"
    corpus.mkdir()
    topics.mkdir()
    (corpus / "biology.jsonl").write_text('{"id": "d1", "contents": "cells divide"}\n', encoding="utf-8")
    (topics / "topics.bright-biology-original.jsonl").write_text(
        '{"id": "q1", "query": "why do cells divide", "reasoning": "growth", "excluded_ids": ["N/A"]}\n',
        encoding="utf-8")
    (topics / "qrels.bright-biology.txt").write_text("q1 0 d1 1\n", encoding="utf-8")
    inputs = {"--corpus-dir": corpus, "--topics-dir": topics}
    return Layout(inputs, ("--corpus-dir", "--topics-dir"), {"--output-dir": folder / "runs"}, lambda _, p: [
        "--tasks", "biology", "--quiet", *(a for flag, path in p.items() for a in (flag, path))])


def _merge_argv(_: Path, p: dict[str, str]) -> list[str]:
    return ["--runs", p["--runs"], p["--runs#2"], "--topics", p["--topics"], "--explanations", p["--explanations"],
            "--output", p["--output"], "--explanations-output", p["--explanations-output"]]


def _merge(folder: Path) -> Layout:
    notes = folder / "notes.jsonl"
    notes.write_text('{"qid": "q1", "docid": "d1"}\n{"qid": "q2", "docid": "d1"}\n', encoding="utf-8")
    (folder / "topics.tsv").write_text("q1\tx\nq2\ty\n", encoding="utf-8")
    inputs = {"--runs": _run_file(folder / "shard0.txt"), "--runs#2": _run_file(folder / "shard1.txt", "q2"),
              "--topics": folder / "topics.tsv", "--explanations": notes}
    outputs = {"--output": folder / "merged.txt", "--explanations-output": folder / "merged.jsonl"}
    return Layout(inputs, (), outputs, _merge_argv)


def _report(folder: Path) -> Layout:
    dl19 = _dl19(folder)
    notes = folder / "notes.jsonl"
    notes.write_text('{"qid": "q1", "docid": "d1", "explanation": "x"}\n', encoding="utf-8")
    inputs = {"--run": _run_file(folder / "run.txt"), "--baseline": _run_file(folder / "bm25.txt"),
              "--explanations": notes, "--qrels": dl19["qrels"], "--topics": dl19["topics"],
              "--corpus": dl19["corpus"]}
    return Layout(inputs, (), {"--out": folder / "report.html"}, lambda _, p: [
        a for flag, path in p.items() for a in (flag, path)])


def _serve(folder: Path) -> Layout:
    model = folder / "model"
    model.mkdir()
    (model / "config.json").write_text("{}\n", encoding="utf-8")
    return Layout({"--reranker": model}, ("--reranker",), {"--write-openapi": folder / "openapi.json"},
                  lambda _, p: ["--reranker", p["--reranker"], "--write-openapi", p["--write-openapi"]])


def _export_hf(folder: Path) -> Layout:
    gguf = folder / "model.gguf"
    gguf.write_bytes(b"GGUF not really")
    return Layout({"model": gguf}, (), {"--output": folder / "exported"},
                  lambda _, p: [p["model"], "--output", p["--output"]])


def _config_layout(inputs: Paths, folders: tuple[str, ...], outputs: Paths, fixed: dict) -> Layout:
    """A training command: its paths are settings of the YAML config, which is an input (``--config``) too."""
    config = inputs["--config"]

    def argv(_: Path, p: dict[str, str]) -> list[str]:
        settings = {**fixed, **{key: value for key, value in p.items() if key != "--config"}}
        config.write_text(yaml.safe_dump(settings), encoding="utf-8")
        return ["--config", p["--config"]]

    return Layout(inputs, folders, outputs, argv)


def _model_folder(folder: Path) -> Path:
    model = folder / "base-model"
    model.mkdir()
    (model / "config.json").write_text("{}\n", encoding="utf-8")
    return model


def _teacher(folder: Path) -> Layout:
    dl19 = _dl19(folder)
    inputs = {"--config": folder / "teacher.yaml", "topics": dl19["topics"], "corpus": dl19["corpus"],
              "candidates": _run_file(folder / "bm25.txt"), "qrels": dl19["qrels"]}
    return _config_layout(inputs, (), {"output": folder / "teacher.jsonl"},
                          {"mode": "scores", "scorers": [{"first_stage": True}]})


def _sft(folder: Path) -> Layout:
    data = folder / "teacher.jsonl"
    data.write_text('{"query": "q", "passage": "p", "label": 1, "explanation": "x"}\n', encoding="utf-8")
    inputs = {"--config": folder / "sft.yaml", "model": _model_folder(folder), "data": data}
    return _config_layout(inputs, ("model",), {"output": folder / "adapter"}, {})


def _distill(folder: Path) -> Layout:
    dl19 = _dl19(folder)
    scores = folder / "scores.jsonl"
    scores.write_text('{"qid": "q1", "docid": "d1", "score": 1.0}\n', encoding="utf-8")
    inputs = {"--config": folder / "distill.yaml", "model": _model_folder(folder), "corpus": dl19["corpus"],
              "topics": dl19["topics"], "qrels": dl19["qrels"], "candidates": _run_file(folder / "bm25.txt"),
              "teacher_scores": scores}
    return _config_layout(inputs, ("model",), {"output": folder / "student"}, {})


def _reward(folder: Path) -> Layout:
    data, adapter = folder / "teacher.jsonl", folder / "sft-adapter"
    data.write_text('{"query": "q", "passage": "p", "label": 1}\n', encoding="utf-8")
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}\n", encoding="utf-8")
    inputs = {"--config": folder / "reward.yaml", "model": _model_folder(folder), "data": data, "adapter": adapter}
    outputs = {"output": folder / "refined", "samples": folder / "samples.jsonl"}
    return _config_layout(inputs, ("model", "adapter"), outputs, {})


LAYOUTS: dict[str, Callable[[Path], Layout]] = {
    "search": _search, "bright": _bright, "merge": _merge, "report": _report, "serve": _serve,
    "export-hf": _export_hf, "teacher": _teacher, "sft": _sft, "distill": _distill, "reward": _reward,
}
SPELLINGS = ("same", "relative", "detour", "symlink", "hardlink")


@dataclass(frozen=True)
class Collision:
    command: str
    output: int  # which output (modulo their number)
    target: int  # which input, path inside an input folder, or other output (modulo their number)
    spelling: str


def targets(layout: Layout, output: str) -> list[tuple[str, Path]]:
    """What ``output`` may collide with: each input, a path inside each input folder, each other output."""
    found = [(_flag(flag), path) for flag, path in layout.inputs.items()]
    found += [(flag, layout.inputs[flag] / "inside") for flag in layout.folders]
    return found + [(flag, path) for flag, path in layout.outputs.items() if flag != output]


def spelled(path: Path, spelling: str, folder: Path) -> str:
    """``path`` written another way (the command runs in ``folder``); links are made here, before the snapshot."""
    if spelling == "relative":
        return os.path.relpath(path, folder)
    if spelling == "detour":
        (folder / "sub").mkdir(exist_ok=True)
        return str(Path("sub") / ".." / os.path.relpath(path, folder))
    if spelling in ("symlink", "hardlink"):
        link = folder / "links" / f"{spelling}-{path.name}"
        link.parent.mkdir(exist_ok=True)
        if spelling == "hardlink" and path.is_file():
            os.link(path, link)
        else:  # folders and outputs not written yet cannot be hard-linked: a symlink to them
            link.symlink_to(path)
        return str(link)
    return str(path)


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).digest() if p.is_file() else b"dir"
            for p in sorted(folder.rglob("*"))}


def collision_outcome(case: Collision, folder: Path) -> str:
    """Run ``case`` in ``folder``; ``refused`` when the rule held, else raises AssertionError saying what broke."""
    from reasonrank.cli import command_module

    layout = LAYOUTS[case.command](folder)
    output = list(layout.outputs)[case.output % len(layout.outputs)]
    choices = targets(layout, output)
    target_flag, target = choices[case.target % len(choices)]
    paths = {flag: str(path) for flag, path in {**layout.inputs, **layout.outputs}.items()}
    paths[output] = spelled(target, case.spelling, folder)
    before_cwd = os.getcwd()
    stderr = io.StringIO()
    try:
        os.chdir(folder)
        argv = layout.argv(folder, paths)
        before = _snapshot(folder)
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            code = command_module(case.command).main(argv)
    finally:
        os.chdir(before_cwd)
    lines = [line for line in stderr.getvalue().splitlines() if line.startswith("error: ")]
    where = f"{case.command} {output}={paths[output]} ({target_flag} {target})"
    assert code == 2, f"{where}: exit {code}: {stderr.getvalue()[-400:]}"
    assert len(lines) == 1 and "Traceback" not in stderr.getvalue(), f"{where}: {stderr.getvalue()[-400:]}"
    assert output.lstrip("-") in lines[0] and target_flag.lstrip("-") in lines[0], f"{where}: {lines[0]}"
    assert _snapshot(folder) == before, f"{where}: a file changed or appeared"
    return "refused"


def every_collision() -> list[Collision]:
    """Each output of each command against each of its targets, the spellings taken in turn."""
    import tempfile

    cases = []
    for command, build in LAYOUTS.items():
        with tempfile.TemporaryDirectory() as folder:
            layout = build(Path(folder))
        for o, output in enumerate(layout.outputs):
            for t in range(len(targets(layout, output))):
                cases.append(Collision(command, o, t, SPELLINGS[len(cases) % len(SPELLINGS)]))
    return cases


collisions = st.builds(Collision, st.sampled_from(sorted(LAYOUTS)), st.integers(0, 7), st.integers(0, 15),
                       st.sampled_from(SPELLINGS))
