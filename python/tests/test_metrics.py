"""`metrics="IP:PORT"`: the server's Prometheus endpoint, from Server, AsyncServer, serve() and
`python -m filefetch serve --metrics`, with `metrics_address` saying where it is."""

from __future__ import annotations

import asyncio
import re
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, Optional

import pytest

import filefetch
from conftest import WAIT, Process, python

Spawn = Callable[..., Process]

HELLO = b"hello, world\n"

# Bounds each scrape; the server answers at once.
SCRAPE_TIMEOUT = 10.0


def scrape(port: int, path: str = "/metrics") -> dict[str, float]:
    """The samples of the endpoint on 127.0.0.1:`port`, by name with labels
    (`filefetch_requests_total{outcome="sent"}`)."""
    url = f"http://127.0.0.1:{port}{path}"
    with urllib.request.urlopen(url, timeout=SCRAPE_TIMEOUT) as response:
        assert response.status == 200
        text = response.read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


SENT = 'filefetch_requests_total{outcome="sent"}'
NOT_FOUND = 'filefetch_requests_total{outcome="not_found"}'
SENT_BYTES = "filefetch_sent_bytes_total"


def scrape_until(
    port: int, done: Callable[[dict[str, float]], bool], timeout: float = WAIT
) -> dict[str, float]:
    """Scrapes until `done` holds: a connection is counted as it ends, which may come a moment
    after the client has its data."""
    deadline = time.monotonic() + timeout
    while True:
        samples = scrape(port)
        if done(samples):
            return samples
        assert time.monotonic() < deadline, samples
        time.sleep(0.02)


def ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


def test_metrics_count_the_fetches(files: Path) -> None:
    with filefetch.Server(root=files, metrics="127.0.0.1:0") as server:
        address = server.metrics_address
        assert address is not None
        host, port = address
        assert host == "127.0.0.1"
        assert port not in (0, server.port)
        # Every outcome is there from the start, at 0.
        before = scrape(port)
        assert before[SENT] == 0 and before[NOT_FOUND] == 0, before

        assert filefetch.fetch_bytes("127.0.0.1", server.port, "hello.txt") == HELLO
        with pytest.raises(filefetch.NotFoundError):
            filefetch.fetch_bytes("127.0.0.1", server.port, "missing.txt")
        after = scrape_until(
            port, lambda s: s[SENT] >= 1 and s[NOT_FOUND] >= 1 and s[SENT_BYTES] >= len(HELLO)
        )
        assert (after[SENT], after[NOT_FOUND]) == (1, 1), after
        assert after[SENT_BYTES] == len(HELLO), after

        with pytest.raises(urllib.error.HTTPError) as raised:
            scrape(port, "/other")
        assert raised.value.code == 404
        # The address stays as it is, and the endpoint closes with the server.
        assert server.metrics_address == address
    assert server.metrics_address == address
    with pytest.raises(OSError):
        scrape(port)


def test_metrics_address_is_none_when_off(files: Path) -> None:
    with filefetch.Server(root=files) as server:
        assert server.metrics_address is None
    with filefetch.Server(root=files, metrics=None) as server:
        assert server.metrics_address is None

    async def main() -> None:
        async with filefetch.AsyncServer(root=files) as server:
            assert server.metrics_address is None

    asyncio.run(main())


def test_async_server_metrics(files: Path) -> None:
    async def main() -> None:
        async with filefetch.AsyncServer(root=files, metrics="127.0.0.1:0") as server:
            address = server.metrics_address
            assert address is not None
            host, port = address
            assert host == "127.0.0.1" and port not in (0, server.port)
            data = await filefetch.afetch_bytes("127.0.0.1", server.port, "hello.txt")
            assert data == HELLO
            loop = asyncio.get_running_loop()
            samples = await loop.run_in_executor(
                None, lambda: scrape_until(port, lambda s: s[SENT] >= 1)
            )
            assert samples[SENT] == 1, samples

    asyncio.run(main())


@pytest.mark.skipif(not ipv6_loopback(), reason="no IPv6 loopback")
def test_metrics_on_ipv6(files: Path) -> None:
    with filefetch.Server(root=files, metrics="[::1]:0") as server:
        address = server.metrics_address
        assert address is not None
        assert address[0] == "::1" and address[1] != 0
        url = f"http://[::1]:{address[1]}/metrics"
        with urllib.request.urlopen(url, timeout=SCRAPE_TIMEOUT) as response:
            assert SENT in response.read().decode()


@pytest.mark.parametrize(
    "value",
    ["nonsense", "127.0.0.1", "127.0.0.1:", ":9100", "localhost:9100", "::1:9100",
     "127.0.0.1:70000", "", "224.0.0.1:9100"],
)
@pytest.mark.parametrize("start", ["Server", "AsyncServer"])
def test_invalid_metrics_addresses(tmp_path: Path, start: str, value: str) -> None:
    with pytest.raises(filefetch.InvalidArgumentError, match="metrics") as raised:
        getattr(filefetch, start)(root=tmp_path, metrics=value)
    assert isinstance(raised.value, ValueError)


def test_metrics_address_in_use(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(filefetch.LocalError):
            filefetch.Server(root=tmp_path, metrics=f"127.0.0.1:{port}")


SERVE = """
import logging, sys
import filefetch
logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(name)s: %(message)s")
try:
    filefetch.serve(0, sys.argv[1], host="127.0.0.1", metrics="127.0.0.1:0")
except KeyboardInterrupt:
    print("KeyboardInterrupt", flush=True)
"""

METRICS_LINE = re.compile(r"metrics on http://127\.0\.0\.1:(\d+)/metrics$")


def metrics_port(proc: Process, prefix: str = "") -> int:
    """The port of the "metrics on http://..." line, after the listening lines."""
    line = proc.wait_for(lambda l: l.startswith(prefix + "metrics on "))
    assert line is not None, proc.seen
    match = METRICS_LINE.search(line)
    assert match, line
    return int(match.group(1))


def test_serve_logs_the_metrics_address(spawn: Spawn, files: Path) -> None:
    proc = spawn(python("-c", SERVE, str(files)), cwd=files)
    serving = proc.wait_for(lambda l: l.startswith("filefetch.server: serving "))
    assert serving is not None, proc.seen
    match = re.search(r"127\.0\.0\.1:(\d+)$", serving)
    assert match, serving
    port = int(match.group(1))
    mport = metrics_port(proc, "filefetch.server: ")
    assert filefetch.fetch_bytes("127.0.0.1", port, "hello.txt") == HELLO
    assert scrape_until(mport, lambda s: s[SENT] >= 1)[SENT] == 1
    proc.interrupt()
    assert proc.wait_for(lambda l: l == "KeyboardInterrupt") is not None, proc.seen
    assert proc.finish() == 0


def serve_command(spawn: Spawn, files: Path, *options: str) -> Process:
    return spawn(
        python("-m", "filefetch", "serve", "0", "--bind", "127.0.0.1", "--root", str(files),
               *options),
        cwd=files,
    )


def test_serve_command_metrics(spawn: Spawn, files: Path) -> None:
    proc = serve_command(spawn, files, "--metrics", "127.0.0.1:0")
    waiting = proc.wait_for(lambda l: l.startswith("Waiting for connection"))
    assert waiting is not None, proc.seen
    port = int(waiting.split(", serving ")[0].rsplit(":", 1)[1])
    # The next line, as the Rust command prints it after its listening lines.
    mport = metrics_port(proc)
    assert proc.seen[-2:] == [waiting, f"metrics on http://127.0.0.1:{mport}/metrics"]
    assert filefetch.fetch_bytes("127.0.0.1", port, "hello.txt") == HELLO
    assert scrape_until(mport, lambda s: s[SENT] >= 1)[SENT] == 1
    proc.interrupt()
    assert proc.finish() == 0, proc.seen


def test_serve_command_without_metrics_prints_no_metrics_line(spawn: Spawn, files: Path) -> None:
    proc = serve_command(spawn, files)
    assert proc.wait_for(lambda l: l.startswith("Waiting for connection")) is not None
    proc.interrupt()
    assert proc.finish() == 0, proc.seen
    assert not any(l.startswith("metrics on ") for l in proc.seen), proc.seen


@pytest.mark.parametrize("value", ["nonsense", "localhost:9100", "127.0.0.1"])
def test_serve_command_bad_metrics(spawn: Spawn, files: Path, value: str) -> None:
    proc = serve_command(spawn, files, "--metrics", value)
    assert proc.finish() == 2, proc.seen
    assert "invalid metrics:" in proc.seen[-1], proc.seen


def metrics_help(spawn: Spawn, files: Path) -> Optional[str]:
    proc = spawn(python("-m", "filefetch", "serve", "--help"), cwd=files)
    assert proc.finish() == 0, proc.seen
    return next((l for l in proc.seen if "--metrics" in l), None)


def test_serve_command_help_has_metrics(spawn: Spawn, files: Path) -> None:
    line = metrics_help(spawn, files)
    assert line is not None and "ADDR:PORT" in line, line
