"""Compile the Java client and Anserini program shipped in the package with javac + jar.

``python -m reasonrank.java_build``.

Output: ``$REASONRANK_CACHE/java/<Anserini jar>/reasonrank-anserini.jar`` unless ``--out`` says (see
:mod:`reasonrank.integrations.anserini`).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from reasonrank.errors import UserError, command
from reasonrank.integrations.anserini import JAVA_SOURCES, build, default_build_dir, java_command
from reasonrank.io.paths import check_paths, lies_inside, same_file


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m reasonrank.java_build", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=None, help="output folder (default: $REASONRANK_CACHE/java/ANSERINI-JAR)"
    )
    parser.add_argument("--clean", action="store_true", help="remove the output folder first")
    return parser


def run(args: argparse.Namespace) -> int:
    out = args.out or default_build_dir()
    check_paths([("the Java sources", JAVA_SOURCES)], [("--out", out)])
    if args.clean and (same_file(out, Path.cwd()) or lies_inside(JAVA_SOURCES, out) or lies_inside(Path.cwd(), out)):
        raise UserError(f"--clean would remove {out}, which holds the Java sources or the working folder: pass an "
                        "--out folder of its own")
    if args.clean:
        shutil.rmtree(out, ignore_errors=True)
    jar = build(out)
    print(f"built {jar}; run it with: {' '.join(java_command(jar))} --index ... --topics ... --output ...")
    return 0


main = command(build_parser, run)

if __name__ == "__main__":
    sys.exit(main())
