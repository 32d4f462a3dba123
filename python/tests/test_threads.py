"""The GIL is released while fetches and servers work: Python threads run alongside."""

from __future__ import annotations

import socket
import threading
from pathlib import Path
from typing import Callable

import filefetch
from conftest import WAIT, RawServer, read_request, response

StartRaw = Callable[[Callable[[socket.socket], object]], RawServer]


def test_two_fetches_overlap(raw_server: StartRaw, out: Path) -> None:
    # The server answers neither request until both have arrived, so each fetch can only
    # finish if the other one started while it was still running. Were the GIL held during a
    # fetch, the second thread could not start its fetch: the barrier would break.
    both_in_flight = threading.Barrier(2, timeout=WAIT)

    def rendezvous(conn: socket.socket) -> None:
        name = read_request(conn)
        both_in_flight.wait()
        conn.sendall(response(1, name * 1000))

    srv = raw_server(rendezvous)
    results: dict[str, object] = {}

    def worker(name: str, to_file: bool) -> None:
        try:
            if to_file:
                results[name] = filefetch.fetch(
                    "127.0.0.1", srv.port, name, out, timeout=WAIT
                ).read_bytes()
            else:
                results[name] = filefetch.fetch_bytes("127.0.0.1", srv.port, name, timeout=WAIT)
        except BaseException as e:
            results[name] = e

    threads = [
        threading.Thread(target=worker, args=("first", True)),
        threading.Thread(target=worker, args=("second", False)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(2 * WAIT)
    assert not any(t.is_alive() for t in threads)
    assert results == {"first": b"first" * 1000, "second": b"second" * 1000}
    assert not srv.errors


def test_python_runs_while_a_fetch_waits(raw_server: StartRaw, out: Path) -> None:
    # The fetch waits for a reply that this (Python) thread sends only after the fetch has
    # started waiting: it can only arrive if the fetch let go of the GIL.
    answer = threading.Event()

    def on_cue(conn: socket.socket) -> None:
        read_request(conn)
        assert answer.wait(WAIT)
        conn.sendall(response(1, b"late but here"))

    srv = raw_server(on_cue)
    result: list[object] = []
    t = threading.Thread(
        target=lambda: result.append(
            filefetch.fetch_bytes("127.0.0.1", srv.port, "x", timeout=WAIT)
        )
    )
    t.start()
    answer.set()
    t.join(2 * WAIT)
    assert result == [b"late but here"]
    assert not srv.errors


def test_python_runs_while_serve_forever_blocks(files: Path) -> None:
    with filefetch.Server(root=files) as server:
        waiter = threading.Thread(target=server.serve_forever)
        waiter.start()
        # Fetching from Python in this thread, while serve_forever blocks in another.
        for _ in range(5):
            assert filefetch.fetch_bytes("127.0.0.1", server.port, "hello.txt") == b"hello, world\n"
        server.close()
        waiter.join(WAIT)
        assert not waiter.is_alive()
