"""``python -m reasonrank.java_build``: compile the Java client and Anserini program in ``java/`` with javac + jar.

Output: ``java/build/reasonrank-anserini.jar`` (see :mod:`reasonrank.integrations.anserini`).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from reasonrank.errors import UserError, report_error
from reasonrank.integrations.anserini import JAVA_DIR, build, java_command


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reasonrank.java_build", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: java/build)")
    parser.add_argument("--clean", action="store_true", help="remove the output folder first")
    args = parser.parse_args(argv)
    try:
        out = args.out or JAVA_DIR / "build"
        if args.clean:
            shutil.rmtree(out, ignore_errors=True)
        jar = build(out)
    except UserError as error:
        return report_error(error)
    print(f"built {jar}; run it with: {' '.join(java_command(jar))} --index ... --topics ... --output ...")
    return 0


if __name__ == "__main__":
    sys.exit(main())
