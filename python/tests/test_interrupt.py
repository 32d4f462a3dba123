"""Ctrl-C stops fetch() at once, and serve() too when no transfer is in flight (with one,
see test_shutdown.py); an exception in a progress callback aborts."""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path
from typing import Callable

import pytest

import filefetch
from conftest import WAIT, Process, RawServer, python, read_request, response, served_port

Spawn = Callable[..., Process]
StartRaw = Callable[[Callable[[socket.socket], object]], RawServer]

SERVE = """
import logging, sys
import filefetch
logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(name)s: %(message)s")
try:
    filefetch.serve(0, sys.argv[1], host="127.0.0.1")
except KeyboardInterrupt:
    print("KeyboardInterrupt", flush=True)
"""

FETCH = """
import sys
import filefetch
try:
    filefetch.{call}
except KeyboardInterrupt:
    print("KeyboardInterrupt", flush=True)
else:
    print("returned", flush=True)
"""


def test_serve_stops_on_sigint(spawn: Spawn, files: Path) -> None:
    proc = spawn(python("-c", SERVE, str(files)), cwd=files)
    port = served_port(proc)
    assert filefetch.fetch_bytes("127.0.0.1", port, "hello.txt") == b"hello, world\n"
    # The connection is logged through the logging module.
    assert proc.wait_for(lambda l: '"hello.txt": sent' in l) is not None
    proc.interrupt()
    assert proc.wait_for(lambda l: l == "KeyboardInterrupt") is not None, proc.seen
    assert proc.finish() == 0
    with pytest.raises(filefetch.ConnectError):
        filefetch.fetch_bytes("127.0.0.1", port, "hello.txt")


@pytest.mark.parametrize(
    "call",
    [
        "fetch('127.0.0.1', {port}, 'x.bin', timeout=600)",
        "fetch_bytes('127.0.0.1', {port}, 'x.bin', timeout=600)",
        "fetch('127.0.0.1', {port}, 'x.bin', timeout=600, progress=lambda r, t: None)",
    ],
)
# Before the response, or in the middle of the data (fetch_bytes then receives into the
# bytes object it has made).
@pytest.mark.parametrize("sent", [b"", response(1, b"x" * 1000, length=1 << 20)])
def test_fetch_stops_on_sigint(
    spawn: Spawn, raw_server: StartRaw, out: Path, call: str, sent: bytes
) -> None:
    requested = threading.Event()
    release = threading.Event()

    def hold(conn: socket.socket) -> None:
        read_request(conn)
        conn.sendall(sent)
        requested.set()
        release.wait(WAIT)  # sends no more: only Ctrl-C can end the fetch before its timeout

    srv = raw_server(hold)
    try:
        code = FETCH.format(call=call.format(port=srv.port))
        proc = spawn(python("-c", code), cwd=out)
        assert requested.wait(WAIT), proc.seen
        proc.interrupt()
        assert proc.finish() == 0
        assert proc.seen == ["KeyboardInterrupt"]
    finally:
        release.set()
    assert os.listdir(out) == []


class Stop(Exception):
    pass


@pytest.mark.parametrize("after", [0, 1])
def test_progress_exception_aborts(server: filefetch.Server, out: Path, after: int) -> None:
    calls: list[int] = []

    def progress(received: int, total: int) -> None:
        calls.append(received)
        if len(calls) > after:
            raise Stop(received)

    with pytest.raises(Stop) as info:
        filefetch.fetch("127.0.0.1", server.port, "one-mib.bin", out, progress=progress)
    assert info.value.args == (calls[-1],)
    assert len(calls) == after + 1
    assert os.listdir(out) == []
    # The server is unharmed.
    assert len(filefetch.fetch_bytes("127.0.0.1", server.port, "one-mib.bin")) == 1 << 20


def test_progress_exception_at_the_very_end(server: filefetch.Server, out: Path) -> None:
    def progress(received: int, total: int) -> None:
        if received == total:
            raise Stop()

    with pytest.raises(Stop):
        filefetch.fetch("127.0.0.1", server.port, "hello.txt", out, progress=progress)
    assert os.listdir(out) == []
