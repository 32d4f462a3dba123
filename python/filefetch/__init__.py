"""Fetch and serve files over TCP with the 0x497E FileRequest/FileResponse protocol.

A faster, safer companion to the original ``server.py`` and ``client.py``, speaking the same
protocol and built on the Rust crate ``filefetch``::

    import filefetch

    path = filefetch.fetch("files.example.org", 5000, "report.pdf")   # -> Path("report.pdf")
    data = filefetch.fetch_bytes("files.example.org", 5000, "notes.txt", max_size=1 << 20)

    filefetch.serve(5000, root="/srv/files")        # blocks; Ctrl-C stops it

    with filefetch.Server(root="/srv/files") as server:   # 127.0.0.1, on a free port
        filefetch.fetch_bytes("127.0.0.1", server.port, "notes.txt")

Network and file work runs with the GIL released. Every exception is a :class:`Error`.
``python -m filefetch serve|fetch`` is the ``filefetch`` command's twin (same options, same
exit codes); ``python -m filefetch.server PORT`` and
``python -m filefetch.client HOST PORT FILENAME`` replace the original scripts.
"""

from __future__ import annotations

from ._errors import (
    AbortedError,
    ConnectError,
    DestinationExistsError,
    Error,
    IncompleteTransferError,
    InterruptedTransferError,
    InvalidArgumentError,
    LocalError,
    NotFoundError,
    ProtocolError,
    ServerClosedError,
    TimedOutError,
    TooLargeError,
)
from ._native import Server, fetch, fetch_bytes, serve

__all__ = [
    "AbortedError",
    "ConnectError",
    "DestinationExistsError",
    "Error",
    "IncompleteTransferError",
    "InterruptedTransferError",
    "InvalidArgumentError",
    "LocalError",
    "NotFoundError",
    "ProtocolError",
    "Server",
    "ServerClosedError",
    "TimedOutError",
    "TooLargeError",
    "fetch",
    "fetch_bytes",
    "serve",
]
