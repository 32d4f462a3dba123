"""Fetch and serve files over TCP with the 0x497E FileRequest/FileResponse protocol.

A faster, safer companion to the original ``server.py`` and ``client.py``, speaking the same
protocol and built on the Rust crate ``filefetch``::

    import filefetch

    path = filefetch.fetch("files.example.org", 5000, "report.pdf")   # -> Path("report.pdf")
    data = filefetch.fetch_bytes("files.example.org", 5000, "notes.txt")

    filefetch.serve(5000, root="/srv/files")        # blocks; Ctrl-C stops it

    with filefetch.Server(root="/srv/files") as server:   # in the background, on a free port
        filefetch.fetch_bytes("127.0.0.1", server.port, "notes.txt")

Network and file work runs with the GIL released. Every exception is a :class:`Error`.
The command lines ``python -m filefetch.server PORT`` and
``python -m filefetch.client HOST PORT FILENAME`` replace the original scripts.
"""

from __future__ import annotations

from ._errors import (
    ConnectError,
    DestinationExistsError,
    Error,
    IncompleteTransferError,
    InvalidArgumentError,
    LocalError,
    NotFoundError,
    ProtocolError,
    ServerClosedError,
    TimedOutError,
)
from ._native import Server, fetch, fetch_bytes, serve

__all__ = [
    "ConnectError",
    "DestinationExistsError",
    "Error",
    "IncompleteTransferError",
    "InvalidArgumentError",
    "LocalError",
    "NotFoundError",
    "ProtocolError",
    "Server",
    "ServerClosedError",
    "TimedOutError",
    "fetch",
    "fetch_bytes",
    "serve",
]
