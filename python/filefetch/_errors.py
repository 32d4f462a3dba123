"""The exceptions of filefetch.

Every exception filefetch raises is a :class:`filefetch.Error`. Most also derive from the
builtin exception a Python program would already catch for the same situation, so
``except FileNotFoundError:`` or ``except TimeoutError:`` work as expected.
"""

from __future__ import annotations

__all__ = [
    "ChecksumMismatchError",
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
    "ServerClosedError",
    "TimedOutError",
    "TooLargeError",
]


class Error(Exception):
    """Root of every exception raised by filefetch."""

    def __str__(self) -> str:
        # The message alone, also for the OSError subclasses, whose own __str__ would
        # rebuild it from errno, strerror and filename.
        if len(self.args) == 1:
            return str(self.args[0])
        return super().__str__()


class NotFoundError(Error, FileNotFoundError):
    """The server answered that it has no such file (or may not serve it).

    ``filename`` is the name that was requested.
    """


class DestinationExistsError(Error, FileExistsError):
    """The destination exists and ``overwrite`` was not asked for; it was left untouched.

    ``filename`` is the destination.
    """


class TimedOutError(Error, TimeoutError):
    """A timeout or time limit expired: no data within ``timeout``, no connection within
    ``connect_timeout``, the whole fetch past ``max_time``, or data slower than
    ``speed_limit`` over ``speed_time``."""


class ConnectError(Error, ConnectionError):
    """The host could not be resolved, or no connection could be made to it."""


class ProtocolError(Error):
    """The server's response was not a valid FileResponse, or carried the wrong amount of data."""


class ServerClosedError(ProtocolError, ConnectionError):
    """The server closed the connection without sending a response.

    The original ``server.py`` does this when it has no such file. Both a
    :class:`ProtocolError` and a ``ConnectionError``, as ``http.client.RemoteDisconnected``
    is; ``errno`` and ``filename`` are None.
    """


class IncompleteTransferError(ProtocolError):
    """The connection ended before all the announced data arrived.

    ``received`` and ``expected`` are the numbers of data bytes that arrived and that the
    server announced.
    """

    received: int
    expected: int

    def __init__(self, message: str, received: int, expected: int) -> None:
        super().__init__(message)
        self.received = received
        self.expected = expected


class TooLargeError(Error):
    """The server announced a file larger than ``max_size``; none of it was read.

    ``size`` is the announced size and ``limit`` the ``max_size`` asked for, in bytes.
    """

    size: int
    limit: int

    def __init__(self, message: str, size: int, limit: int) -> None:
        super().__init__(message)
        self.size = size
        self.limit = limit


class ChecksumMismatchError(Error):
    """The data received does not have the SHA-256 digest asked for; nothing was kept.

    ``expected`` and ``actual`` are the two digests, in lowercase hex.
    """

    expected: str
    actual: str


class InvalidArgumentError(Error, ValueError):
    """An argument was out of range, named in the message: a port, a timeout, a count, a
    file name the protocol cannot carry."""


class LocalError(Error, OSError):
    """A local file or socket operation failed: writing the download, binding the server's port,
    opening its root directory. ``errno`` and ``filename`` are set when known."""


class AbortedError(Error):
    """The transfer was stopped from the progress callback.

    Normally the callback's own exception propagates instead; this is raised only should
    there be none to raise.
    """


class InterruptedTransferError(Error):
    """The transfer was stopped by a signal (Ctrl-C).

    Normally the signal handler's own exception (``KeyboardInterrupt``) propagates instead;
    this is raised only should there be none to raise. (Not named ``InterruptedError``, the
    builtin for an interrupted system call, which ``from filefetch import *`` would hide.)
    """
