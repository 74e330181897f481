"""``python -m reasonrank <command>``: see :mod:`reasonrank.cli`."""

import sys

from reasonrank.cli import main

if __name__ == "__main__":
    sys.exit(main())
