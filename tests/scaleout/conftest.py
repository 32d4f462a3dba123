"""Fixtures for the scale-out tests: a real S3 server (moto's server mode), `filefetch serve`
over it, a TCP relay that can slow down or cut the store's connections, and raw protocol
clients. Loopback only; ports come from binding port 0 (or from the process's own output);
every wait is bounded and every process is killed at teardown.
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(os.environ.get("FILEFETCH_BIN", REPO / "target" / "debug" / "filefetch"))
WAIT = 10.0  # seconds: upper bound on any start-up in these tests
BUCKET = "bucket"
PREFIX = "prefix"
MiB = 1 << 20

# Nothing here may go through a proxy: the store and the servers are all on loopback.
for _var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
    os.environ.pop(_var, None)
os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"

CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def free_port() -> int:
    """A port that was free a moment ago (bound to port 0, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def until(predicate, timeout: float, what: str, every: float = 0.05):
    """Polls `predicate` until it returns something true, or fails after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(every)


class Proc:
    """A child process whose output (stdout and stderr together) is collected line by line
    by a thread, so that it never blocks on a full pipe; killed at teardown."""

    def __init__(self, args, env=None, cwd=None):
        self.args = [str(a) for a in args]
        self.p = subprocess.Popen(
            self.args,
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.p.pid

    def _read(self):
        for raw in self.p.stdout:
            with self._cond:
                self.lines.append(raw.decode(errors="replace").rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def output(self) -> str:
        with self._cond:
            return "\n".join(self.lines)

    def wait_for(self, pattern: str, timeout: float = WAIT, start: int = 0) -> re.Match:
        """The first line from `start` on matching `pattern`, waiting `timeout` at most."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in self.lines[start:]:
                    m = rx.search(line)
                    if m:
                        return m
                left = deadline - time.monotonic()
                if left <= 0 or (self.p.poll() is not None and not self._reader.is_alive()):
                    break
                self._cond.wait(min(left, 0.1))
        raise AssertionError(
            f"no line matching {pattern!r} within {timeout} s from {self.args[:3]}; "
            f"output:\n{self.output()[-4000:]}"
        )

    def mark(self) -> int:
        """A position in the output, for `wait_for(start=...)`."""
        with self._cond:
            return len(self.lines)

    def kill(self, sig=signal.SIGKILL):
        if self.p.poll() is None:
            self.p.send_signal(sig)
        self.p.wait(timeout=WAIT)
        self._reader.join(timeout=WAIT)

    def rss_kib(self) -> int:
        """The process's resident set (VmRSS), in KiB."""
        status = Path(f"/proc/{self.pid}/status").read_text()
        return int(re.search(r"^VmRSS:\s+(\d+) kB", status, re.M).group(1))


@pytest.fixture
def procs():
    """Starts processes (`procs(args, env=..., cwd=...)`) that are killed at teardown."""
    started: list[Proc] = []

    def start(args, **kw) -> Proc:
        proc = Proc(args, **kw)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        try:
            proc.kill()
        except Exception:  # noqa: BLE001 - keep killing the others
            pass


class Moto:
    """moto's S3 server as a child process on a fixed loopback port, so that it can be
    killed (SIGKILL, as a crash) and started again on the same port."""

    def __init__(self, port: int | None = None):
        self.port = port or free_port()
        self.proc: Proc | None = None
        self.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self):
        assert self.proc is None or self.proc.p.poll() is not None
        env = {**os.environ, **CREDENTIALS}
        self.proc = Proc(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            env=env,
        )
        self.proc.wait_for(r"Running on http://127\.0\.0\.1:\d+", timeout=30)
        self.client = self._client()
        until(self._answers, WAIT, f"moto on port {self.port} answering")

    def _client(self):
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=Config(
                retries={"max_attempts": 2, "mode": "standard"},
                connect_timeout=5,
                read_timeout=30,
                s3={"addressing_style": "path"},
            ),
        )

    def _answers(self) -> bool:
        try:
            self.client.list_buckets()
            return True
        except Exception:  # noqa: BLE001 - not up yet
            return False

    def kill(self):
        if self.proc is not None:
            self.proc.kill()

    def bucket(self, name: str = BUCKET):
        self.client.create_bucket(Bucket=name)

    def put(self, key: str, data: bytes, bucket: str = BUCKET):
        self.client.put_object(Bucket=bucket, Key=key, Body=data)


@pytest.fixture
def moto():
    """A fresh moto server with an empty bucket, for tests that stop or restart the store."""
    server = Moto()
    try:
        server.bucket()
        yield server
    finally:
        server.kill()


def store_env(endpoint: str) -> dict:
    env = {**os.environ, **CREDENTIALS, "AWS_ENDPOINT": endpoint, "AWS_ALLOW_HTTP": "true"}
    env.pop("AWS_PROFILE", None)
    return env


def start_serve(procs, endpoint: str, *extra, port: int = 0, root: str | None = None) -> tuple[Proc, int]:
    """`filefetch serve` on 127.0.0.1 over the bucket's prefix at `endpoint`; returns the
    process and its port."""
    assert BIN.exists(), f"build the CLI first: {BIN} is missing"
    root = root or f"s3://{BUCKET}/{PREFIX}"
    proc = procs(
        [BIN, "serve", port, "--bind", "127.0.0.1", "--root", root, *extra],
        env=store_env(endpoint),
    )
    m = proc.wait_for(r"listening on 127\.0\.0\.1:(\d+)")
    return proc, int(m.group(1))


def fetch(port: int, name: str, cwd: Path, *extra, timeout: float = 60.0, host="127.0.0.1"):
    """Runs `filefetch fetch` in `cwd`; returns the CompletedProcess."""
    return subprocess.run(
        [str(BIN), "fetch", host, str(port), name, "-q", *extra],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


# -- The protocol, raw ---------------------------------------------------------------------

FOUND = bytes.fromhex("497e0201")
NOT_FOUND = bytes.fromhex("497e020000000000")


def file_request(name: str | bytes) -> bytes:
    raw = name.encode() if isinstance(name, str) else name
    return struct.pack(">HBH", 0x497E, 1, len(raw)) + raw


def connect(port: int, rcvbuf: int | None = None, timeout: float = 5.0) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        # Before connecting, so that the window offered is small from the start.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(timeout)
    s.connect(("127.0.0.1", port))
    return s


def ask(port: int, name: str | bytes, timeout: float = 5.0) -> bytes:
    """Sends one request and reads the whole answer (to the server's close)."""
    with connect(port, timeout=timeout) as s:
        s.sendall(file_request(name))
        out = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            chunk = s.recv(65536)
            if not chunk:
                return out
            out += chunk
        raise AssertionError(f"no close within {timeout} s")


class Reader:
    """Reads one response from a socket, as slowly as asked, and records how it ended:
    `eof` (an orderly close), `reset`, or `timeout` (nothing for `idle` seconds)."""

    def __init__(self, sock: socket.socket, idle: float = 15.0):
        self.sock = sock
        self.sock.settimeout(idle)
        self.data = bytearray()
        self.ended: str | None = None

    def read(self, at_most: int) -> bool:
        """One recv of up to `at_most` bytes; False once the connection has ended."""
        if self.ended:
            return False
        try:
            chunk = self.sock.recv(at_most)
        except ConnectionResetError:
            self.ended = "reset"
            return False
        except socket.timeout:
            self.ended = "timeout"
            return False
        if not chunk:
            self.ended = "eof"
            return False
        self.data += chunk
        return True

    def read_until(self, count: int, chunk: int = 65536, pause: float = 0.0, deadline: float = 60.0):
        """Reads until `count` bytes arrived (header included) or the connection ended,
        sleeping `pause` between reads; bounded by `deadline` seconds."""
        end = time.monotonic() + deadline
        while len(self.data) < count and self.read(chunk):
            if time.monotonic() > end:
                raise AssertionError(f"read only {len(self.data)} of {count} bytes in {deadline} s")
            if pause:
                time.sleep(pause)

    def read_to_end(self, chunk: int = 1 << 20, pause: float = 0.0, deadline: float = 60.0):
        self.read_until(1 << 62, chunk, pause, deadline)

    @property
    def header(self) -> tuple[int, int]:
        """(StatusCode, DataLength) of the response read so far."""
        assert len(self.data) >= 8, f"no whole header: {bytes(self.data)!r}"
        magic, kind, status, length = struct.unpack(">HBBI", self.data[:8])
        assert (magic, kind) == (0x497E, 2), bytes(self.data[:8])
        return status, length

    @property
    def body(self) -> bytes:
        return bytes(self.data[8:])


# -- A relay between the server and the store ----------------------------------------------


class Link:
    """A TCP relay on loopback in front of the store: the server's requests go through
    unchanged, the store's answers at most `rate` bytes a second per connection (None: as
    fast as they come). `cut()` resets every connection passing through at that moment;
    `stop()` also stops accepting (as a store that has gone away)."""

    CHUNK = 64 * 1024

    def __init__(self, upstream_port: int, rate: float | None = None):
        self.upstream_port = upstream_port
        self.rate = rate
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.1)
        self.port = self.listener.getsockname()[1]
        self._lock = threading.Lock()
        self._generation = 0  # bumped by cut(): pumps of an older one reset their sockets
        self._stopped = threading.Event()
        self.connections = 0
        self.upstream_bytes = 0
        self._acceptor = threading.Thread(target=self._accept, daemon=True)
        self._acceptor.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cut(self):
        with self._lock:
            self._generation += 1

    def stop(self):
        self._stopped.set()
        self.cut()
        self._acceptor.join(timeout=WAIT)
        self.listener.close()

    def _accept(self):
        while not self._stopped.is_set():
            try:
                down, _ = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self._lock:
                self.connections += 1
                generation = self._generation
            try:
                up = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=2)
            except OSError:
                _reset(down)
                continue
            for sock in (up, down):
                sock.settimeout(0.1)
            pair = {"open": 2}
            threading.Thread(target=self._pump, args=(down, up, None, generation, pair), daemon=True).start()
            threading.Thread(target=self._pump, args=(up, down, self.rate, generation, pair), daemon=True).start()

    def _cut_since(self, generation: int) -> bool:
        with self._lock:
            return self._generation != generation or self._stopped.is_set()

    def _pump(self, src, dst, rate, generation, pair):
        start = time.monotonic()
        moved = 0
        try:
            while not self._cut_since(generation):
                try:
                    chunk = src.recv(self.CHUNK)
                except socket.timeout:
                    continue
                if not chunk:
                    dst.shutdown(socket.SHUT_WR)
                    return self._done(src, dst, pair, generation, reset=False)
                view = memoryview(chunk)
                while view and not self._cut_since(generation):
                    try:
                        n = dst.send(view)
                    except socket.timeout:
                        continue
                    view = view[n:]
                moved += len(chunk)
                if rate is not None:
                    self.upstream_bytes += len(chunk)
                    ahead = moved / rate - (time.monotonic() - start)
                    if ahead > 0:
                        time.sleep(ahead)
            self._done(src, dst, pair, generation, reset=True)
        except OSError:
            self._done(src, dst, pair, generation, reset=True)

    def _done(self, src, dst, pair, generation, reset: bool):
        with self._lock:
            pair["open"] -= 1
            last = pair["open"] == 0
        if reset:
            _reset(src)
            _reset(dst)
        elif last:
            src.close()
            dst.close()


def _reset(sock: socket.socket):
    """Closes with a reset (SO_LINGER 0): the peer sees the connection cut, not ended."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


@pytest.fixture
def links():
    made: list[Link] = []

    def make(upstream_port: int, rate: float | None = None) -> Link:
        link = Link(upstream_port, rate)
        made.append(link)
        return link

    yield make
    for link in made:
        link.stop()
