"""The server's settings about who may connect and how fast: access rules (`allow`, `deny`,
`access`), `max_per_address`, `proxy_protocol`, `rate_limit` and `total_rate_limit`, on
Server, AsyncServer, serve() and `python -m filefetch serve`.

A refused client, or one connection too many, is closed without any response: the client
sees ServerClosedError. Rate limits are checked from above only, as bytes received by each
moment against `rate x t + burst` counted from before connecting: a slow machine can only
stay further below that bound, and nothing here asserts how long anything took."""

from __future__ import annotations

import asyncio
import logging
import select
import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable, Optional

import pytest

import filefetch
from conftest import MAGIC, WAIT, Process, python, served_port

Spawn = Callable[..., Process]

HELLO = b"hello, world\n"


def request(name: bytes) -> bytes:
    return struct.pack(">HBH", MAGIC, 1, len(name)) + name


def found(data: bytes) -> bytes:
    return struct.pack(">HBBI", MAGIC, 2, 1, len(data)) + data


def connect(port: int) -> socket.socket:
    conn = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
    conn.settimeout(WAIT)
    return conn


def read_to_close(conn: socket.socket) -> bytes:
    """Everything until the server closes; a reset (the server closing with the request
    unread) ends it as a close does."""
    data = b""
    while True:
        try:
            chunk = conn.recv(65536)
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk


def exchange(port: int, sent: bytes) -> bytes:
    """Sends `sent` (a PROXY header and or a request) and returns all that came back."""
    with connect(port) as conn:
        try:
            conn.sendall(sent)
        except (BrokenPipeError, ConnectionResetError):
            pass  # a server that closes at once may do so before the request is written
        return read_to_close(conn)


def served(port: int) -> bool:
    """Asks for hello.txt: whether it was served, or else closed without any response."""
    reply = exchange(port, request(b"hello.txt"))
    assert reply in (b"", found(HELLO)), reply
    return reply == found(HELLO)


class Records(logging.Handler):
    """Keeps the messages of the "filefetch.server" logger."""

    def __init__(self) -> None:
        super().__init__()
        self.kept = threading.Lock()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        with self.kept:
            self.messages.append(record.getMessage())

    def find(self, *parts: str) -> Optional[str]:
        with self.kept:
            return next((m for m in self.messages if all(p in m for p in parts)), None)


@pytest.fixture
def records() -> Iterator[Records]:
    """The server's log records, on the "filefetch.server" logger at INFO, for one test. A
    server that stops first delivers the records of its connections."""
    logger = logging.getLogger("filefetch.server")
    handler = Records()
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


# --- access rules ---------------------------------------------------------------------


def test_a_denied_client_is_closed_without_a_response(files: Path, records: Records) -> None:
    with filefetch.Server(root=files, deny=["127.0.0.0/8"]) as server:
        with pytest.raises(filefetch.ServerClosedError):
            filefetch.fetch_bytes("127.0.0.1", server.port, "hello.txt")
        assert not served(server.port)
    line = records.find("refused by rule deny 127.0.0.0/8; closed without a response")
    assert line is not None, records.messages
    assert line.startswith("127.0.0.1:"), line
    # Only deny rules, none for this client: it is served.
    with filefetch.Server(root=files, deny=["10.0.0.0/8", "::1"]) as server:
        assert filefetch.fetch_bytes("127.0.0.1", server.port, "hello.txt") == HELLO


@pytest.mark.parametrize(
    ("allow", "expected"),
    [
        ("127.0.0.1", True),
        (["127.0.0.0/8"], True),
        (["192.0.2.0/24", "127.0.0.1"], True),
        (["192.0.2.0/24"], False),
        (["::1"], False),  # IPv6 rules match IPv6 clients only
        ("::ffff:127.0.0.0/104", True),  # an IPv4-mapped network is the IPv4 one
    ],
)
def test_allow_serves_its_networks_only(files: Path, allow: Any, expected: bool) -> None:
    with filefetch.Server(root=files, allow=allow) as server:
        assert served(server.port) is expected


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        # `access`: in the order given, the first match decides.
        ({"access": ["allow 127.0.0.1", "deny 127.0.0.0/8"]}, True),
        ({"access": ["deny 127.0.0.0/8", "allow 127.0.0.1"]}, False),
        ({"access": "deny 127.0.0.1"}, False),
        ({"access": ["deny 10.0.0.5", "allow 127.0.0.0/8"]}, True),
        # `deny` comes before `allow`...
        ({"allow": ["127.0.0.1"], "deny": ["127.0.0.0/8"]}, False),
        ({"allow": ["127.0.0.0/8"], "deny": ["10.0.0.0/8"]}, True),
        # ...and `access` before both.
        ({"access": ["allow 127.0.0.1"], "deny": ["127.0.0.0/8"]}, True),
        ({"access": ["deny 127.0.0.1"], "allow": ["127.0.0.0/8"]}, False),
        # An allow rule anywhere refuses the clients no rule matches.
        ({"access": ["deny 10.0.0.0/8"], "allow": ["192.0.2.0/24"]}, False),
    ],
)
def test_rules_are_checked_in_order(files: Path, settings: dict[str, Any], expected: bool) -> None:
    with filefetch.Server(root=files, **settings) as server:
        assert served(server.port) is expected


@pytest.mark.parametrize(
    ("settings", "named", "problem"),
    [
        ({"allow": ["10.1.0.0/8"]}, "invalid allow:", "bits set past the prefix"),
        ({"allow": "10.0.0.0/33"}, "invalid allow:", "at most 32"),
        ({"deny": ["127.0.0.1", "nonsense"]}, "invalid deny:", "nonsense"),
        ({"deny": ["10.0.0.0/+8"]}, "invalid deny:", "prefix length"),
        ({"access": ["permit 10.0.0.0/8"]}, "invalid access:", "permit"),
        ({"access": ["allow"]}, "invalid access:", "allow"),
        ({"access": ["allow 10.0.0.0/8 192.0.2.0/24"]}, "invalid access:", "192.0.2.0/24"),
        ({"access": ["deny 10.1.0.0/8"]}, "invalid deny:", "bits set past the prefix"),
    ],
)
@pytest.mark.parametrize("start", ["Server", "AsyncServer", "serve"])
def test_bad_rules_are_refused(
    tmp_path: Path, start: str, settings: dict[str, Any], named: str, problem: str
) -> None:
    # The root does not exist: were the rules accepted, starting would fail with an OSError
    # instead (and serve() would not block).
    missing = tmp_path / "missing"
    with pytest.raises(filefetch.InvalidArgumentError) as info:
        if start == "serve":
            filefetch.serve(0, missing, host="127.0.0.1", **settings)
        else:
            getattr(filefetch, start)(0, missing, **settings)
    message = str(info.value)
    assert message.startswith(named) and problem in message, message


# --- connections at once from one address ---------------------------------------------


def closed_by_server(conns: list[socket.socket]) -> list[int]:
    """Which of `conns` the server has closed: waits (at most WAIT) until one is, then a
    moment more for any other that a faulty limit would close too."""
    ready, _, _ = select.select(conns, [], [], WAIT)
    assert ready, "the server closed none"
    rest = [c for c in conns if c not in ready]
    more, _, _ = select.select(rest, [], [], 0.3) if rest else ([], [], [])
    for conn in [*ready, *more]:
        assert read_to_close(conn) == b"", "the server sent something"
    return sorted(conns.index(c) for c in [*ready, *more])


def test_one_connection_past_max_per_address_is_closed(files: Path, records: Records) -> None:
    with filefetch.Server(root=files, max_per_address=2, request_timeout=60.0) as server:
        # Three idle connections: the one the server took last is closed unanswered.
        held = [connect(server.port) for _ in range(3)]
        try:
            closed = closed_by_server(held)
            assert len(closed) == 1, closed
            held.pop(closed[0]).close()
            # At the limit, one more is refused...
            with pytest.raises(filefetch.ServerClosedError):
                filefetch.fetch_bytes("127.0.0.1", server.port, "hello.txt")
            # ...until one of the two goes.
            held.pop().close()
            deadline = time.monotonic() + WAIT
            while not served(server.port):
                assert time.monotonic() < deadline, "never served again"
                time.sleep(0.02)
            # The one still held kept its place all along.
            held[0].sendall(request(b"hello.txt"))
            assert read_to_close(held[0]) == found(HELLO)
        finally:
            for conn in held:
                conn.close()
    assert records.find("too many connections from this address (at most 2 at once)")


# --- PROXY protocol -------------------------------------------------------------------


def proxied(client: str) -> bytes:
    """A v1 PROXY header from `client`, port 40000."""
    return f"PROXY TCP4 {client} 127.0.0.1 40000 5000\r\n".encode()


def test_proxy_protocol(files: Path, records: Records) -> None:
    with filefetch.Server(root=files, proxy_protocol=True) as server:
        # Without the header: closed without a response.
        with pytest.raises(filefetch.ServerClosedError):
            filefetch.fetch_bytes("127.0.0.1", server.port, "hello.txt")
        # With it: served, and logged as coming from the client it names.
        reply = exchange(server.port, proxied("192.0.2.7") + request(b"hello.txt"))
        assert reply == found(HELLO)
    line = records.find('"hello.txt": sent')
    assert line is not None, records.messages
    assert line.startswith("192.0.2.7:40000 ") and "via=127.0.0.1:" in line, line
    # Off, a PROXY header is a malformed request like any other.
    with filefetch.Server(root=files) as server:
        assert exchange(server.port, proxied("192.0.2.7") + request(b"hello.txt")) == b""


def test_behind_a_proxy_the_rules_judge_the_client_it_names(files: Path) -> None:
    settings: dict[str, Any] = {"proxy_protocol": True, "deny": ["192.0.2.0/24"]}
    with filefetch.Server(root=files, **settings) as server:
        assert exchange(server.port, proxied("192.0.2.7") + request(b"hello.txt")) == b""
        reply = exchange(server.port, proxied("198.51.100.1") + request(b"hello.txt"))
        assert reply == found(HELLO)


# --- rate limits ----------------------------------------------------------------------

RATE = 256 * 1024


def burst(rate: int) -> int:
    """How far ahead of its rate a limit may run: a tenth of a second's worth, at least 1 KiB."""
    return max(rate // 10, 1024)


Samples = list[tuple[float, int]]


def timed_fetch(port: int, name: bytes, start: float) -> tuple[bytes, Samples]:
    """Asks for `name` and reads the whole response, noting after every read the seconds
    since `start` and the bytes so far."""
    samples: Samples = []
    reply = b""
    with connect(port) as conn:
        conn.sendall(request(name))
        while True:
            chunk = conn.recv(16 * 1024)
            if not chunk:
                break
            reply += chunk
            samples.append((time.monotonic() - start, len(reply)))
    return reply, samples


def first_over(samples: Samples, rate: int) -> Optional[tuple[float, int]]:
    """The first sample by which more than `rate x t + burst` bytes had arrived, if any."""
    return next((s for s in samples if s[1] > rate * s[0] + burst(rate)), None)


@pytest.fixture
def big(files: Path) -> bytes:
    data = bytes(range(256)) * (2 * 1024)  # 512 KiB
    (files / "big.bin").write_bytes(data)
    return data


@pytest.mark.parametrize("portable", [False, True])
def test_rate_limit_paces_a_connection(files: Path, big: bytes, portable: bool) -> None:
    with filefetch.Server(root=files, rate_limit=RATE, portable=portable) as server:
        reply, samples = timed_fetch(server.port, b"big.bin", time.monotonic())
    assert reply == found(big)
    assert first_over(samples, RATE) is None, (first_over(samples, RATE), RATE)


def test_total_rate_limit_paces_all_connections_together(files: Path, big: bytes) -> None:
    half = big[: len(big) // 2]
    (files / "half.bin").write_bytes(half)
    with filefetch.Server(root=files, total_rate_limit=RATE) as server:
        start = time.monotonic()
        outcomes: list[tuple[bytes, Samples]] = []

        def client() -> None:
            outcomes.append(timed_fetch(server.port, b"half.bin", start))

        clients = [threading.Thread(target=client) for _ in range(2)]
        for c in clients:
            c.start()
        for c in clients:
            c.join(WAIT)
    assert len(outcomes) == 2
    # Every read as an event (when, how many bytes more), in time order: the running sum is
    # what both had received by then.
    events = []
    for reply, samples in outcomes:
        assert reply == found(half)
        before = 0
        for t, total in samples:
            events.append((t, total - before))
            before = total
    events.sort()
    together: Samples = []
    received = 0
    for t, more in events:
        received += more
        together.append((t, received))
    assert first_over(together, RATE) is None, (first_over(together, RATE), RATE)


def test_the_check_catches_an_unpaced_transfer(files: Path) -> None:
    # Without a limit the bound above does not hold (the whole file arrives far sooner than
    # the rate allows): the checks above can fail. Only a machine so slow that 4 MiB over
    # loopback took 15 s would keep within it.
    data = bytes(range(256)) * (16 * 1024)
    (files / "fast.bin").write_bytes(data)
    with filefetch.Server(root=files) as server:
        reply, samples = timed_fetch(server.port, b"fast.bin", time.monotonic())
    assert reply == found(data)
    assert first_over(samples, RATE) is not None or samples[-1][0] > 15


# --- values, and the other ways to start a server -------------------------------------


@pytest.mark.parametrize(
    ("keyword", "value"),
    [
        ("max_per_address", -1),
        ("max_per_address", 2**32),
        ("max_per_address", 2**70),
        ("rate_limit", -1),
        ("rate_limit", 2**64),
        ("total_rate_limit", -1),
        ("total_rate_limit", 2**70),
    ],
)
@pytest.mark.parametrize("start", ["Server", "AsyncServer", "serve"])
def test_invalid_values(tmp_path: Path, start: str, keyword: str, value: int) -> None:
    missing = tmp_path / "missing"
    options: dict[str, Any] = {keyword: value}
    with pytest.raises(filefetch.InvalidArgumentError) as info:
        if start == "serve":
            filefetch.serve(0, missing, host="127.0.0.1", **options)
        else:
            getattr(filefetch, start)(0, missing, **options)
    assert keyword in str(info.value)


def test_the_largest_values_are_accepted(files: Path) -> None:
    settings: dict[str, Any] = {
        "max_per_address": 2**32 - 1,
        "rate_limit": 2**64 - 1,
        "total_rate_limit": 2**64 - 1,
    }
    with filefetch.Server(root=files, **settings) as server:
        assert filefetch.fetch_bytes("127.0.0.1", server.port, "hello.txt") == HELLO


def test_async_server_takes_the_settings(files: Path) -> None:
    async def main() -> None:
        async with filefetch.AsyncServer(root=files, access=["deny 127.0.0.1"]) as server:
            with pytest.raises(filefetch.ServerClosedError):
                await filefetch.afetch_bytes("127.0.0.1", server.port, "hello.txt")
        async with filefetch.AsyncServer(root=files, proxy_protocol=True) as server:
            assert exchange(server.port, proxied("192.0.2.7") + request(b"hello.txt")) == (
                found(HELLO)
            )

    asyncio.run(main())


SERVE = """
import logging, sys
import filefetch
logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(name)s: %(message)s")
try:
    filefetch.serve(0, sys.argv[1], host="127.0.0.1", proxy_protocol=True,
                    allow=["192.0.2.0/24"], max_per_address=4, rate_limit=10**9,
                    total_rate_limit=10**9)
except KeyboardInterrupt:
    print("KeyboardInterrupt", flush=True)
"""


def test_serve_takes_the_settings(spawn: Spawn, files: Path) -> None:
    proc = spawn(python("-c", SERVE, str(files)), cwd=files)
    port = served_port(proc)
    assert exchange(port, request(b"hello.txt")) == b""
    assert exchange(port, proxied("192.0.2.7") + request(b"hello.txt")) == found(HELLO)
    assert exchange(port, proxied("198.51.100.1") + request(b"hello.txt")) == b""
    assert proc.wait_for(lambda l: "no allow rule matches" in l) is not None, proc.seen
    proc.interrupt()
    assert proc.wait_for(lambda l: l == "KeyboardInterrupt") is not None, proc.seen
    assert proc.finish() == 0


# --- python -m filefetch serve --------------------------------------------------------


def serve_command(spawn: Spawn, files: Path, *options: str) -> Process:
    return spawn(
        python("-m", "filefetch", "serve", "0", "--bind", "127.0.0.1", "--root", str(files),
               *options),
        cwd=files,
    )


def command_port(proc: Process) -> int:
    line = proc.wait_for(lambda l: l.startswith("Waiting for connection"))
    assert line is not None, proc.seen
    return int(line.split(", serving ")[0].rsplit(":", 1)[1])


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (["--deny", "127.0.0.0/8"], False),
        (["--allow", "127.0.0.1", "--deny", "127.0.0.0/8"], True),
        (["--deny", "127.0.0.0/8", "--allow", "127.0.0.1"], False),
        (["--deny", "10.0.0.5", "--allow", "127.0.0.0/8"], True),
        (["--allow", "192.0.2.0/24"], False),
        (["--max-per-address", "3", "--rate-limit", "1000000", "--total-rate-limit", "0"], True),
    ],
)
def test_serve_command_rules(
    spawn: Spawn, files: Path, options: list[str], expected: bool
) -> None:
    proc = serve_command(spawn, files, *options)
    port = command_port(proc)
    assert served(port) is expected
    proc.interrupt()
    assert proc.finish() == 0, proc.seen


def test_serve_command_proxy_protocol(spawn: Spawn, files: Path) -> None:
    proc = serve_command(spawn, files, "--proxy-protocol", "--deny", "192.0.2.0/24")
    port = command_port(proc)
    assert exchange(port, request(b"hello.txt")) == b""
    assert exchange(port, proxied("192.0.2.7") + request(b"hello.txt")) == b""
    assert exchange(port, proxied("198.51.100.1") + request(b"hello.txt")) == found(HELLO)
    proc.interrupt()
    assert proc.finish() == 0, proc.seen


@pytest.mark.parametrize(
    ("options", "setting"),
    [
        (["--allow", "10.1.0.0/8"], "allow"),
        (["--deny", "nonsense"], "deny"),
        (["--max-per-address", "-1"], "max_per_address"),
        (["--rate-limit", "-1"], "rate_limit"),
        (["--total-rate-limit", str(2**64)], "total_rate_limit"),
    ],
)
def test_serve_command_values_out_of_range(
    spawn: Spawn, files: Path, options: list[str], setting: str
) -> None:
    proc = serve_command(spawn, files, *options)
    assert proc.finish() == 2, proc.seen
    assert f"invalid {setting}:" in proc.seen[-1], proc.seen
