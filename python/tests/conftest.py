"""Shared helpers: servers that misbehave on purpose, subprocesses with bounded waits.

Everything listens on 127.0.0.1, on a port the system picks; every wait has a limit, and every
thread and subprocess started here is stopped when its test ends.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Callable, Optional

import pytest

import filefetch

REPO = Path(__file__).resolve().parents[2]
ORIGINAL = Path(os.environ.get("FILEFETCH_REFERENCE", REPO.parent / "shared" / "reference")) / "original"

# Generous limit for anything that should happen "at once"; reaching it fails the test.
WAIT = 30.0

MAGIC = 0x497E


def response(status: int, data: bytes = b"", length: Optional[int] = None) -> bytes:
    """A FileResponse record; `length` overrides the announced DataLength."""
    announced = len(data) if length is None else length
    return struct.pack(">HBBI", MAGIC, 2, status, announced) + data


def read_request(conn: socket.socket) -> bytes:
    """Reads one FileRequest and returns the requested name."""
    header = recv_exactly(conn, 5)
    magic, kind, length = struct.unpack(">HBH", header)
    assert (magic, kind) == (MAGIC, 1)
    return recv_exactly(conn, length)


def recv_exactly(conn: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise ConnectionError(f"peer closed after {len(data)} of {n} bytes")
        data += chunk
    return data


class RawServer:
    """A hand-written server: `handler(conn)` runs, in a thread, for each connection."""

    def __init__(self, handler: Callable[[socket.socket], object]) -> None:
        self.handler = handler
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.1)
        self.port: int = self.listener.getsockname()[1]
        self.stopping = threading.Event()
        self.errors: list[BaseException] = []
        self.threads: list[threading.Thread] = []
        self.accepter = threading.Thread(target=self._accept, daemon=True)
        self.accepter.start()

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            conn.settimeout(WAIT)
            t = threading.Thread(target=self._handle, args=(conn,), daemon=True)
            self.threads.append(t)
            t.start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            try:
                self.handler(conn)
            except BaseException as e:  # reported by close()
                self.errors.append(e)

    def close(self) -> None:
        self.stopping.set()
        self.accepter.join(WAIT)
        self.listener.close()
        for t in self.threads:
            t.join(WAIT)


@pytest.fixture
def raw_server() -> Iterator[Callable[[Callable[[socket.socket], object]], RawServer]]:
    """Starts RawServers for a test and stops them afterwards."""
    started: list[RawServer] = []

    def start(handler: Callable[[socket.socket], object]) -> RawServer:
        server = RawServer(handler)
        started.append(server)
        return server

    yield start
    for server in started:
        server.close()


@pytest.fixture
def files(tmp_path: Path) -> Path:
    """A directory to serve, with a few files in it."""
    root = tmp_path / "root"
    root.mkdir()
    (root / "empty.bin").write_bytes(b"")
    (root / "hello.txt").write_bytes(b"hello, world\n")
    (root / "one-mib.bin").write_bytes(os.urandom(1 << 20))
    return root


@pytest.fixture
def out(tmp_path: Path) -> Path:
    """An empty directory to download into."""
    d = tmp_path / "out"
    d.mkdir()
    return d


@pytest.fixture
def server(files: Path) -> Iterator[filefetch.Server]:
    """A filefetch.Server serving `files`."""
    with filefetch.Server(root=files) as s:
        yield s


def free_port() -> int:
    """A port that was free a moment ago (the caller must cope with losing a race for it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Process:
    """A subprocess whose output lines are read in the background, so waits can be bounded."""

    def __init__(self, args: list[str], cwd: Path, env: Optional[dict[str, str]] = None) -> None:
        self.args = args
        self.proc = subprocess.Popen(
            args,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: queue.Queue[Optional[str]] = queue.Queue()
        self.seen: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def wait_for(self, predicate: Callable[[str], bool], timeout: float = WAIT) -> Optional[str]:
        """The first new line matching `predicate`; None if the process ended first."""
        while True:
            try:
                line = self.lines.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(
                    f"{self.args}: no expected line within {timeout} s; got {self.seen}"
                ) from None
            if line is None:
                return None
            self.seen.append(line)
            if predicate(line):
                return line

    def interrupt(self) -> None:
        self.proc.send_signal(signal.SIGINT)

    def finish(self, timeout: float = WAIT) -> int:
        """Waits for the exit (bounded) and for all output; returns the exit status."""
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.args} did not exit; output {self.seen}") from None
        self.reader.join(timeout)
        while True:
            try:
                line = self.lines.get_nowait()
            except queue.Empty:
                break
            if line is not None:
                self.seen.append(line)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(WAIT)
        if self.proc.stdout is not None:
            self.reader.join(WAIT)
            self.proc.stdout.close()


@pytest.fixture
def spawn() -> Iterator[Callable[..., Process]]:
    """Starts subprocesses for a test and kills whatever is left of them afterwards."""
    started: list[Process] = []

    def start(args: list[str], cwd: Path, env: Optional[dict[str, str]] = None) -> Process:
        p = Process(args, cwd, env)
        started.append(p)
        return p

    yield start
    for p in started:
        p.kill()


def served_port(proc: Process) -> int:
    """The port a ``filefetch.serve()`` subprocess announces on its "serving" log line."""
    line = proc.wait_for(lambda l: l.startswith("filefetch.server: serving "))
    assert line is not None, proc.seen
    match = re.search(r"127\.0\.0\.1:(\d+)$", line)
    assert match, line
    return int(match.group(1))


def python(*args: str) -> list[str]:
    """A command line running this interpreter, unbuffered."""
    return [sys.executable, "-u", *args]
