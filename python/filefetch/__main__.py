"""``python -m filefetch serve PORT`` or ``python -m filefetch fetch HOST PORT NAME``: the
``filefetch-py`` command."""

import sys

from ._cli import main

if __name__ == "__main__":
    sys.exit(main(prog="python -m filefetch"))
