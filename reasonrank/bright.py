"""``python -m reasonrank.bright``, kept as documented; the command lives in :mod:`reasonrank.cli.bright`."""

import sys

from reasonrank.cli.bright import main

if __name__ == "__main__":
    sys.exit(main())
