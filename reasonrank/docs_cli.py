"""``python -m reasonrank.docs_cli``, kept as documented; the command lives in :mod:`reasonrank.cli.docs_cli`."""

import sys

from reasonrank.cli.docs_cli import main

if __name__ == "__main__":
    sys.exit(main())
