"""`retries` and `retry_delay` on every fetch function: a server that drops the first
connections is retried until it serves, a failure another attempt cannot cure is not
retried, and the values are checked by the library's rules."""

from __future__ import annotations

import asyncio
import math
import socket
import threading
import time
from pathlib import Path
from typing import Any, Callable

import pytest

import filefetch
from conftest import RawServer, read_request, response

StartRaw = Callable[[Callable[[socket.socket], object]], RawServer]

DATA = b"served on a later attempt\n"


class Flaky:
    """A handler that closes the first `drops` connections as soon as their request has
    arrived (no response: the client sees the server close), then serves DATA. Notes when
    each connection was accepted."""

    def __init__(self, drops: int, status: int = 1) -> None:
        self.drops = drops
        self.status = status
        self.lock = threading.Lock()
        self.accepted: list[float] = []

    def __call__(self, conn: socket.socket) -> None:
        with self.lock:
            self.accepted.append(time.monotonic())
            attempt = len(self.accepted)
        read_request(conn)
        if attempt <= self.drops:
            return  # closed without a response
        if self.status == 1:
            conn.sendall(response(1, DATA))
        else:
            conn.sendall(response(0))

    @property
    def connections(self) -> int:
        with self.lock:
            return len(self.accepted)


def call(kind: str, port: int, out: Path, **options: Any) -> bytes:
    """Fetches "f.txt" from 127.0.0.1:`port` with `kind`, one of the four fetch functions;
    returns the data (read back from the file for the functions that write one)."""
    if kind == "fetch":
        return filefetch.fetch("127.0.0.1", port, "f.txt", out, **options).read_bytes()
    if kind == "fetch_bytes":
        return filefetch.fetch_bytes("127.0.0.1", port, "f.txt", **options)
    if kind == "afetch":
        path = asyncio.run(filefetch.afetch("127.0.0.1", port, "f.txt", out, **options))
        return path.read_bytes()
    return asyncio.run(filefetch.afetch_bytes("127.0.0.1", port, "f.txt", **options))


KINDS = ["fetch", "fetch_bytes", "afetch", "afetch_bytes"]


@pytest.mark.parametrize("kind", KINDS)
def test_dropped_connections_are_retried_until_served(
    raw_server: StartRaw, out: Path, kind: str
) -> None:
    flaky = Flaky(drops=2)
    srv = raw_server(flaky)
    assert call(kind, srv.port, out, retries=2, retry_delay=0) == DATA
    assert flaky.connections == 3
    assert [p.name for p in out.iterdir()] == (["f.txt"] if kind.endswith("fetch") else [])


@pytest.mark.parametrize("kind", KINDS)
def test_the_last_failure_is_raised_when_the_retries_run_out(
    raw_server: StartRaw, out: Path, kind: str
) -> None:
    flaky = Flaky(drops=3)
    srv = raw_server(flaky)
    with pytest.raises(filefetch.ServerClosedError):
        call(kind, srv.port, out, retries=2, retry_delay=0)
    assert flaky.connections == 3
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("kind", ["fetch", "fetch_bytes"])
def test_no_retries_by_default(raw_server: StartRaw, out: Path, kind: str) -> None:
    flaky = Flaky(drops=1)
    srv = raw_server(flaky)
    with pytest.raises(filefetch.ServerClosedError):
        call(kind, srv.port, out)
    assert flaky.connections == 1


@pytest.mark.parametrize("kind", ["fetch", "fetch_bytes"])
def test_an_answer_is_not_retried(raw_server: StartRaw, out: Path, kind: str) -> None:
    # "No such file" is the server's answer: another attempt would get the same.
    flaky = Flaky(drops=0, status=0)
    srv = raw_server(flaky)
    with pytest.raises(filefetch.NotFoundError):
        call(kind, srv.port, out, retries=3, retry_delay=0)
    assert flaky.connections == 1


def test_the_first_wait_is_retry_delay(raw_server: StartRaw) -> None:
    # The wait is shortened by at most a quarter, so the second connection comes at least
    # 0.75 x 0.4 s after the first was accepted (a lower bound: slowness only adds to it).
    flaky = Flaky(drops=1)
    srv = raw_server(flaky)
    data = filefetch.fetch_bytes("127.0.0.1", srv.port, "f.txt", retries=1, retry_delay=0.4)
    assert data == DATA
    first, second = flaky.accepted
    assert second - first >= 0.3 * 0.99


def test_progress_starts_again_on_each_attempt(raw_server: StartRaw, out: Path) -> None:
    def cut_short(conn: socket.socket) -> None:
        read_request(conn)
        conn.sendall(response(1, DATA[:5], length=len(DATA)))

    calls = {"n": 0}

    def handler(conn: socket.socket) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            cut_short(conn)
        else:
            read_request(conn)
            conn.sendall(response(1, DATA))

    srv = raw_server(handler)
    seen: list[tuple[int, int]] = []
    path = filefetch.fetch(
        "127.0.0.1", srv.port, "f.txt", out, retries=1, retry_delay=0,
        progress=lambda received, total: seen.append((received, total)),
    )
    assert path.read_bytes() == DATA
    starts = [i for i, (received, _) in enumerate(seen) if received == 0]
    assert len(starts) == 2, seen
    assert seen[-1] == (len(DATA), len(DATA))


@pytest.mark.parametrize(
    ("keyword", "value"),
    [
        ("retries", -1),
        ("retries", 101),
        ("retries", 2**40),
        ("retries", 2**70),
        ("retry_delay", -0.5),
        ("retry_delay", math.nan),
        ("retry_delay", math.inf),
        ("retry_delay", 1e300),
    ],
)
@pytest.mark.parametrize("function", [*KINDS, "fetch_many"])
def test_invalid_values(out: Path, function: str, keyword: str, value: float) -> None:
    # Nothing listens on port 9: were the value accepted, the fetch would fail otherwise.
    options: dict[str, Any] = {keyword: value}
    with pytest.raises(filefetch.InvalidArgumentError) as info:
        # The asyncio functions check their arguments when called, before any await.
        if function == "fetch_many":
            filefetch.fetch_many("127.0.0.1", 9, ["f.txt"], out, **options)
        else:
            getattr(filefetch, function)("127.0.0.1", 9, "f.txt", **options)
    assert keyword in str(info.value)


def test_the_limits_are_accepted(raw_server: StartRaw) -> None:
    srv = raw_server(Flaky(drops=0))
    for retries, delay in [(100, 0), (0, 31_536_000)]:
        data = filefetch.fetch_bytes(
            "127.0.0.1", srv.port, "f.txt", retries=retries, retry_delay=delay
        )
        assert data == DATA
