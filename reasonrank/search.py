"""``python -m reasonrank.search``, kept as documented; the command lives in :mod:`reasonrank.cli.search`."""

import sys

from reasonrank.cli.search import main

if __name__ == "__main__":
    sys.exit(main())
