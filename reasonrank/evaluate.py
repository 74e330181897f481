"""``python -m reasonrank.evaluate``, kept as documented; the command lives in :mod:`reasonrank.cli.evaluate`."""

import sys

from reasonrank.cli.evaluate import main

if __name__ == "__main__":
    sys.exit(main())
