"""The server's log never holds up serving: records reach the `logging` handlers through a
bounded queue, on a thread of their own ("filefetch-log"), in order. A full queue drops
records and the count is logged once it has drained; a server that stops first lets the
records queued so far be delivered."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Callable

import pytest

import filefetch
from conftest import WAIT

# The queue's capacity, as python/src/log.rs sets it.
CAPACITY = 1024

DROPPED = re.compile(r"(\d+) log records dropped: the logging handlers did not keep up$")

# Two workers: without a queue, two handlers that wait are enough to stop the server.
THREADS = 2


class Gated(logging.Handler):
    """Keeps the records; each waits in emit() until the gate opens (or, so that no test
    can hang on it, until twice the longest wait has passed)."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.gate.wait(2 * WAIT)
        self.records.append(record)

    def sent(self) -> list[str]:
        """The names of the connections logged as sent, in the order they were delivered."""
        return [
            m.group(1)
            for r in list(self.records)
            if (m := re.search(r' "([^"]*)": sent ', r.getMessage()))
        ]

    def dropped(self) -> list[int]:
        """The counts in the records that report dropped records."""
        return [
            int(m.group(1)) for r in list(self.records) if (m := DROPPED.search(r.getMessage()))
        ]


@pytest.fixture
def handler() -> Iterator[Gated]:
    """A Gated handler, its gate shut, on the "filefetch.server" logger at INFO, for one test."""
    logger = logging.getLogger("filefetch.server")
    handler = Gated()
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        handler.gate.set()
        logger.removeHandler(handler)
        logger.setLevel(level)


def fetch_all(server: filefetch.Server, names: list[str]) -> None:
    for name in names:
        assert filefetch.fetch_bytes("127.0.0.1", server.port, name) == b"hello, world\n"


def close_in_thread(
    server: filefetch.Server, handler: Gated, stop: str
) -> tuple[threading.Thread, list[int]]:
    """Stops `server` (by `stop`) from a thread; the second value receives how many records
    the handler held when that returned."""
    held: list[int] = []

    def run() -> None:
        if stop == "__exit__":
            server.__exit__(None, None, None)
        else:
            getattr(server, stop)()
        held.append(len(handler.records))

    closer = threading.Thread(target=run, daemon=True)
    closer.start()
    return closer, held


def test_a_stalled_handler_does_not_stop_the_server_and_drops_are_counted(
    files: Path, handler: Gated
) -> None:
    count = CAPACITY + 200
    with filefetch.Server(0, files, threads=THREADS) as server:
        # Every handler call waits for the gate meanwhile.
        fetch_all(server, ["hello.txt"] * count)
        handler.gate.set()
    sent = handler.sent()
    dropped = handler.dropped()
    # A burst of up to the queue's capacity is logged in full; the rest is counted.
    assert len(sent) >= CAPACITY
    assert sent == ["hello.txt"] * len(sent)
    assert len(dropped) == 1 and dropped[0] > 0, dropped
    assert len(sent) + dropped[0] == count
    warning = handler.records[-1]
    assert DROPPED.search(warning.getMessage())
    assert (warning.name, warning.levelno) == ("filefetch.server", logging.WARNING)


def test_records_are_delivered_in_order_on_the_logging_thread(
    files: Path, handler: Gated
) -> None:
    names = [f"n{i:03}.txt" for i in range(100)]
    for name in names:
        (files / name).write_bytes(b"hello, world\n")
    handler.gate.set()
    # One worker: a connection is logged as it is closed, before the next one is served.
    with filefetch.Server(0, files, threads=1) as server:
        fetch_all(server, names)
    assert handler.sent() == names
    assert {r.threadName for r in handler.records} == {"filefetch-log"}
    assert {(r.name, r.levelno) for r in handler.records} == {("filefetch.server", logging.INFO)}
    assert handler.dropped() == []


@pytest.mark.parametrize("stop", ["close", "shutdown", "__exit__"])
def test_stopping_delivers_the_queued_records_first(
    files: Path, handler: Gated, stop: str
) -> None:
    count = 50
    server = filefetch.Server(0, files, threads=THREADS)
    try:
        fetch_all(server, ["hello.txt"] * count)
        # The records wait in the queue; the stop waits for them, and the gate opens then.
        closer, held = close_in_thread(server, handler, stop)
        closer.join(0.2)
        handler.gate.set()
        closer.join(WAIT)
        assert not closer.is_alive()
    finally:
        server.close()
    assert held == [count]
    assert handler.sent() == ["hello.txt"] * count


def test_a_wedged_handler_does_not_hang_the_stop(files: Path, handler: Gated) -> None:
    server = filefetch.Server(0, files, threads=THREADS)
    try:
        fetch_all(server, ["hello.txt"] * 3)
        # The gate stays shut: the stop gives up on the records after a while.
        closer, held = close_in_thread(server, handler, "close")
        closer.join(WAIT)
        assert not closer.is_alive()
        assert server.closed
    finally:
        handler.gate.set()
        server.close()
    assert held == [0]
    # Delivered late, once the gate opens: not to a logger another test set up.
    assert wait_until(lambda: len(handler.sent()) == 3), handler.sent()


def wait_until(predicate: Callable[[], bool]) -> bool:
    deadline = time.monotonic() + WAIT
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True
