"""The server's tuning keywords reach the server: worker threads, the open-file cache, and the
checks on their values (the grace period's effect is tested in test_shutdown.py)."""

from __future__ import annotations

import math
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

import pytest

import filefetch
from conftest import WAIT, Process, python, served_port

Spawn = Callable[..., Process]

SERVE = """
import logging, sys
import filefetch
logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(name)s: %(message)s")
try:
    filefetch.serve(0, sys.argv[1], host="127.0.0.1", threads=int(sys.argv[2]),
                    file_cache=float(sys.argv[3]), max_connections=50,
                    request_timeout=2.0, send_timeout=5.0)
except KeyboardInterrupt:
    print("KeyboardInterrupt", flush=True)
"""


def rewrite_in_place(path: Path, data: bytes) -> None:
    """Replaces a file's contents without replacing the file (same inode)."""
    with open(path, "r+b") as f:
        f.truncate(0)
        f.write(data)


@pytest.mark.parametrize(
    "options",
    [{}, {"file_cache": 0}, {"file_cache": 0.0}, {"file_cache": 30.0}],
    ids=["default", "off-int", "off", "30s"],
)
def test_file_rewritten_in_place_is_served_as_it_is_now(
    files: Path, options: dict[str, Any]
) -> None:
    path = files / "changing.txt"
    path.write_bytes(b"first version\n")
    inode = path.stat().st_ino
    with filefetch.Server(root=files, **options) as server:
        assert filefetch.fetch_bytes("127.0.0.1", server.port, "changing.txt") == b"first version\n"
        # Longer, same length, shorter: each is announced and sent as it is now.
        for data in [b"second, longer version\n", b"third, longer  version\n", b"4th\n", b""]:
            rewrite_in_place(path, data)
            assert path.stat().st_ino == inode
            assert filefetch.fetch_bytes("127.0.0.1", server.port, "changing.txt") == data


def descriptors_on(path: Path) -> int:
    """How many of this process's descriptors are open on `path` (the server runs in it)."""
    want = os.path.realpath(path)
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{fd}") == want
        except OSError:
            pass
    return count


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")
def test_file_cache_sets_how_long_a_file_stays_open(files: Path) -> None:
    # With the cache, the file stays open after the request for the next ones; without it,
    # it is closed at once. Either way a name renamed away is gone at once.
    for name in ["kept.txt", "fresh.txt"]:
        (files / name).write_bytes(name.encode())
    with filefetch.Server(root=files, file_cache=60.0) as server:
        assert filefetch.fetch_bytes("127.0.0.1", server.port, "kept.txt") == b"kept.txt"
        assert descriptors_on(files / "kept.txt") == 1
        (files / "kept.txt").rename(files / "kept-moved.txt")
        with pytest.raises(filefetch.NotFoundError):
            filefetch.fetch_bytes("127.0.0.1", server.port, "kept.txt")
    with filefetch.Server(root=files, file_cache=0) as server:
        assert filefetch.fetch_bytes("127.0.0.1", server.port, "fresh.txt") == b"fresh.txt"
        assert descriptors_on(files / "fresh.txt") == 0
        (files / "fresh.txt").rename(files / "fresh-moved.txt")
        with pytest.raises(filefetch.NotFoundError):
            filefetch.fetch_bytes("127.0.0.1", server.port, "fresh.txt")
        assert filefetch.fetch_bytes("127.0.0.1", server.port, "fresh-moved.txt") == b"fresh.txt"


@pytest.mark.parametrize("threads", [0, 1, 3])
def test_server_threads(files: Path, threads: int) -> None:
    with filefetch.Server(root=files, threads=threads) as server:
        for _ in range(20):
            assert filefetch.fetch_bytes("127.0.0.1", server.port, "hello.txt") == b"hello, world\n"
        assert len(filefetch.fetch_bytes("127.0.0.1", server.port, "one-mib.bin")) == 1 << 20


def server_threads(pid: int) -> int:
    """The threads of process `pid` named as the server names its own (Linux)."""
    count = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            comm = Path(f"/proc/{pid}/task/{task}/comm").read_text().strip()
        except OSError:
            continue  # the thread ended meanwhile
        # "filefetch-server", cut to the 15 bytes a thread name has.
        if comm == "filefetch-serve":
            count += 1
    return count


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="counts threads in /proc")
@pytest.mark.parametrize("threads", [1, 3])
def test_serve_takes_the_new_keywords(spawn: Spawn, files: Path, threads: int) -> None:
    proc = spawn(python("-c", SERVE, str(files), str(threads), "0"), cwd=files)
    port = served_port(proc)
    assert filefetch.fetch_bytes("127.0.0.1", port, "hello.txt") == b"hello, world\n"
    # The connection's log line: the thread that delivers log records, started for it by a
    # worker, runs, and so goes by its own name (until it has run, the system gives it its
    # creator's).
    assert proc.wait_for(lambda l: "hello.txt" in l) is not None, proc.seen

    # `threads` workers, the thread that runs them, and the thread waiting in accept on the
    # listening socket (this test runs on Linux only).
    deadline = time.monotonic() + WAIT
    while server_threads(proc.proc.pid) != threads + 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server_threads(proc.proc.pid) == threads + 2

    # file_cache=0: a name renamed away is not served from a file kept open.
    (files / "hello.txt").rename(files / "moved.txt")
    with pytest.raises(filefetch.NotFoundError):
        filefetch.fetch_bytes("127.0.0.1", port, "hello.txt")

    proc.interrupt()
    assert proc.wait_for(lambda l: l == "KeyboardInterrupt") is not None, proc.seen
    assert proc.finish() == 0


@pytest.mark.parametrize(
    ("keyword", "value"),
    [
        ("file_cache", -1.0),
        ("file_cache", -0.001),
        ("file_cache", math.nan),
        ("file_cache", math.inf),
        ("file_cache", -math.inf),
        ("file_cache", 1e300),
        ("grace_period", -1.0),
        ("grace_period", -0.001),
        ("grace_period", math.nan),
        ("grace_period", math.inf),
        ("grace_period", -math.inf),
        ("grace_period", 1e300),
        ("threads", -1),
        ("max_connections", 0),
        ("max_connections", -1),
        ("request_timeout", 0.0),
        ("send_timeout", math.nan),
    ],
)
@pytest.mark.parametrize("start", ["Server", "serve"])
def test_invalid_values(tmp_path: Path, start: str, keyword: str, value: float) -> None:
    # The root does not exist: were the value accepted, starting would fail with an OSError
    # instead (and serve() would not block).
    missing = tmp_path / "missing"
    options: dict[str, Any] = {keyword: value}
    with pytest.raises(ValueError) as info:
        if start == "Server":
            filefetch.Server(0, missing, **options)
        else:
            filefetch.serve(0, missing, host="127.0.0.1", **options)
    assert isinstance(info.value, filefetch.InvalidArgumentError)
    assert keyword in str(info.value)


@pytest.mark.parametrize("portable", [False, True])
def test_portable(files: Path, portable: bool) -> None:
    with filefetch.Server(root=files, portable=portable) as server:
        assert filefetch.fetch_bytes("127.0.0.1", server.port, "hello.txt") == b"hello, world\n"
        data = filefetch.fetch_bytes("127.0.0.1", server.port, "one-mib.bin")
        assert data == (files / "one-mib.bin").read_bytes()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="127.0.0.2 is loopback on Linux")
def test_several_hosts(files: Path) -> None:
    with filefetch.Server(root=files, host=["127.0.0.1", "127.0.0.2"]) as server:
        hosts = [host for host, _ in server.addresses]
        assert hosts == ["127.0.0.1", "127.0.0.2"]
        assert server.address == server.addresses[0]
        for host, port in server.addresses:
            assert filefetch.fetch_bytes(host, port, "hello.txt") == b"hello, world\n"


def test_one_host_has_one_address(files: Path) -> None:
    with filefetch.Server(root=files) as server:
        assert server.addresses == [server.address] == [("127.0.0.1", server.port)]


@pytest.mark.parametrize("start", ["Server", "serve"])
def test_no_host_to_listen_on(tmp_path: Path, start: str) -> None:
    with pytest.raises(filefetch.InvalidArgumentError, match="invalid host"):
        if start == "Server":
            filefetch.Server(0, tmp_path, host=[])
        else:
            filefetch.serve(0, tmp_path, host=[])
