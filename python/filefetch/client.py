"""``python -m filefetch.client HOST PORT FILENAME``: a drop-in for the original ``client.py``.

Fetches FILENAME into the current directory; never overwrites an existing file and leaves
nothing behind when the transfer fails. Exits with status 1 on failure.
"""

import sys

from ._cli import client_main

if __name__ == "__main__":
    sys.exit(client_main())
