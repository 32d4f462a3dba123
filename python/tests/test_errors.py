"""Each exception in the situation it describes, with nothing left behind."""

from __future__ import annotations

import errno
import math
import os
import socket
import threading
from pathlib import Path
from typing import Callable

import pytest

import filefetch
from conftest import WAIT, RawServer, free_port, read_request, response

StartRaw = Callable[[Callable[[socket.socket], object]], RawServer]


def test_hierarchy() -> None:
    pairs = [
        (filefetch.NotFoundError, FileNotFoundError),
        (filefetch.DestinationExistsError, FileExistsError),
        (filefetch.TimedOutError, TimeoutError),
        (filefetch.ConnectError, ConnectionError),
        (filefetch.ServerClosedError, ConnectionError),
        (filefetch.ServerClosedError, filefetch.ProtocolError),
        (filefetch.InvalidArgumentError, ValueError),
        (filefetch.LocalError, OSError),
        (filefetch.IncompleteTransferError, filefetch.ProtocolError),
        (filefetch.TooLargeError, filefetch.Error),
        (filefetch.AbortedError, filefetch.Error),
        (filefetch.InterruptedTransferError, filefetch.Error),
    ]
    for leaf, builtin in pairs:
        assert issubclass(leaf, filefetch.Error) and issubclass(leaf, builtin)
    # Not the builtin InterruptedError (an OSError for EINTR), which `import *` would hide.
    assert not issubclass(filefetch.InterruptedTransferError, OSError)


def test_not_found(server: filefetch.Server, out: Path) -> None:
    with pytest.raises(FileNotFoundError) as info:
        filefetch.fetch("127.0.0.1", server.port, "missing.txt", out)
    assert isinstance(info.value, filefetch.NotFoundError)
    assert info.value.filename == "missing.txt"
    assert str(info.value) == "server has no such file: missing.txt"
    with pytest.raises(filefetch.NotFoundError):
        filefetch.fetch_bytes("127.0.0.1", server.port, "missing.txt")
    assert os.listdir(out) == []


def test_destination_exists(server: filefetch.Server, out: Path) -> None:
    dest = out / "hello.txt"
    dest.write_bytes(b"mine")
    with pytest.raises(FileExistsError) as info:
        filefetch.fetch("127.0.0.1", server.port, "hello.txt", out)
    assert isinstance(info.value, filefetch.DestinationExistsError)
    assert info.value.filename == str(dest)
    assert "destination exists" in str(info.value)
    assert dest.read_bytes() == b"mine"
    assert os.listdir(out) == ["hello.txt"]


def test_timeout(raw_server: StartRaw, out: Path) -> None:
    release = threading.Event()

    def silent(conn: socket.socket) -> None:
        read_request(conn)
        release.wait(WAIT)

    srv = raw_server(silent)
    try:
        with pytest.raises(TimeoutError) as info:
            filefetch.fetch("127.0.0.1", srv.port, "slow.txt", out, timeout=0.2)
        assert isinstance(info.value, filefetch.TimedOutError)
        assert "timed out" in str(info.value)
        with pytest.raises(filefetch.TimedOutError):
            filefetch.fetch_bytes("127.0.0.1", srv.port, "slow.txt", timeout=0.2)
    finally:
        release.set()
    assert os.listdir(out) == []


def test_timeout_mid_transfer(raw_server: StartRaw, out: Path) -> None:
    release = threading.Event()

    def stalls(conn: socket.socket) -> None:
        read_request(conn)
        conn.sendall(response(1, b"x" * 10, length=100))
        release.wait(WAIT)

    srv = raw_server(stalls)
    try:
        with pytest.raises(filefetch.TimedOutError):
            filefetch.fetch("127.0.0.1", srv.port, "slow.txt", out, timeout=0.2)
    finally:
        release.set()
    assert os.listdir(out) == []


def test_connection_refused(out: Path) -> None:
    port = free_port()
    with pytest.raises(ConnectionError) as info:
        filefetch.fetch("127.0.0.1", port, "hello.txt", out)
    assert isinstance(info.value, filefetch.ConnectError)
    assert info.value.errno == errno.ECONNREFUSED
    assert "cannot connect" in str(info.value)
    assert os.listdir(out) == []


def test_unknown_host(out: Path) -> None:
    with pytest.raises(filefetch.ConnectError, match="cannot resolve"):
        filefetch.fetch("no-such-host.invalid", 5000, "hello.txt", out)


def test_server_closed(raw_server: StartRaw, out: Path) -> None:
    srv = raw_server(read_request)  # reads the request, then closes: like server.py on a miss
    with pytest.raises(ConnectionError) as info:
        filefetch.fetch("127.0.0.1", srv.port, "gone.txt", out)
    assert isinstance(info.value, filefetch.ServerClosedError)
    assert isinstance(info.value, filefetch.ProtocolError)
    assert "closed the connection" in str(info.value)
    # An OSError's attributes, as a ConnectionError has them.
    assert info.value.errno is None and info.value.filename is None
    with pytest.raises(filefetch.ProtocolError):
        filefetch.fetch_bytes("127.0.0.1", srv.port, "gone.txt")
    assert os.listdir(out) == []


@pytest.mark.parametrize(
    "reply, words",
    [
        (b"\x12\x34\x02\x01\x00\x00\x00\x00", "magic"),
        (b"\x49\x7e\x01\x01\x00\x00\x00\x00", "type"),
        (b"\x49\x7e\x02\x07\x00\x00\x00\x00", "status"),
        (b"\x49\x7e\x02", "cut short"),
        (response(1, b"12345678", length=3), "more data"),
    ],
)
def test_malformed_response(raw_server: StartRaw, out: Path, reply: bytes, words: str) -> None:
    def bad(conn: socket.socket) -> None:
        read_request(conn)
        conn.sendall(reply)

    srv = raw_server(bad)
    with pytest.raises(filefetch.ProtocolError, match=words) as info:
        filefetch.fetch("127.0.0.1", srv.port, "x.bin", out)
    assert type(info.value) is filefetch.ProtocolError
    assert "malformed response" in str(info.value)
    assert os.listdir(out) == []


def test_incomplete_transfer(raw_server: StartRaw, out: Path) -> None:
    def short(conn: socket.socket) -> None:
        read_request(conn)
        conn.sendall(response(1, b"x" * 10, length=100))

    srv = raw_server(short)
    with pytest.raises(filefetch.IncompleteTransferError) as info:
        filefetch.fetch("127.0.0.1", srv.port, "x.bin", out)
    assert (info.value.received, info.value.expected) == (10, 100)
    assert str(info.value) == "transfer incomplete: 10 of 100 bytes"
    with pytest.raises(filefetch.ProtocolError):
        filefetch.fetch_bytes("127.0.0.1", srv.port, "x.bin")
    assert os.listdir(out) == []


@pytest.mark.parametrize(
    "call",
    [
        lambda port: filefetch.fetch("127.0.0.1", port, "", "x"),
        lambda port: filefetch.fetch("127.0.0.1", port, "a" * 1025, "x"),
        lambda port: filefetch.fetch("127.0.0.1", port, "dir/"),
        lambda port: filefetch.fetch("127.0.0.1", 0, "hello.txt"),
        lambda port: filefetch.fetch("127.0.0.1", 70000, "hello.txt"),
        lambda port: filefetch.fetch("127.0.0.1", port, "hello.txt", timeout=0),
        lambda port: filefetch.fetch("127.0.0.1", port, "hello.txt", timeout=-1.0),
        lambda port: filefetch.fetch_bytes("127.0.0.1", port, "hello.txt", timeout=math.nan),
        lambda port: filefetch.fetch_bytes("127.0.0.1", port, "hello.txt", timeout=math.inf),
        lambda port: filefetch.fetch_bytes("127.0.0.1", -1, "hello.txt"),
        lambda port: filefetch.Server(-1),
        lambda port: filefetch.Server(0, request_timeout=0),
        lambda port: filefetch.Server(0, max_connections=0),
        lambda port: filefetch.serve(65536),
    ],
)
def test_invalid_arguments(server: filefetch.Server, out: Path,
                           monkeypatch: pytest.MonkeyPatch, call: Callable[[int], object]) -> None:
    monkeypatch.chdir(out)
    with pytest.raises(ValueError) as info:
        call(server.port)
    assert isinstance(info.value, filefetch.InvalidArgumentError)
    assert os.listdir(out) == []


# Integers beyond any Rust type and numbers of seconds beyond any float or duration: each is
# InvalidArgumentError naming the keyword, never a bare OverflowError from the conversion.
OUT_OF_RANGE: list[tuple[str, object]] = [
    ("timeout", 1e19),
    ("timeout", 2**2000),
    ("timeout", -(2**2000)),
    ("connect_timeout", 0),
    ("connect_timeout", math.inf),
    ("max_time", 0),
    ("max_time", 1e19),
    ("speed_limit", -1),
    ("speed_limit", 2**70),
    ("speed_time", -1.0),
    ("max_size", -1),
    ("max_size", 2**64),
    ("max_size", 2**200),
]

SERVER_OUT_OF_RANGE: list[tuple[str, object]] = [
    ("port", 2**70),
    ("port", -(2**200)),
    ("max_connections", 2**70),
    ("max_connections", 2**32),
    ("threads", -1),
    ("threads", 2**64),
    ("threads", 1025),
    ("request_timeout", 1e19),
    ("send_timeout", 2**1100),
    ("grace_period", 1e19),
    ("file_cache", -(2**1100)),
]


@pytest.mark.parametrize(("keyword", "value"), OUT_OF_RANGE)
@pytest.mark.parametrize("function", ["fetch", "fetch_bytes"])
def test_fetch_numbers_out_of_range(server: filefetch.Server, out: Path, function: str,
                                    keyword: str, value: object) -> None:
    call = getattr(filefetch, function)
    with pytest.raises(filefetch.InvalidArgumentError) as info:
        call("127.0.0.1", server.port, "hello.txt", **{keyword: value})
    assert f"invalid {keyword}:" in str(info.value)
    assert os.listdir(out) == []


@pytest.mark.parametrize("port", [2**70, -(2**70), 2**200, 0, 65536])
@pytest.mark.parametrize("function", ["fetch", "fetch_bytes"])
def test_fetch_port_out_of_range(function: str, port: int) -> None:
    with pytest.raises(filefetch.InvalidArgumentError, match="invalid port:"):
        getattr(filefetch, function)("127.0.0.1", port, "hello.txt")


@pytest.mark.parametrize(("keyword", "value"), SERVER_OUT_OF_RANGE)
@pytest.mark.parametrize("start", ["Server", "serve"])
def test_server_numbers_out_of_range(tmp_path: Path, start: str, keyword: str,
                                     value: object) -> None:
    # The root does not exist: were the value accepted, starting would fail with an OSError
    # instead (and serve() would not block).
    options: dict[str, object] = {"port": 0, "root": tmp_path / "missing", keyword: value}
    with pytest.raises(filefetch.InvalidArgumentError) as info:
        if start == "Server":
            filefetch.Server(**options)  # type: ignore[arg-type]
        else:
            filefetch.serve(host="127.0.0.1", **options)  # type: ignore[arg-type]
    assert f"invalid {keyword}:" in str(info.value)


def test_wrong_types_are_type_errors(server: filefetch.Server) -> None:
    with pytest.raises(TypeError):
        filefetch.fetch_bytes("127.0.0.1", str(server.port), "hello.txt")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        filefetch.fetch_bytes("127.0.0.1", server.port, "hello.txt", max_size=1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        filefetch.Server(0, threads="2")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        filefetch.Server(0, host=42)  # type: ignore[arg-type]


def test_progress_must_be_callable(server: filefetch.Server, out: Path) -> None:
    with pytest.raises(TypeError):
        filefetch.fetch("127.0.0.1", server.port, "hello.txt", out, progress=42)  # type: ignore[arg-type]
    assert os.listdir(out) == []


def test_server_root_missing(tmp_path: Path) -> None:
    with pytest.raises(OSError) as info:
        filefetch.Server(root=tmp_path / "nowhere")
    assert isinstance(info.value, filefetch.LocalError)
    assert info.value.errno == errno.ENOENT
    assert info.value.filename == str(tmp_path / "nowhere")


def test_port_in_use(server: filefetch.Server, files: Path) -> None:
    with pytest.raises(filefetch.LocalError) as info:
        filefetch.Server(server.port, files)
    assert info.value.errno == errno.EADDRINUSE
    assert "cannot listen" in str(info.value)


def test_unwritable_destination(server: filefetch.Server, out: Path) -> None:
    dest = out / "missing-dir" / "hello.txt"
    with pytest.raises(filefetch.LocalError) as info:
        filefetch.fetch("127.0.0.1", server.port, "hello.txt", dest)
    assert info.value.errno == errno.ENOENT
    assert os.listdir(out) == []
