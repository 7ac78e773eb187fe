"""``python -m functrain``: the ``functrain`` command (see :mod:`functrain.cli`)."""

import sys

from functrain.cli import main

if __name__ == "__main__":
    sys.exit(main())
