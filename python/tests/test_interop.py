"""The drop-in command lines against the original scripts, which are run unchanged."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Callable

import pytest

from conftest import ORIGINAL, Process, free_port, python

Spawn = Callable[..., Process]



@pytest.fixture(autouse=True)
def original_scripts_present() -> None:
    assert (ORIGINAL / "server.py").is_file() and (ORIGINAL / "client.py").is_file(), (
        f"the original scripts are expected in {ORIGINAL} "
        "(../shared/reference/original beside the repository, or set FILEFETCH_REFERENCE)"
    )


def start_our_server(spawn: Spawn, root: Path) -> tuple[Process, int]:
    """`python -m filefetch.server 0` in `root`; returns it and the port it printed.

    client.py only accepts ports 1024 to 64000, so a port above is thrown back."""
    for _ in range(10):
        proc = spawn(python("-m", "filefetch.server", "0"), cwd=root)
        line = proc.wait_for(lambda l: l.startswith("Waiting for connection"))
        assert line is not None, proc.seen
        match = re.search(r":(\d+), serving ", line)
        assert match, line
        port = int(match.group(1))
        if 1024 <= port <= 64000:
            return proc, port
        proc.kill()
    raise AssertionError("no port between 1024 and 64000")


@pytest.fixture
def original_server(spawn: Spawn, files: Path) -> Iterator[int]:
    """The original server.py serving `files`; yields its port."""
    for _ in range(10):
        port = free_port()
        if not 1024 <= port <= 64000:
            continue
        proc = spawn(python(str(ORIGINAL / "server.py"), str(port)), cwd=files)
        line = proc.wait_for(lambda l: l.startswith("Waiting for connection"))
        if line is not None:  # None: it exited, most likely having lost the port
            yield port
            return
    raise AssertionError("server.py did not start")


def test_original_client_fetches_from_our_server(spawn: Spawn, files: Path, out: Path) -> None:
    server, port = start_our_server(spawn, files)
    for name in ["hello.txt", "one-mib.bin"]:
        client = spawn(python(str(ORIGINAL / "client.py"), "127.0.0.1", str(port), name), cwd=out)
        assert client.finish() == 0
        assert any("Download succeed" in l for l in client.seen), client.seen
        assert (out / name).read_bytes() == (files / name).read_bytes()
        assert server.wait_for(lambda l: name in l and "sent" in l) is not None


def test_original_client_told_file_is_missing(spawn: Spawn, files: Path, out: Path) -> None:
    server, port = start_our_server(spawn, files)
    client = spawn(python(str(ORIGINAL / "client.py"), "127.0.0.1", str(port), "nope.txt"), cwd=out)
    client.finish()
    assert any("does not exist" in l for l in client.seen), client.seen
    assert os.listdir(out) == []
    assert server.wait_for(lambda l: "nope.txt" in l and "not found" in l) is not None


def test_our_client_fetches_from_original_server(
    spawn: Spawn, files: Path, out: Path, original_server: int
) -> None:
    for name in ["hello.txt", "one-mib.bin", "empty.bin"]:
        client = spawn(
            python("-m", "filefetch.client", "127.0.0.1", str(original_server), name), cwd=out
        )
        assert client.finish() == 0, client.seen
        assert any(l.startswith("Download succeeded") for l in client.seen), client.seen
        assert (out / name).read_bytes() == (files / name).read_bytes()


def test_our_client_on_a_missing_file(
    spawn: Spawn, files: Path, out: Path, original_server: int
) -> None:
    client = spawn(
        python("-m", "filefetch.client", "127.0.0.1", str(original_server), "nope.txt"), cwd=out
    )
    assert client.finish() == 1
    assert any("closed the connection" in l for l in client.seen), client.seen
    assert os.listdir(out) == []


def test_our_client_never_overwrites(
    spawn: Spawn, files: Path, out: Path, original_server: int
) -> None:
    (out / "hello.txt").write_bytes(b"mine")
    client = spawn(
        python("-m", "filefetch.client", "127.0.0.1", str(original_server), "hello.txt"), cwd=out
    )
    assert client.finish() == 1
    assert any("destination exists" in l for l in client.seen), client.seen
    assert (out / "hello.txt").read_bytes() == b"mine"


def test_our_server_stops_on_ctrl_c(spawn: Spawn, files: Path) -> None:
    server, _ = start_our_server(spawn, files)
    server.interrupt()
    assert server.finish() == 0
    assert any("stopped" in l for l in server.seen), server.seen


def test_drop_in_argument_errors(spawn: Spawn, out: Path) -> None:
    for args in (["-m", "filefetch.server", "http"], ["-m", "filefetch.client", "h", "99999", "f"]):
        proc = spawn(python(*args), cwd=out)
        assert proc.finish() == 2
        assert any("invalid port" in l for l in proc.seen), proc.seen
