"""``python -m reasonrank.serve``, kept as documented; the command lives in :mod:`reasonrank.cli.serve`."""

import sys

from reasonrank.cli.serve import main

if __name__ == "__main__":
    sys.exit(main())
