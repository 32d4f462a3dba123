"""The exceptions of filefetch.

Every exception filefetch raises is a :class:`filefetch.Error`. Most also derive from the
builtin exception a Python program would already catch for the same situation, so
``except FileNotFoundError:`` or ``except TimeoutError:`` work as expected.
"""

from __future__ import annotations

__all__ = [
    "ConnectError",
    "DestinationExistsError",
    "Error",
    "IncompleteTransferError",
    "InvalidArgumentError",
    "LocalError",
    "NotFoundError",
    "ProtocolError",
    "ServerClosedError",
    "TimedOutError",
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
    """No data arrived within the timeout, or the connection could not be made in time."""


class ConnectError(Error, ConnectionError):
    """The host could not be resolved, or no connection could be made to it."""


class ServerClosedError(Error, ConnectionError):
    """The server closed the connection without sending a response.

    The original ``server.py`` does this when it has no such file.
    """


class ProtocolError(Error):
    """The server's response was not a valid FileResponse, or carried the wrong amount of data."""


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


class InvalidArgumentError(Error, ValueError):
    """An argument was out of range: a port, a timeout, a file name the protocol cannot carry."""


class LocalError(Error, OSError):
    """A local file or socket operation failed: writing the download, binding the server's port,
    opening its root directory. ``errno`` and ``filename`` are set when known."""
