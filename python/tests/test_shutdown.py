"""Graceful shutdown: Server.shutdown() and a first Ctrl-C in serve() stop accepting at once
and let the transfers in flight finish within the grace period; close(), the end of a `with`
block, a signal during shutdown() and a second Ctrl-C in serve() stop at once."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Callable, Optional

import pytest

import filefetch
from conftest import MAGIC, WAIT, Process, python, recv_exactly, served_port

Spawn = Callable[..., Process]

# Far more than the socket buffers between the server and a client that stops reading can
# hold, so that such a transfer stays in flight until the client reads on.
BIG = 32 << 20

# A grace period no test waits out: a test that needs it fails on a bounded wait first.
LONG = 3600.0

SERVE = """
import logging, sys
import filefetch
logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(name)s: %(message)s")
try:
    filefetch.serve(0, sys.argv[1], host="127.0.0.1", grace_period=float(sys.argv[2]),
                    send_timeout=60.0)
except KeyboardInterrupt as e:
    during = " during KeyboardInterrupt" if isinstance(e.__context__, KeyboardInterrupt) else ""
    print("KeyboardInterrupt" + during, flush=True)
"""


@pytest.fixture
def big(files: Path) -> bytes:
    """The contents of `big.bin`, a file served from `files`."""
    data = os.urandom(BIG)
    (files / "big.bin").write_bytes(data)
    return data


class SlowClient:
    """Requests a file over a raw socket, reads the start of the response, and then reads
    nothing more until read_rest()."""

    def __init__(self, port: int, name: str, first: int = 64 << 10) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # A small, fixed receive buffer: the kernel does not grow it to take the whole file.
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 10)
        self.sock.settimeout(WAIT)
        self.sock.connect(("127.0.0.1", port))
        raw = name.encode()
        self.sock.sendall(struct.pack(">HBH", MAGIC, 1, len(raw)) + raw)
        magic, kind, status, self.length = struct.unpack(">HBBI", recv_exactly(self.sock, 8))
        assert (magic, kind, status) == (MAGIC, 2, 1)
        self.data = recv_exactly(self.sock, first)

    def read_rest(self) -> bytes:
        """Everything received, once the server has closed the connection (or reset it)."""
        chunks = [self.data]
        while True:
            try:
                chunk = self.sock.recv(1 << 20)
            except ConnectionResetError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def slow_client() -> Iterator[Callable[[int, str], SlowClient]]:
    """Starts SlowClients for a test and closes them afterwards."""
    started: list[SlowClient] = []

    def start(port: int, name: str) -> SlowClient:
        client = SlowClient(port, name)
        started.append(client)
        return client

    yield start
    for client in started:
        client.close()


StartClient = Callable[[int, str], SlowClient]


def refuses(port: int) -> bool:
    """True when a connection to `port` is refused (nothing listens there)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=WAIT):
            return False
    except ConnectionRefusedError:
        return True


def wait_until_refused(port: int) -> None:
    deadline = time.monotonic() + WAIT
    while not refuses(port):
        assert time.monotonic() < deadline, f"port {port} still accepts connections"
        time.sleep(0.01)


class InThread:
    """Runs `call` on a thread of its own and keeps what it raised."""

    def __init__(self, call: Callable[[], object]) -> None:
        self.call = call
        self.done = threading.Event()
        self.raised: Optional[BaseException] = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.call()
        except BaseException as e:
            self.raised = e
        finally:
            self.done.set()

    def join(self) -> None:
        assert self.done.wait(WAIT), f"{self.call} did not return"
        self.thread.join(WAIT)
        assert self.raised is None, self.raised


def assert_cut(data: bytes, whole: bytes) -> None:
    """The transfer ended early: a true prefix of the file arrived, never all of it."""
    assert len(data) < len(whole)
    assert data == whole[: len(data)]


def test_shutdown_with_nothing_in_flight(files: Path) -> None:
    server = filefetch.Server(root=files, grace_period=LONG)
    port = server.port
    assert filefetch.fetch_bytes("127.0.0.1", port, "hello.txt") == b"hello, world\n"
    assert not server.closed
    started = time.monotonic()
    server.shutdown()
    # Nothing to wait for: it does not wait out the grace period.
    assert time.monotonic() - started < WAIT
    assert server.closed
    assert repr(server).endswith(" closed>")
    assert refuses(port)
    with pytest.raises(filefetch.ConnectError):
        filefetch.fetch_bytes("127.0.0.1", port, "hello.txt")
    # Again, or close() after it: nothing to do.
    server.shutdown()
    server.close()
    assert server.closed


def test_shutdown_lets_a_transfer_in_flight_finish(
    files: Path, big: bytes, slow_client: StartClient
) -> None:
    with filefetch.Server(root=files, grace_period=LONG, send_timeout=60.0) as server:
        port = server.port
        client = slow_client(port, "big.bin")
        assert client.length == len(big)
        shutdown = InThread(server.shutdown)
        # No new connections from the moment it starts...
        wait_until_refused(port)
        with pytest.raises(filefetch.ConnectError):
            filefetch.fetch_bytes("127.0.0.1", port, "hello.txt")
        # ...while the transfer in flight, stalled by its client, holds it up.
        assert not shutdown.done.wait(0.3)
        assert not server.closed
        assert client.read_rest() == big
        shutdown.join()
        assert server.closed


@pytest.mark.parametrize("grace", [0, 0.2])
def test_shutdown_cuts_a_transfer_after_the_grace_period(
    files: Path, big: bytes, slow_client: StartClient, grace: float
) -> None:
    # The client stalls past the grace period, and send_timeout is longer than any wait here:
    # only the grace period can end the transfer in time.
    with filefetch.Server(root=files, grace_period=grace, send_timeout=60.0) as server:
        port = server.port
        client = slow_client(port, "big.bin")
        started = time.monotonic()
        server.shutdown()
        assert time.monotonic() - started < WAIT
        assert server.closed
        assert refuses(port)
        assert_cut(client.read_rest(), big)


class Alarm(Exception):
    pass


@contextlib.contextmanager
def raise_after(seconds: float, exception: BaseException) -> Iterator[None]:
    """Has a signal handler raise `exception` after `seconds`, as Ctrl-C raises
    KeyboardInterrupt, unless the block ended first."""

    def handler(signum: int, frame: Optional[FrameType]) -> None:
        raise exception

    previous = signal.signal(signal.SIGALRM, handler)
    try:
        signal.setitimer(signal.ITIMER_REAL, seconds)
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


needs_setitimer = pytest.mark.skipif(
    not hasattr(signal, "setitimer"), reason="needs signal.setitimer"
)


@needs_setitimer
def test_signal_during_shutdown_stops_at_once(
    files: Path, big: bytes, slow_client: StartClient
) -> None:
    with filefetch.Server(root=files, grace_period=LONG, send_timeout=60.0) as server:
        client = slow_client(server.port, "big.bin")
        with pytest.raises(Alarm), raise_after(0.2, Alarm()):
            server.shutdown()
        assert server.closed
        assert refuses(server.port)
        assert_cut(client.read_rest(), big)


def test_close_cuts_a_shutdown_short(files: Path, big: bytes, slow_client: StartClient) -> None:
    server = filefetch.Server(root=files, grace_period=LONG, send_timeout=60.0)
    try:
        client = slow_client(server.port, "big.bin")
        shutdown = InThread(server.shutdown)
        wait_until_refused(server.port)
        server.close()
        assert server.closed
        shutdown.join()
        assert_cut(client.read_rest(), big)
    finally:
        server.close()


def test_with_block_closes_at_once(files: Path, big: bytes, slow_client: StartClient) -> None:
    with filefetch.Server(root=files, grace_period=LONG, send_timeout=60.0) as server:
        client = slow_client(server.port, "big.bin")
    assert server.closed
    assert refuses(server.port)
    assert_cut(client.read_rest(), big)


def start_serve(spawn: Spawn, files: Path, grace: float) -> tuple[Process, int]:
    """serve() in a subprocess; returns it and the port it listens on."""
    proc = spawn(python("-c", SERVE, str(files), str(grace)), cwd=files)
    return proc, served_port(proc)


COMMAND = ["-m", "filefetch", "serve", "0", "--bind", "127.0.0.1", "--root"]


def start_command(spawn: Spawn, files: Path, grace: float) -> tuple[Process, int]:
    """``python -m filefetch serve`` in a subprocess; returns it and its port."""
    proc = spawn(python(*COMMAND, str(files), "--grace", str(grace)), cwd=files)
    line = proc.wait_for(lambda l: l.startswith("Waiting for connection"))
    assert line is not None, proc.seen
    match = re.search(r"127\.0\.0\.1:(\d+),", line)
    assert match, line
    return proc, int(match.group(1))


@dataclass
class Launch:
    """A way to run a server in a subprocess until Ctrl-C, and the lines it prints."""

    start: Callable[[Spawn, Path, float], tuple[Process, int]]
    # The line that says it stopped after one Ctrl-C, and after a second one.
    stopped: str
    stopped_twice: str
    # The exit status after a second Ctrl-C (the command's is the Rust command's: 130).
    exit_twice: int
    # The start of the line announcing a graceful stop, if it prints one.
    stopping: Optional[str] = None


LAUNCHES = {
    "serve": Launch(
        start_serve, "KeyboardInterrupt", "KeyboardInterrupt during KeyboardInterrupt", 0
    ),
    "command": Launch(
        start_command,
        "Interrupted, server stopped",
        "Interrupted, server stopped",
        130,
        "Stopping: transfers in flight have 3600 s to finish",
    ),
}


@pytest.fixture(params=sorted(LAUNCHES))
def launch(request: pytest.FixtureRequest) -> Launch:
    """serve() and the command line, each in turn."""
    return LAUNCHES[request.param]


def test_first_sigint_lets_the_transfer_finish(
    spawn: Spawn, files: Path, big: bytes, slow_client: StartClient, launch: Launch
) -> None:
    proc, port = launch.start(spawn, files, LONG)
    client = slow_client(port, "big.bin")
    proc.interrupt()
    wait_until_refused(port)
    if launch.stopping is not None:
        stopping = launch.stopping
        assert proc.wait_for(lambda l: l.startswith(stopping)) is not None, proc.seen
    # Still serving the transfer in flight, which its client has not read yet.
    assert proc.proc.poll() is None, proc.seen
    assert client.read_rest() == big
    assert proc.wait_for(lambda l: l == launch.stopped) is not None, proc.seen
    assert proc.finish() == 0
    assert any('"big.bin": sent' in line for line in proc.seen), proc.seen


def test_second_sigint_stops_at_once(
    spawn: Spawn, files: Path, big: bytes, slow_client: StartClient, launch: Launch
) -> None:
    proc, port = launch.start(spawn, files, LONG)
    client = slow_client(port, "big.bin")
    proc.interrupt()
    wait_until_refused(port)
    assert proc.proc.poll() is None, proc.seen
    proc.interrupt()
    assert proc.wait_for(lambda l: l == launch.stopped_twice) is not None, proc.seen
    assert not any(l == launch.stopped for l in proc.seen[:-1]), proc.seen
    assert proc.finish() == launch.exit_twice
    assert_cut(client.read_rest(), big)


def test_sigint_with_no_grace_period_stops_at_once(
    spawn: Spawn, files: Path, big: bytes, slow_client: StartClient, launch: Launch
) -> None:
    proc, port = launch.start(spawn, files, 0)
    client = slow_client(port, "big.bin")
    proc.interrupt()
    assert proc.wait_for(lambda l: l == launch.stopped) is not None, proc.seen
    assert proc.finish() == 0
    assert_cut(client.read_rest(), big)


class Raising(logging.Handler):
    """Raises Alarm for the first record, as a signal handler would if Ctrl-C landed while
    the record is written; keeps the records."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())
        if len(self.messages) == 1:
            raise Alarm()


@needs_setitimer
def test_serve_exception_while_logging_its_first_line_is_not_lost(files: Path) -> None:
    logger = logging.getLogger("filefetch.server")
    handler = Raising()
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        # Were Alarm lost, serve() would block until the timer's exception.
        with pytest.raises(Alarm), raise_after(WAIT, AssertionError("serve() went on")):
            filefetch.serve(0, files, host="127.0.0.1")
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert handler.messages[0].startswith("serving ")
    match = re.search(r"127\.0\.0\.1:(\d+)$", handler.messages[0])
    assert match, handler.messages
    assert refuses(int(match.group(1)))


@pytest.mark.parametrize("grace", ["-1", "nan", "inf", "1e19", "soon"])
def test_command_rejects_a_bad_grace_period(spawn: Spawn, files: Path, grace: str) -> None:
    # Not a number: argparse says so; out of range: the library, naming the setting.
    proc = spawn(python(*COMMAND, str(files), "--grace", grace), cwd=files)
    assert proc.finish() == 2, proc.seen
    assert "grace" in proc.seen[-1], proc.seen


DROP = """
import gc, logging, sys, threading
import filefetch
logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(name)s: %(message)s")
server = filefetch.Server(root=sys.argv[1], grace_period=3600.0, send_timeout=60.0)
port = server.port

def fetch_many():
    # Connections that end, and are logged through Python, while the server is dropped.
    for _ in range(1000):
        try:
            filefetch.fetch_bytes("127.0.0.1", port, "hello.txt")
        except filefetch.Error:
            return

print("port", port, flush=True)
sys.stdin.readline()
threads = [threading.Thread(target=fetch_many) for _ in range(3)]
for t in threads:
    t.start()
del server
gc.collect()
sys.stdout.write("dropped\\n")  # one write: log lines come from other threads
for t in threads:
    t.join()
sys.stdout.write("done\\n")
"""


def test_garbage_collection_stops_at_once_without_waiting(
    files: Path, big: bytes, slow_client: StartClient
) -> None:
    # In a subprocess, so that a drop that waited for the server thread (which may be waiting
    # for the GIL to log) would be a bounded failure here, not a hang.
    proc = subprocess.Popen(
        python("-c", DROP, str(files)), cwd=files, text=True,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        assert proc.stdout is not None and proc.stdin is not None
        line = proc.stdout.readline()
        assert line.startswith("port "), line
        port = int(line.split()[1])
        client = slow_client(port, "big.bin")
        proc.stdin.write("\n")
        proc.stdin.flush()
        out, _ = proc.communicate(timeout=WAIT)
        assert proc.returncode == 0, out
        # The log lines come from the log's own thread, which may still deliver records of
        # connections served before the drop after "done": only the script's own lines are
        # in a fixed order.
        own = [line for line in out.splitlines() if not line.startswith("filefetch.server: ")]
        assert own == ["dropped", "done"], out
        assert refuses(port)
        assert_cut(client.read_rest(), big)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(WAIT)
