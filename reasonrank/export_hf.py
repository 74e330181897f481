"""``python -m reasonrank.export_hf``; the command lives in :mod:`reasonrank.cli.export_hf`."""

import sys

from reasonrank.cli.export_hf import main

if __name__ == "__main__":
    sys.exit(main())
