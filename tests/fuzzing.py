"""Malformed and edge-case inputs for every reader and command, shared by tests/test_fuzz_inputs.py and
benchmarks/fuzz.py (which runs a larger budget and prints the counts).

A case is a file of one kind (topics TSV, BEIR queries, BRIGHT topics, qrels, run, corpus JSONL or gzip,
explanations) built from mostly-valid lines with hostile fields, encodings and line ends, or a command line of
``evaluate``, ``merge`` or ``report`` over such files. ``outcome`` runs the real reader or command and says
``accepted`` (with the result's invariants checked: nothing silently wrong) or ``error`` (one ``error:`` line,
no output file left behind); anything else raises, which is what the test and the benchmark count as a failure.
A config case is a training or teacher config damaged in some way, put through everything its command checks
before a model loads (``accepted`` with its invariants checked, or one ``error:`` line naming the file or the
``--set``; no file changed).
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hypothesis import strategies as st

from reasonrank.errors import UserError

WEIRD = ["", " ", "\t", "\u0085", "\u2028", "\ufeff", "\x00", "\x1c", "é", "🙂", "\\", '"', "N/A", "nan", "1e999"]
NEWLINES = ["\n", "\r\n", "\r"]

texts = st.one_of(st.sampled_from(WEIRD), st.text(max_size=12), st.text(alphabet="ab 19\t", max_size=8))
ids = st.one_of(st.sampled_from(["q1", "q2", "19335", "d1", "d2", " q1", "q1 ", "", "N/A"]), texts)
numbers = st.one_of(
    st.integers(-3, 3).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["nan", "inf", "-Infinity", "1e999", "0x10", "1,5", "", "2.0"]),
    texts,
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.floats(allow_nan=True) | texts | ids,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=2),
    max_leaves=4,
)


def fields_line(*fields: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """Fields joined by a space, a tab or nothing, sometimes with one field dropped or one added."""
    joined = st.tuples(st.sampled_from([" ", "\t", "  "]), st.tuples(*fields)).map(lambda sf: sf[0].join(sf[1]))
    return st.one_of(joined, joined.map(lambda line: line.rsplit(" ", 1)[0]), joined.map(lambda line: line + " x"))


def json_line(keys: dict[str, st.SearchStrategy]) -> st.SearchStrategy[str]:
    """A JSON object with some of ``keys`` (each of a fitting or a hostile type), or broken JSON."""
    record = st.fixed_dictionaries({}, optional={k: v | json_values for k, v in keys.items()})
    encoded = st.tuples(record, st.booleans()).map(lambda rb: json.dumps(rb[0], ensure_ascii=rb[1], allow_nan=True))
    return st.one_of(encoded, encoded, encoded.map(lambda line: line[: len(line) // 2]), json_values.map(str))


@st.composite
def file_bytes(draw, line: st.SearchStrategy[str], valid: list[str]) -> bytes:
    """Lines (drawn and known-good ones) with one kind of line end, maybe a BOM, maybe bytes that are not UTF-8."""
    lines = draw(st.lists(st.one_of(line, st.sampled_from(valid)), max_size=6))
    newline = draw(st.sampled_from(NEWLINES))
    text = newline.join(lines) + draw(st.sampled_from(["", newline]))
    if draw(st.booleans()) and draw(st.booleans()):
        text = "\ufeff" + text
    data = text.encode("utf-8", errors="surrogatepass")
    if draw(st.integers(0, 7)) == 0:
        position = draw(st.integers(0, len(data)))
        data = data[:position] + draw(st.sampled_from([b"\xff", b"\xc3", b"\xe9t\xe9", b"\x80\x80"])) + data[position:]
    return data


VALID_RUN = ["q1 Q0 d1 1 2.5 tag", "q1 Q0 d2 2 1.0 tag", "q2 Q0 d1 1 0.5 tag"]
VALID_QRELS = ["q1 0 d1 1", "q1 0 d2 0", "q2 0 d1 2"]
CASES: dict[str, tuple[str, st.SearchStrategy[bytes]]] = {
    "topics-tsv": (".tsv", file_bytes(fields_line(ids, texts), ["q1\twhat is x", "q2\tanother query"])),
    "topics-beir": (".jsonl", file_bytes(json_line({"_id": ids, "text": texts, "title": texts}),
                                         ['{"_id": "q1", "text": "what is x"}'])),
    "topics-bright": (".jsonl", file_bytes(
        json_line({"id": ids, "query": texts, "reasoning": texts,
                   "excluded_ids": st.lists(ids, max_size=2) | st.sampled_from(["['d1']", "[", "N/A"])}),
        ['{"id": "q1", "query": "why", "reasoning": "because", "excluded_ids": ["N/A"]}'])),
    "qrels": (".txt", file_bytes(fields_line(ids, numbers, ids, numbers), VALID_QRELS)),
    "run": (".txt", file_bytes(fields_line(ids, st.just("Q0"), ids, numbers, numbers, texts), VALID_RUN)),
    "corpus": (".jsonl", file_bytes(json_line({"id": ids, "_id": ids, "contents": texts, "title": texts,
                                               "text": texts}), ['{"id": "d1", "contents": "a passage"}'])),
    "corpus-gz": (".jsonl.gz", file_bytes(json_line({"id": ids, "contents": texts}),
                                          ['{"id": "d1", "contents": "a passage"}'])),
    "explanations": (".jsonl", file_bytes(
        json_line({"qid": ids, "docid": ids, "explanation": texts, "label": numbers, "score": numbers, "model": texts}),
        ['{"qid": "q1", "docid": "d1", "rank": 1, "score": 2.5, "label": 1, "explanation": "x", "model": "m"}'])),
}


def gzip_variant(data: bytes, how: int) -> bytes:
    """0: a proper gzip, 1: a gzip cut short, 2: plain text under a .gz name."""
    packed = gzip.compress(data, mtime=0)
    return [packed, packed[: max(1, len(packed) // 2)], data][how]


file_cases = st.sampled_from(sorted(CASES)).flatmap(
    lambda kind: st.tuples(st.just(kind), CASES[kind][1], st.integers(0, 2))
)


def check_topics(queries) -> None:
    assert queries, "accepted topics without queries"
    qids = [q.qid for q in queries]
    assert len(set(qids)) == len(qids), "duplicate query ids accepted"
    for q in queries:
        assert q.qid and q.qid == q.qid.strip() and "\ufeff" not in q.qid, f"query id {q.qid!r} accepted"
        assert q.text.strip(), f"empty query text accepted for {q.qid!r}"


def check_run(run) -> None:
    assert run and all(docs for docs in run.values())
    assert all(math.isfinite(score) for docs in run.values() for score in docs.values()), "non-finite score accepted"
    assert not any("\ufeff" in qid for qid in run), "a byte-order mark became part of a query id"


def check_qrels(qrels) -> None:
    assert qrels and all(isinstance(g, int) for docs in qrels.values() for g in docs.values())
    assert not any("\ufeff" in qid for qid in qrels), "a byte-order mark became part of a query id"


def check_documents(documents) -> None:
    docids = [d.docid for d in documents]
    assert len(set(docids)) == len(docids) and all(d.contents.strip() for d in documents)  # indexing refuses none


def check_notes(notes) -> None:
    for note in notes.values():
        assert note.explanation is None or isinstance(note.explanation, str)
        assert note.label is None or type(note.label) is int


def read_case(kind: str, path: Path) -> Callable[[], None]:
    from reasonrank.io.corpus import read_documents
    from reasonrank.io.runs import read_run
    from reasonrank.io.topics import load_qrels, load_topics
    from reasonrank.report import load_explanations, load_run

    def read() -> None:
        if kind.startswith("topics"):
            check_topics(load_topics(str(path)))
            if kind == "topics-bright":
                check_topics(load_topics(str(path), query_field="reasoning"))
        elif kind == "qrels":
            check_qrels(load_qrels(str(path)))
        elif kind == "run":
            check_run(read_run(path))
            assert load_run(path).tag
        elif kind.startswith("corpus"):
            check_documents(read_documents(path))
        elif kind == "explanations":
            check_notes(load_explanations(path))

    return read


def write_case(folder: Path, kind: str, data: bytes, how: int, name: str = "input") -> Path:
    suffix = CASES[kind][0]
    path = folder / f"{name}{suffix}"
    path.write_bytes(gzip_variant(data, how) if suffix.endswith(".gz") else data)
    return path


def file_outcome(folder: Path, kind: str, data: bytes, how: int) -> str:
    """``accepted`` or ``error``; raises on a traceback-worthy exception or a silently wrong result."""
    path = write_case(folder, kind, data, how)
    try:
        with contextlib.redirect_stderr(io.StringIO()):  # notes such as "byte-order mark ignored"
            read_case(kind, path)()
    except UserError as error:
        assert "\n" not in str(error), f"a multi-line error: {error}"
        return "error"
    return "accepted"


# --- commands ---------------------------------------------------------------------------------------------

COMMANDS = ("evaluate", "merge", "report")


@dataclass(frozen=True)
class CommandCase:
    command: str
    inputs: dict[str, tuple[str, bytes, int]]  # flag -> (kind, data, gzip variant)
    output: str  # "fine", "parent-is-file", "is-folder", "deep"
    extra: tuple[str, ...]


VALID_RUNS = ["\n".join(VALID_RUN) + "\n", VALID_RUN[0] + "\n", "q2 Q0 d1 1 0.5 other\n"]
VALID_NOTES = ['{"qid": "q1", "docid": "d1", "label": 1, "explanation": "x"}\n{"qid": "q2", "docid": "d1"}\n']


def mostly(valid: list[str], hostile: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    """Known-good files two times in three, so that commands also get far enough to write their output."""
    good = st.sampled_from([text.encode() for text in valid])
    return st.one_of(good, good, hostile)


command_cases = st.builds(
    CommandCase,
    st.sampled_from(COMMANDS),
    st.fixed_dictionaries({}, optional={
        "run": st.tuples(st.just("run"), mostly(VALID_RUNS, CASES["run"][1]), st.just(0)),
        "run2": st.tuples(st.just("run"), mostly(VALID_RUNS, CASES["run"][1]), st.just(0)),
        "qrels": st.tuples(st.just("qrels"), mostly(["\n".join(VALID_QRELS)], CASES["qrels"][1]), st.just(0)),
        "topics": st.tuples(st.just("topics-tsv"), mostly(["q1\tx\nq2\ty\n", "q1\tx\n"], CASES["topics-tsv"][1]),
                            st.just(0)),
        "explanations": st.tuples(st.just("explanations"), mostly(VALID_NOTES, CASES["explanations"][1]),
                                  st.just(0)),
    }),
    st.sampled_from(["fine", "fine", "parent-is-file", "is-folder", "deep"]),
    st.lists(st.sampled_from(["--per-query", "--depth=0", "--depth=3", "--depth=x", "--missing-flag"]), max_size=2)
    .map(tuple),
)


def command_argv(case: CommandCase, folder: Path) -> tuple[list[str], Path]:
    files = {flag: write_case(folder, kind, data, how, flag) for flag, (kind, data, how) in case.inputs.items()}
    (folder / "afile").write_text("x")
    (folder / "afolder").mkdir(exist_ok=True)
    output = {"fine": folder / "out" / "result", "parent-is-file": folder / "afile" / "result",
              "is-folder": folder / "afolder", "deep": folder / "a" / "b" / "result"}[case.output]
    runs = [str(files[f]) for f in ("run", "run2") if f in files] or [str(folder / "missing-run.txt")]
    if case.command == "evaluate":
        argv = ["--run", *runs, "--qrels", str(files.get("qrels", folder / "missing-qrels.txt"))]
        argv += ["--topics", str(files["topics"])] if "topics" in files else []
        argv += [a for a in case.extra if a == "--per-query"]
        return argv, output
    if case.command == "merge":
        argv = ["--runs", *runs, "--output", str(output)]
        argv += ["--topics", str(files["topics"])] if "topics" in files else []
        if "explanations" in files:
            argv += ["--explanations", str(files["explanations"]), "--explanations-output", str(output) + ".jsonl"]
        return argv, output
    argv = ["--run", runs[0], "--out", str(output)]
    argv += ["--baseline", runs[1]] if len(runs) > 1 else []
    for flag in ("qrels", "topics", "explanations"):
        argv += [f"--{flag}", str(files[flag])] if flag in files else []
    argv += [a for a in case.extra if a.startswith("--depth") or a == "--missing-flag"]
    return argv, output


def command_outcome(case: CommandCase, folder: Path) -> str:
    """Run the command in this process; ``accepted`` or ``error``; raises on a traceback or a partial output."""
    from reasonrank.cli import evaluate, merge, report

    main = {"evaluate": evaluate.main, "merge": merge.main, "report": report.main}[case.command]
    argv, output = command_argv(case, folder)
    existed = output.exists()
    before = set(folder.rglob("*"))
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(argv)
        except SystemExit as exit_:  # argparse: a usage line and one error line
            code = exit_.code
    lines = [line for line in stderr.getvalue().splitlines() if "error: " in line]
    leftovers = [p for p in set(folder.rglob("*")) - before if p.name.endswith(".tmp")]
    assert not leftovers, f"temporary files left behind: {leftovers}"
    if code == 0:
        return "accepted"
    assert code == 2, f"exit code {code}: {stderr.getvalue()[-500:]}"
    assert len(lines) == 1, f"not one error line: {stderr.getvalue()[-500:]}"
    assert "Traceback" not in stderr.getvalue()
    if not existed and case.output != "is-folder":
        assert not output.exists(), f"{case.command} failed but left {output}"
    return "error"


# --- training and teacher configs -------------------------------------------------------------------------

CONFIG_COMMANDS = ("teacher", "sft", "distill", "reward")
INPUT = "<an input file>"  # replaced by one of the layout's input paths
config_values = st.one_of(json_values, st.sampled_from(["missing.jsonl", "no/such/folder", "", ".", "~", INPUT,
                                                        "pkg:nothing", "yes", "1e3", "[1, 2]"]))


@dataclass(frozen=True)
class ConfigCase:
    """A valid config of one training command (tests/collisions.py's layout) with some settings changed, added
    or dropped, the YAML text damaged in one way, and ``--set`` overrides."""

    command: str
    edits: tuple[tuple[str, int, str, object], ...]  # (set | add | drop | collide, key index, new key, value)
    damage: int  # 0 none, 1 cut short, 2 a line twice, 3 a tab indent, 4 a list at the top, 5 not UTF-8
    overrides: tuple[str, ...]


config_cases = st.builds(
    ConfigCase,
    st.sampled_from(CONFIG_COMMANDS),
    st.lists(st.tuples(st.sampled_from(["set", "set", "add", "drop", "collide"]), st.integers(0, 30),
                       st.one_of(texts, st.sampled_from(["epoch", "modle", "outputs", "trainer", "lr"])),
                       config_values), max_size=3).map(tuple),
    st.sampled_from([0, 0, 0, 1, 2, 3, 4, 5]),
    st.lists(st.one_of(st.sampled_from(["epochs=2", "max_steps=x", "=3", "noequals", "seed=[1", "output=" + INPUT,
                                        "hits=yes", "data=missing.jsonl"]), texts), max_size=2).map(tuple),
)


def _edited(settings: dict, case: ConfigCase, inputs: list[str], outputs: list[str]) -> dict:
    for action, index, new_key, value in case.edits:
        keys = sorted(settings)
        key = keys[index % len(keys)] if keys else new_key
        value = inputs[index % len(inputs)] if value == INPUT else value
        if action == "set":
            settings[key] = value
        elif action == "add":
            settings[new_key] = value
        elif action == "drop":
            settings.pop(key, None)
        else:  # an output set to an input (or to the other output)
            settings[outputs[index % len(outputs)]] = inputs[index % len(inputs)]
    return settings


def _damaged(text: str, damage: int) -> bytes:
    lines = text.splitlines(keepends=True)
    if damage == 1:
        text = text[: len(text) // 2]
    elif damage == 2 and lines:
        text = "".join(lines + lines[:1])
    elif damage == 3 and lines:
        text = "".join(["\t" + lines[0], *lines[1:]])
    elif damage == 4:
        text = "- " + text.replace("\n", "\n  ")
    data = text.encode("utf-8", errors="surrogatepass")
    return data[:5] + b"\xff\xfe" + data[5:] if damage == 5 else data


def _accepted_config(config, run, folder: Path) -> None:
    """A config that passed the checks: every setting has its annotated type, each file it reads exists and no
    output is an input or another output."""
    import typing

    from reasonrank.io.paths import same_file
    from reasonrank.train.config import FILE

    for name, hint in typing.get_type_hints(run.cls).items():
        value = getattr(config, name)
        if hint in (int, float, str, bool):
            assert isinstance(value, hint) and (hint is bool or not isinstance(value, bool)), f"{name}={value!r}"
    for key, kind in run.reads.items():
        value = getattr(config, key)
        if kind == FILE and value is not None:
            assert (folder / Path(value).expanduser()).exists(), f"{key} {value!r} accepted but missing"
    written = [path for _, path in run.writes(config) if path is not None]
    read = [getattr(config, key) for key in run.reads if getattr(config, key) is not None]
    for index, path in enumerate(written):
        assert not any(same_file(folder / path, folder / other) for other in [*read, *written[:index]]), path


def config_outcome(case: ConfigCase, folder: Path) -> str:
    """Everything a training command checks before its step (and any model) starts; ``accepted`` or ``error``."""
    import hashlib
    import os

    import yaml
    from collisions import LAYOUTS

    from reasonrank.cli import command_module

    module = command_module(case.command)
    layout = LAYOUTS[case.command](folder)
    inputs = [str(path) for flag, path in layout.inputs.items()]
    config_file = layout.inputs["--config"]
    layout.argv(folder, {flag: str(path) for flag, path in {**layout.inputs, **layout.outputs}.items()})
    settings = _edited(yaml.safe_load(config_file.read_text()), case, inputs, list(layout.outputs))
    config_file.write_bytes(_damaged(yaml.safe_dump(settings, allow_unicode=True), case.damage))
    overrides = [o.replace(INPUT, inputs[0]) for o in case.overrides]
    args = module.build_parser().parse_args(["--config", str(config_file), *(f"--set={o}" for o in overrides)])
    before = {p: hashlib.sha256(p.read_bytes()).digest() for p in folder.rglob("*") if p.is_file()}
    cwd = os.getcwd()
    try:
        os.chdir(folder)
        config = module.run.prepare(args)
    except UserError as error:
        message = str(error)
        assert "\n" not in message, f"a multi-line error: {message}"
        assert str(config_file) in message or "--set" in message, f"the error names no file or --set: {message}"
        return "error"
    finally:
        os.chdir(cwd)
        after = {p: hashlib.sha256(p.read_bytes()).digest() for p in folder.rglob("*") if p.is_file()}
        assert after == before, "checking a config changed or wrote a file"
    _accepted_config(config, module.run, folder)
    return "accepted"
