"""Fetch and serve files over TCP with the 0x497E FileRequest/FileResponse protocol.

A faster, safer companion to the original ``server.py`` and ``client.py``, speaking the same
protocol and built on the Rust crate ``filefetch``::

    import filefetch

    path = filefetch.fetch("files.example.org", 5000, "report.pdf")   # -> Path("report.pdf")
    data = filefetch.fetch_bytes("files.example.org", 5000, "notes.txt", max_size=1 << 20)
    path = filefetch.fetch("files.example.org", 5000, "big.iso", retries=3)  # up to 4 attempts

    # Several files, 4 at a time, into a directory; one result per name, in order.
    for result in filefetch.fetch_many("files.example.org", 5000, ["a.txt", "b.txt"], "out/"):
        print(result.name, result.path if result.ok else result.error)

    filefetch.serve(5000, root="/srv/files")        # blocks; Ctrl-C stops it
    filefetch.serve(5000, root="/srv/files", allow=["10.0.0.0/8"], rate_limit=1 << 20)

    with filefetch.Server(root="/srv/files") as server:   # 127.0.0.1, on a free port
        filefetch.fetch_bytes("127.0.0.1", server.port, "notes.txt")

    # In asyncio: the same arguments, results and exceptions.
    async with filefetch.AsyncServer(root="/srv/files") as server:
        data = await filefetch.afetch_bytes("127.0.0.1", server.port, "notes.txt")
        path = await filefetch.afetch("127.0.0.1", server.port, "notes.txt", "downloads/")
        await server.shutdown()

Network and file work runs with the GIL released. Every exception is a :class:`Error`.
``filefetch-py serve|fetch`` (also ``python -m filefetch serve|fetch``) is the ``filefetch``
command's twin (same options, same exit codes); ``python -m filefetch.server PORT`` and
``python -m filefetch.client HOST PORT FILENAME`` replace the original scripts.
"""

from __future__ import annotations

from ._errors import (
    ChecksumMismatchError,
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
from ._many import FetchResult
from ._native import (
    AsyncServer,
    Server,
    afetch,
    afetch_bytes,
    fetch,
    fetch_bytes,
    fetch_many,
    serve,
)

__all__ = [
    "ChecksumMismatchError",
    "AbortedError",
    "AsyncServer",
    "ConnectError",
    "DestinationExistsError",
    "Error",
    "FetchResult",
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
    "afetch",
    "afetch_bytes",
    "fetch",
    "fetch_bytes",
    "fetch_many",
    "serve",
]
