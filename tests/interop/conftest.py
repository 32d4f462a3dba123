"""Fixtures for running filefetch and the original scripts side by side, on loopback only.

Every process is started with a bounded wait for readiness and is killed at teardown.
"""

from __future__ import annotations

import os
import re
import select
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ORIGINAL = Path(os.environ.get("FILEFETCH_REFERENCE", REPO.parent / "shared" / "reference")) / "original"
BIN = Path(os.environ.get("FILEFETCH_BIN", REPO / "target" / "debug" / "filefetch"))
WAIT = 10.0  # seconds: upper bound on any start-up or transfer in these tests


def free_port() -> int:
    """A free port in the range the original scripts accept (1024..64000)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if 1024 <= port <= 64000:
            return port
    raise RuntimeError("no free port in 1024..64000")


def wait_for_line(proc: subprocess.Popen, pattern: str, timeout: float = WAIT) -> re.Match:
    """Reads the process's stdout until a line matches, or fails after `timeout`."""
    deadline = time.monotonic() + timeout
    fd = proc.stdout.fileno()
    buf = b""
    while (left := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            break
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        buf += chunk
        m = re.search(pattern, buf.decode(errors="replace"), re.M)
        if m:
            return m
    raise AssertionError(f"no line matching {pattern!r} within {timeout}s; output so far: {buf!r}")


class Proc:
    """A child process that is always killed at the end of the test."""

    def __init__(self, args, cwd, **kw):
        self.p = subprocess.Popen(
            args, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw
        )

    def stop(self):
        if self.p.poll() is None:
            self.p.kill()
        self.p.wait(timeout=WAIT)
        for f in (self.p.stdout, self.p.stderr):
            if f:
                f.close()


@pytest.fixture
def procs():
    started: list[Proc] = []

    def start(args, cwd, **kw) -> Proc:
        proc = Proc(args, cwd, **kw)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()


@pytest.fixture
def ours(procs, tmp_path):
    """Our server on 127.0.0.1, port 0, serving tmp_path/root. Returns (root, port)."""
    assert BIN.exists(), f"build the CLI first: {BIN} is missing"
    root = tmp_path / "root"
    root.mkdir()
    proc = procs([str(BIN), "serve", "0", "--bind", "127.0.0.1", "--root", str(root)], cwd=tmp_path)
    m = wait_for_line(proc.p, r"listening on 127\.0\.0\.1:(\d+)")
    port = int(m.group(1))
    assert 1024 <= port <= 64000, "the original client only accepts ports 1024..64000"
    return root, port


@pytest.fixture
def original_server(procs, tmp_path):
    """The original server.py serving tmp_path/root. Returns (root, port)."""
    root = tmp_path / "root"
    root.mkdir()
    for _ in range(5):
        port = free_port()
        proc = procs([sys.executable, "-u", str(ORIGINAL / "server.py"), str(port)], cwd=root)
        try:
            wait_for_line(proc.p, r"Waiting for connection")
            return root, port
        except AssertionError:
            proc.stop()  # the port was taken meanwhile: try another
    raise AssertionError("server.py did not start")


def run(args, cwd, timeout=WAIT) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(autouse=True, scope="session")
def reference_scripts_present():
    assert (ORIGINAL / "server.py").exists() and (ORIGINAL / "client.py").exists(), (
        f"the original scripts are expected in {ORIGINAL} "
        "(../shared/reference/original beside the repository, or set FILEFETCH_REFERENCE)"
    )
