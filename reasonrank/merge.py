"""``python -m reasonrank.merge``, kept as documented; the command lives in :mod:`reasonrank.cli.merge`."""

import sys

from reasonrank.cli.merge import main

if __name__ == "__main__":
    sys.exit(main())
