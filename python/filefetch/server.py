"""``python -m filefetch.server PORT``: a drop-in for the original ``server.py``.

Serves the files of the current directory on every IPv4 address, many clients at once,
confined to the directory, until Ctrl-C. Port 0 picks a free port (printed at start).
"""

import sys

from ._cli import server_main

if __name__ == "__main__":
    sys.exit(server_main())
