"""The built wheel carries everything the commands read at run time, and its `java-build` finds its sources."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from reasonrank.retrieval.java import find_java

ROOT = Path(__file__).resolve().parents[1]
PROJECT_FILES = ("pyproject.toml", "setup.cfg", "README.md")
RUN_TIME_DATA = ("reasonrank/data", "reasonrank/prompts", "reasonrank/models", "reasonrank/integrations/java/src")


def _run(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, timeout=300, check=False, **kwargs)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel pip builds from a copy of the project (so the build leaves nothing in the checkout)."""
    source = tmp_path_factory.mktemp("source")
    for name in PROJECT_FILES:
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(ROOT / "reasonrank", source / "reasonrank", ignore=shutil.ignore_patterns("__pycache__"))
    dist = tmp_path_factory.mktemp("dist")
    built = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                  "--quiet", str(source), "-w", str(dist)])
    assert built.returncode == 0, built.stderr
    (path,) = dist.glob("reasonrank-*.whl")
    return path


def _tree_files(folder: str) -> set[str]:
    return {
        path.relative_to(ROOT).as_posix()
        for path in (ROOT / folder).rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }


def test_the_wheel_holds_the_java_sources_prompts_bundled_data_and_models(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for folder in RUN_TIME_DATA:
        expected = _tree_files(folder)
        assert expected, folder
        assert expected <= names, f"{folder}: missing {sorted(expected - names)[:5]}"
    assert "reasonrank/integrations/java/src/io/reasonrank/anserini/SearchAndRerank.java" in names
    assert "reasonrank/data/msmarco-dl19-mini/corpus.jsonl" in names
    assert any(name.startswith("reasonrank/prompts/") and name.endswith(".yaml") for name in names)


def test_java_build_from_the_installed_wheel_compiles_its_own_sources(wheel, tmp_path):
    site = tmp_path / "site"
    installed = _run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--quiet",
                      "--target", str(site), str(wheel)])
    assert installed.returncode == 0, installed.stderr
    # Only the installed copy on the path, run from a folder with no checkout around it.
    env = {**os.environ, "PYTHONPATH": str(site), "REASONRANK_CACHE": str(tmp_path / "cache")}
    where = _run([sys.executable, "-c", "import reasonrank; print(reasonrank.__file__)"], env=env, cwd=tmp_path)
    assert Path(where.stdout.strip()).is_relative_to(site), where.stdout + where.stderr
    out = tmp_path / "jar"
    built = _run([sys.executable, "-m", "reasonrank", "java-build", "--out", str(out)], env=env, cwd=tmp_path)
    if find_java().javac is None:  # a runtime without a compiler: the command got past finding its sources
        assert built.returncode == 2 and "has no javac" in built.stderr, built.stderr
        return
    assert built.returncode == 0, built.stderr
    jar = out / "reasonrank-anserini.jar"
    classes = set(zipfile.ZipFile(jar).namelist())
    assert "io/reasonrank/anserini/SearchAndRerank.class" in classes
    assert str(jar) in built.stdout
