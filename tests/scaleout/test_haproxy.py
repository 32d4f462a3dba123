"""Three `filefetch serve --proxy-protocol` replicas over one moto bucket behind HAProxy,
configured by deploy/haproxy.cfg itself (ports, paths and check intervals substituted): a
replica killed and restarted under load costs the clients nothing but retries."""

from __future__ import annotations

import csv
import io
import ipaddress
import os
import re
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from conftest import (
    BIN,
    FOUND,
    PREFIX,
    REPO,
    MiB,
    Moto,
    Reader,
    connect,
    file_request,
    sha256,
    start_serve,
    until,
)

DEPLOY = REPO / "deploy"
HAPROXY = shutil.which("haproxy")  # tests/run-scaleout.sh installs it

FETCHES = 2000
CLIENTS = 16
HEALTH = b"ok\n"


@pytest.fixture(scope="module")
def store():
    """moto with the health object and the objects the clients fetch: mostly small ones,
    and a few of 1 MiB, so that some transfers are under way when a replica dies."""
    server = Moto()
    try:
        server.bucket()
        server.put(f"{PREFIX}/health", HEALTH)
        objects = {}
        for i in range(40):
            objects[f"small/{i:02}"] = os.urandom(int.from_bytes(os.urandom(2), "big"))  # < 64 KiB
        for i in range(2):
            objects[f"large/{i}"] = os.urandom(1 * MiB)
        for name, data in objects.items():
            server.put(f"{PREFIX}/{name}", data)
        server.objects = objects
        yield server
    finally:
        server.kill()


def render(template: str, front: int, replicas: list[int], sock: Path) -> str:
    """deploy/haproxy.cfg for this test: loopback ports, the stats socket in a temporary
    directory, checks every 200 ms, the log on stdout, in the foreground. Every substitution
    must apply exactly as often as expected, so that the shipped file cannot drift away from
    what is tested unnoticed."""

    def sub(pattern, repl, text, count=1):
        out, n = re.subn(pattern, repl, text, flags=re.M)
        assert n == count, f"deploy/haproxy.cfg: {pattern!r} matched {n} times, not {count}"
        return out

    cfg = template
    cfg = sub(r"^(\s*)log /dev/log local0$", r"\1log stdout format raw local0", cfg)
    for directive in ("chroot", "user", "group", "daemon"):
        cfg = sub(rf"^\s*{directive}\b.*\n", "", cfg)
    cfg = sub(r"^(\s*stats socket )\S+", rf"\g<1>{sock}", cfg)
    cfg = sub(r"^(\s*bind ):5000$", rf"\g<1>127.0.0.1:{front}", cfg)
    cfg = sub(r"\binter 1s fall 2 rise 2\b", "inter 200ms fall 2 rise 2", cfg)
    for i, port in enumerate(replicas, 1):
        cfg = sub(rf"^(\s*server replica{i} )replica{i}:5001 ", rf"\g<1>127.0.0.1:{port} ", cfg)
    return cfg


def show_stat(sock: Path) -> dict[str, str]:
    """Each replica's status (UP, DOWN, "UP 1/2"...) from the stats socket's `show stat`."""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(2)
        s.connect(str(sock))
        s.sendall(b"show stat\n")
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    rows = csv.DictReader(io.StringIO(out.decode().lstrip("# ")))
    return {
        row["svname"]: row["status"]
        for row in rows
        if row["pxname"] == "filefetch_replicas" and row["svname"].startswith("replica")
    }


class Replica:
    def __init__(self, procs, endpoint: str, port: int):
        self.procs, self.endpoint, self.port = procs, endpoint, port
        self.runs = []  # one Proc a run, the killed ones included
        self.start()

    def start(self):
        """Starts the replica: on a free port the first time, on the same port after."""
        proc, port = start_serve(self.procs, self.endpoint, "--proxy-protocol", port=self.port)
        assert self.port in (0, port)
        self.port = port
        self.runs.append(proc)

    def kill(self):
        self.runs[-1].kill(signal.SIGKILL)

    def lines(self) -> list[str]:
        return [line for run in self.runs for line in run.lines]


def test_the_shipped_config_is_valid():
    assert HAPROXY, "haproxy is not installed"
    cfg = (DEPLOY / "haproxy.cfg").read_text()
    # The health check sends a real FileRequest for "health" and expects a found file.
    send = re.search(r"^\s*tcp-check send-binary ([0-9a-f]+)$", cfg, re.M).group(1)
    assert bytes.fromhex(send) == file_request("health")
    expect = re.search(r"^\s*tcp-check expect binary ([0-9a-f]+)$", cfg, re.M).group(1)
    assert bytes.fromhex(expect) == FOUND
    assert len(re.findall(r"^\s*server replica\d \S+ check send-proxy-v2$", cfg, re.M)) == 3
    done = subprocess.run([HAPROXY, "-c", "-f", DEPLOY / "haproxy.cfg"], capture_output=True, text=True, timeout=10)
    assert done.returncode == 0, done.stderr


def proxy_v2(client: tuple[str, int], server: tuple[str, int]) -> bytes:
    """A PROXY v2 header for a TCP over IPv4 connection from `client` to `server`."""
    addresses = (
        ipaddress.IPv4Address(client[0]).packed
        + ipaddress.IPv4Address(server[0]).packed
        + struct.pack(">HH", client[1], server[1])
    )
    return b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x21, 0x11]) + struct.pack(">H", len(addresses)) + addresses


def test_the_shipped_unit_runs_a_replica(store, procs):
    """deploy/filefetch.service's command line, on a free loopback port: it wants a PROXY
    header first, and then serves the health object."""
    unit = (DEPLOY / "filefetch.service").read_text()
    command = shlex.split(re.search(r"^ExecStart=(.*)$", unit, re.M).group(1))
    assert command[:3] == ["/usr/local/bin/filefetch", "serve", "5001"], command
    root = command[command.index("--root") + 1]
    extra = [a for a in command[3:] if a not in ("--root", root)]
    assert "--proxy-protocol" in extra
    server, port = start_serve(procs, store.endpoint, *extra)
    # Without the header: closed unanswered.
    with connect(port) as s:
        s.sendall(file_request("health"))
        reader = Reader(s, idle=5)
        reader.read_to_end(deadline=5)
        assert bytes(reader.data) == b"" and reader.ended in ("eof", "reset")
    # With it: served, and logged with the client the header names.
    with connect(port) as s:
        s.sendall(proxy_v2(("192.0.2.7", 40000), ("127.0.0.1", port)) + file_request("health"))
        reader = Reader(s, idle=5)
        reader.read_to_end(deadline=5)
    assert bytes(reader.data) == FOUND + struct.pack(">I", len(HEALTH)) + HEALTH
    server.wait_for(r'sent peer=192\.0\.2\.7:40000 via=127\.0\.0\.1:\d+ name="health" status=1')


@pytest.mark.timeout(240)
def test_a_replica_killed_and_restarted_under_load(store, procs, tmp_path):
    assert HAPROXY, "haproxy is not installed"
    replicas = [Replica(procs, store.endpoint, 0) for _ in range(3)]
    ports = [r.port for r in replicas]

    stats_sock = tmp_path / "haproxy.sock"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        front = s.getsockname()[1]
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(render((DEPLOY / "haproxy.cfg").read_text(), front, ports, stats_sock))
    check = subprocess.run([HAPROXY, "-c", "-f", cfg], capture_output=True, text=True, timeout=10)
    assert check.returncode == 0, check.stdout + check.stderr
    haproxy = procs([HAPROXY, "-db", "-f", cfg])
    try:
        until(lambda: stats_sock.exists(), 10, "HAProxy's stats socket")
    except AssertionError:
        raise AssertionError(f"HAProxy did not start:\n{haproxy.output()}") from None
    until(
        lambda: set(show_stat(stats_sock).values()) == {"UP"},
        10,
        "all three replicas UP",
    )

    # The replicas' state as HAProxy sees it, polled throughout.
    seen: dict[str, list[str]] = {f"replica{i}": [] for i in (1, 2, 3)}
    polling = threading.Event()

    def poll():
        while not polling.is_set():
            try:
                for name, status in show_stat(stats_sock).items():
                    if not seen[name] or seen[name][-1] != status:
                        seen[name].append(status)
            except (OSError, ValueError, KeyError):
                pass  # HAProxy busy or restarting its socket: the next poll will do
            polling.wait(0.05)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()

    # 2,000 fetches from 16 clients at once, each with --retry 5.
    names = list(store.objects)
    out = tmp_path / "out"
    out.mkdir()
    results: dict[int, tuple[str, subprocess.CompletedProcess]] = {}
    lock = threading.Lock()
    next_index = iter(range(FETCHES))

    def client():
        while True:
            with lock:
                i = next(next_index, None)
            if i is None:
                return
            name = names[i % len(names)] if i % 50 else names[-1 - (i // 50) % 2]
            done = subprocess.run(
                [
                    str(BIN), "fetch", "127.0.0.1", str(front), name, "-o", str(out / f"{i:04}"),
                    "--retry", "5", "--retry-delay", "0.1", "--timeout", "2",
                    "--connect-timeout", "2", "--max-time", "30",
                ],
                capture_output=True,
                text=True,
                timeout=60,
                stdin=subprocess.DEVNULL,
            )
            with lock:
                results[i] = (name, done)

    def finished() -> int:
        with lock:
            return len(results)

    started = time.monotonic()
    clients = [threading.Thread(target=client, daemon=True) for _ in range(CLIENTS)]
    for t in clients:
        t.start()
    try:
        until(lambda: finished() >= FETCHES // 5, 120, "the first fifth of the fetches", every=0.02)
        victim = replicas[1]
        victim.kill()
        killed_at = finished()
        until(lambda: show_stat(stats_sock)["replica2"].startswith("DOWN"), 10, "replica2 DOWN")
        until(lambda: finished() >= killed_at + FETCHES // 5, 120, "fetches with replica2 down", every=0.02)
        victim.start()
        until(lambda: show_stat(stats_sock)["replica2"] == "UP", 10, "replica2 UP again")
        restarted_at = finished()
    finally:
        for t in clients:
            t.join(timeout=180)
        polling.set()
        poller.join(timeout=5)
    took = time.monotonic() - started

    assert len(results) == FETCHES, f"{len(results)} fetches ended of {FETCHES}"
    failed = {i: (n, d.returncode, d.stderr) for i, (n, d) in results.items() if d.returncode != 0}
    assert not failed, f"{len(failed)} fetches failed, e.g. {list(failed.items())[:5]}"
    # Every file whole and right; nothing else left (no partial or temporary file).
    for i, (name, _) in results.items():
        got = (out / f"{i:04}").read_bytes()
        assert sha256(got) == sha256(store.objects[name]), f"fetch {i} ({name}) is corrupt"
    assert len(os.listdir(out)) == FETCHES
    retries = Counter(
        re.sub(r"\d+", "N", m)
        for _, d in results.values()
        for m in re.findall(r"attempt \d+ failed \((.*)\); retrying", d.stderr)
    )

    # HAProxy saw replica2 go DOWN and come back UP; the others stayed UP.
    assert any(s.startswith("DOWN") for s in seen["replica2"]), seen
    assert seen["replica2"][-1] == "UP", seen
    assert seen["replica1"] == ["UP"] and seen["replica3"] == ["UP"], seen

    # The replicas logged the clients' addresses from the PROXY header, HAProxy's as `via`;
    # the restarted replica took its share again.
    client_ports = check_logged_clients(front, replicas, restarted_at)
    assert client_ports, "no client port was found in the replicas' logs"
    print(
        f"{FETCHES} fetches by {CLIENTS} clients in {took:.1f} s; retries: {dict(retries)}; "
        f"replica2: {seen['replica2']}; killed after {killed_at}, back after {restarted_at}"
    )
    haproxy.kill(signal.SIGTERM)


def check_logged_clients(front: int, replicas: list[Replica], restarted_at: int) -> set[int]:
    """Connects through HAProxy from known ports and finds each in a replica's log as the
    client (`peer=`), with HAProxy's own connection as `via=`."""
    line = re.compile(r'sent peer=127\.0\.0\.1:(\d+) via=127\.0\.0\.1:(\d+) name="([^"]*)" status=1')
    ours = []
    for _ in range(12):
        with connect(front) as s:
            ours.append(s.getsockname()[1])
            s.sendall(file_request("health"))
            reader = Reader(s, idle=5)
            reader.read_to_end(deadline=5)
            assert bytes(reader.data[:4]) == FOUND
    found: dict[int, int] = {}

    def all_logged():
        for replica in replicas:
            for text in replica.lines():
                m = line.search(text)
                # The two ports may be equal: the system may give HAProxy's connection to
                # the replica the same local port as ours to HAProxy, since they go to
                # different addresses. That `via` is there at all shows the PROXY header
                # was read, and the peer is one of our own ports.
                if m and int(m.group(1)) in ours:
                    found[int(m.group(1))] = int(m.group(2))
        return len(found) == len(ours)

    until(all_logged, 5, "our connections in the replicas' logs")
    # Every request HAProxy passed on came with a PROXY header naming a client (the health
    # checks' LOCAL headers name none: logged with HAProxy's address as the peer, no via).
    checks = 0
    for replica in replicas:
        for text in replica.lines():
            if "filefetch::server" in text and 'name="health"' not in text:
                assert " via=127.0.0.1:" in text, text
            checks += bool(re.search(r'sent peer=127\.0\.0\.1:\d+ name="health" status=1', text))
    assert checks > 0, "no health check logged without `via`"
    # The restarted replica served clients after its restart.
    restarted = replicas[1].runs[-1]
    assert any(line.search(t) and 'name="health"' not in t for t in restarted.lines), (
        "the restarted replica served no client"
    )
    return set(found)
