"""``python -m reasonrank.java_build``, kept as documented; the command lives in :mod:`reasonrank.cli.java_build`."""

import sys

from reasonrank.cli.java_build import main

if __name__ == "__main__":
    sys.exit(main())
