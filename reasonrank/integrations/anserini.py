"""Anserini: the Java client and Anserini program, compiled with javac + jar, and how to run them.

The sources are package data (``reasonrank/integrations/java/src``), so an installed wheel builds the same program
as a checkout. Compiled against the Anserini fat jar inside the installed Pyserini wheel, with the JDK that
:func:`reasonrank.retrieval.java.find_java` picks; nothing is downloaded. The command is ``python -m
reasonrank.java_build``; output: ``$REASONRANK_CACHE/java/<Anserini jar>/reasonrank-anserini.jar``, one jar per
Anserini version, since a jar compiled against one Anserini does not link against another.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import tempfile
from pathlib import Path

from reasonrank.errors import UserError
from reasonrank.io.corpus import cache_root
from reasonrank.retrieval.java import MIN_JAVA, JavaRuntime, find_java

JAVA_SOURCES = Path(__file__).resolve().parent / "java" / "src"
JAR_NAME = "reasonrank-anserini.jar"
MAIN_CLASS = "io.reasonrank.anserini.SearchAndRerank"


def anserini_jar() -> Path:
    """The Anserini fat jar shipped in the Pyserini wheel (found without importing Pyserini)."""
    spec = importlib.util.find_spec("pyserini")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("pyserini is not installed, so there is no Anserini jar to compile against: run `make setup`")
    folder = Path(next(iter(spec.submodule_search_locations))) / "resources" / "jars"
    jars = sorted(folder.glob("anserini-*-fatjar.jar"))
    if not jars:
        raise UserError(f"no anserini-*-fatjar.jar in {folder}: reinstall pyserini")
    return jars[-1]


def _javac(runtime: JavaRuntime) -> Path:
    if runtime.javac is None or not (runtime.home / "bin" / "jar").is_file():
        raise UserError(
            f"the Java {runtime.version} at {runtime.home} ({runtime.source}) has no javac: the Java program needs a "
            f"JDK {MIN_JAVA}+ (e.g. apt-get install openjdk-21-jdk-headless, or set JAVA_HOME to one)"
        )
    return runtime.javac


def default_build_dir() -> Path:
    """Where the jar goes unless told: the cache, one folder per Anserini jar it was compiled against."""
    return cache_root() / "java" / anserini_jar().stem


def build(out_dir: Path | None = None) -> Path:
    """Compile the Java sources into ``out_dir/reasonrank-anserini.jar`` and return its path."""
    out_dir = out_dir or default_build_dir()
    sources = sorted(str(p) for p in JAVA_SOURCES.rglob("*.java"))
    if not sources:
        raise UserError(f"no Java sources under {JAVA_SOURCES}: reinstall reasonrank (its wheel ships them)")
    runtime = find_java()
    javac = _javac(runtime)
    classpath = anserini_jar()
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir) as classes:
        compiled = subprocess.run(
            [str(javac), "--release", str(MIN_JAVA), "-encoding", "UTF-8", "-Xlint:all,-processing", "-Werror",
             "-cp", str(classpath), "-d", classes, *sources],
            capture_output=True, text=True, check=False,
        )
        if compiled.returncode != 0:
            sys.stderr.write(compiled.stderr)  # the compiler's messages are the useful part; they span lines
            raise UserError(f"javac could not compile {JAVA_SOURCES} against {classpath.name}: see its messages above")
        jar = out_dir / JAR_NAME
        packed = subprocess.run(
            [str(runtime.home / "bin" / "jar"), "--create", "--file", str(jar), "--main-class", MAIN_CLASS,
             "-C", classes, "."],
            capture_output=True, text=True, check=False,
        )
        if packed.returncode != 0:
            raise UserError(f"jar failed: {packed.stderr.strip()}")
    return jar


def java_command(jar: Path, main_class: str = MAIN_CLASS) -> list[str]:
    """The ``java -cp ... MAIN`` prefix that runs a class of the built jar next to the Anserini fat jar."""
    runtime = find_java()
    java = runtime.home / "bin" / "java"
    options = ["--add-modules", "jdk.incubator.vector"] if runtime.has_vector_module else []
    return [str(java), *options, "-cp", f"{jar}:{anserini_jar()}", main_class]
