"""The limits of a fetch: max_size, max_time, speed_limit over speed_time; and fetch_bytes,
which receives straight into the bytes object it returns."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest

import filefetch
from conftest import WAIT, RawServer, read_request, response

StartRaw = Callable[[Callable[[socket.socket], object]], RawServer]

MIB = 1 << 20


@pytest.fixture
def several_mib(files: Path) -> bytes:
    """The contents of `four-mib.bin`, served from `files`."""
    data = os.urandom(4 * MIB + 123)
    (files / "four-mib.bin").write_bytes(data)
    return data


def test_fetch_bytes_of_several_mib(server: filefetch.Server, several_mib: bytes) -> None:
    data = filefetch.fetch_bytes("127.0.0.1", server.port, "four-mib.bin", timeout=WAIT)
    assert type(data) is bytes
    assert data == several_mib


def test_max_size(server: filefetch.Server, several_mib: bytes, out: Path) -> None:
    size = len(several_mib)
    with pytest.raises(filefetch.TooLargeError) as info:
        filefetch.fetch_bytes("127.0.0.1", server.port, "four-mib.bin", max_size=size - 1)
    assert (info.value.size, info.value.limit) == (size, size - 1)
    assert str(info.value) == f"file is {size} bytes, more than the {size - 1}-byte maximum"

    with pytest.raises(filefetch.TooLargeError):
        filefetch.fetch("127.0.0.1", server.port, "four-mib.bin", out, max_size=size - 1)
    assert os.listdir(out) == []

    exact = filefetch.fetch_bytes("127.0.0.1", server.port, "four-mib.bin", max_size=size)
    assert exact == several_mib
    path = filefetch.fetch("127.0.0.1", server.port, "four-mib.bin", out, max_size=size)
    assert path.read_bytes() == several_mib
    assert filefetch.fetch_bytes("127.0.0.1", server.port, "empty.bin", max_size=0) == b""


def test_max_size_refuses_before_any_data(raw_server: StartRaw, out: Path) -> None:
    # The header announces a mebibyte that never comes: waiting for it would end in a
    # timeout after WAIT seconds, not in TooLargeError.
    release = threading.Event()

    def announces(conn: socket.socket) -> None:
        read_request(conn)
        conn.sendall(response(1, length=MIB))
        release.wait(WAIT)

    srv = raw_server(announces)
    try:
        with pytest.raises(filefetch.TooLargeError):
            filefetch.fetch_bytes("127.0.0.1", srv.port, "x.bin", timeout=WAIT, max_size=1000)
        with pytest.raises(filefetch.TooLargeError):
            filefetch.fetch("127.0.0.1", srv.port, "x.bin", out, timeout=WAIT, max_size=1000)
    finally:
        release.set()
    assert os.listdir(out) == []


@pytest.fixture
def trickle(raw_server: StartRaw) -> Iterator[int]:
    """A server that announces a mebibyte, then sends one byte every 0.2 s (for WAIT seconds
    at most, until the client goes); yields its port."""
    done = threading.Event()

    def trickles(conn: socket.socket) -> None:
        read_request(conn)
        try:
            conn.sendall(response(1, length=MIB))
            for _ in range(int(WAIT / 0.2)):
                conn.sendall(b"x")
                if done.wait(0.2):
                    return
        except OSError:
            pass  # the client gave up

    srv = raw_server(trickles)
    yield srv.port
    done.set()


# Data keeps arriving, so the idle timeout (5 s) never expires; only the limit under test can
# end the fetch (and WAIT bounds the server should it not).
LIMITS: dict[str, tuple[dict[str, Any], str]] = {
    "max_time": ({"max_time": 1.0}, "limit on the whole fetch"),
    "speed_limit": ({"speed_limit": 1000, "speed_time": 1.0}, "bytes/s"),
}


@pytest.mark.parametrize("limit", sorted(LIMITS))
def test_slow_transfer_times_out(trickle: int, out: Path, limit: str) -> None:
    options, words = LIMITS[limit]
    with pytest.raises(filefetch.TimedOutError, match=words):
        filefetch.fetch_bytes("127.0.0.1", trickle, "slow.bin", timeout=5, **options)
    with pytest.raises(TimeoutError, match=words):
        filefetch.fetch("127.0.0.1", trickle, "slow.bin", out, timeout=5, **options)
    assert os.listdir(out) == []


def test_limits_that_are_off(server: filefetch.Server, files: Path) -> None:
    expected = (files / "one-mib.bin").read_bytes()
    got = filefetch.fetch_bytes(
        "127.0.0.1", server.port, "one-mib.bin",
        connect_timeout=WAIT, max_time=None, speed_limit=0, speed_time=0.5, max_size=None,
    )
    assert got == expected
