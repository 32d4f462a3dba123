"""`filefetch serve --root s3://bucket/prefix` over a real S3 server (moto), one replica:
what a client gets for whole, missing and refused objects, and when the object changes, the
store fails or the client stops reading."""

from __future__ import annotations

import http.server
import os
import socket
import subprocess
import threading
import time

import pytest

from conftest import (
    BIN,
    FOUND,
    NOT_FOUND,
    PREFIX,
    MiB,
    Moto,
    Reader,
    ask,
    connect,
    fetch,
    file_request,
    sha256,
    start_serve,
    until,
)

SIZES = {"empty": 0, "one": 1, "five-mib": 5 * MiB, "hundred-mib": 100 * MiB}


@pytest.fixture(scope="module")
def store():
    """One moto server for the tests that leave it running: the objects of SIZES under the
    prefix, and keys that only a refused name could reach."""
    server = Moto()
    try:
        server.bucket()
        objects = {name: os.urandom(size) for name, size in SIZES.items()}
        for name, data in objects.items():
            server.put(f"{PREFIX}/{name}", data)
        # Keys that exist, so that a refusal is the name rules' doing, not a missing key.
        for key in ("outside", "x", f"{PREFIX}/dir/a", f"{PREFIX}/dir/", f"{PREFIX}/a//b", f"{PREFIX}/a\\b"):
            server.put(key, b"must not be served")
        server.objects = objects
        yield server
    finally:
        server.kill()


def left_in(path) -> list[str]:
    return sorted(os.listdir(path))


@pytest.mark.parametrize("name", list(SIZES))
def test_objects_arrive_byte_for_byte(store, procs, tmp_path, name):
    _, port = start_serve(procs, store.endpoint)
    done = fetch(port, name, tmp_path, "--timeout", "5")
    assert done.returncode == 0, done.stderr
    got = (tmp_path / name).read_bytes()
    assert len(got) == SIZES[name]
    assert sha256(got) == sha256(store.objects[name])


def test_a_missing_key_is_status_0_and_leaves_nothing(store, procs, tmp_path):
    server, port = start_serve(procs, store.endpoint)
    done = fetch(port, "no-such-key", tmp_path)
    assert done.returncode == 3, done.stderr
    assert left_in(tmp_path) == []
    assert ask(port, "no-such-key") == NOT_FOUND
    server.wait_for(r'not found \(no such key\).*name="no-such-key" status=0')


REFUSED = [
    "../x",  # the bucket's own x, beside the prefix
    "../outside",
    "dir/../../outside",
    "a//b",
    "dir/",  # a "directory marker" object exists under this key
    "dir",  # a prefix of existing keys, no object
    "a\\b",
    "/x",
    ".",
    "..",
    "dir/./a",
]


def test_refused_names_are_status_0(store, procs, tmp_path):
    server, port = start_serve(procs, store.endpoint)
    for name in REFUSED:
        assert ask(port, name) == NOT_FOUND, name
    # The same through the command (names it can send: it needs a last component to write).
    for name in ("../x", "../outside", "a//b", "dir"):
        done = fetch(port, name, tmp_path)
        assert done.returncode == 3, (name, done.stderr)
    for name in ("dir/", "a\\b"):
        done = fetch(port, name, tmp_path, "-o", "out")
        assert done.returncode == 3, (name, done.stderr)
    assert left_in(tmp_path) == []
    # Every refusal is logged with status 0; the server goes on serving.
    assert ask(port, "one")[:4] == FOUND


def is_prefix(body: bytes, *versions: bytes) -> bool:
    return any(v[: len(body)] == body for v in versions)


def check_one_version(reader: Reader, old: bytes, new: bytes) -> str:
    """What a client read of an object that changed meanwhile: the whole old version, the
    whole new one, or a part of one of them cut short; never a mix. Returns which."""
    status, length = reader.header
    assert status == 1
    body = reader.body
    assert len(body) <= length
    assert is_prefix(body, old, new), "the body mixes two versions of the object"
    if len(body) == length:
        assert reader.ended == "eof", reader.ended
        assert body in (old, new)
        return "old" if body == old else "new"
    assert reader.ended in ("eof", "reset"), reader.ended
    return "incomplete"


def test_an_object_overwritten_during_a_slow_transfer_is_never_mixed(store, procs):
    key, size = "changing", 16 * MiB
    old, new = os.urandom(size), os.urandom(size)
    store.put(f"{PREFIX}/{key}", old)
    _, port = start_serve(procs, store.endpoint)
    outcomes = []
    for _ in range(2):
        store.put(f"{PREFIX}/{key}", old)
        # A slow client: a small receive window, 64 KiB read every 5 ms (at most ~12 MiB/s).
        reader = Reader(connect(port, rcvbuf=64 * 1024))
        reader.sock.sendall(file_request(key))
        reader.read_until(1 * MiB, pause=0.005, deadline=20)
        store.put(f"{PREFIX}/{key}", new)  # while the transfer is under way
        reader.read_to_end(chunk=64 * 1024, pause=0.002, deadline=30)
        reader.sock.close()
        outcomes.append(check_one_version(reader, old, new))
        old, new = new, old
    print("overwritten during a slow transfer:", outcomes)


@pytest.mark.parametrize("changed", [True, False], ids=["overwritten", "unchanged"])
def test_a_store_connection_cut_mid_body(store, procs, links, tmp_path, changed):
    """The store's connection is reset mid-body (a relay cuts it), after the object was
    overwritten or not. object_store may resume the body only from the same version (ETag):
    the client gets the old version whole, or an incomplete transfer and nothing kept."""
    key, size = f"cut-{changed}", 16 * MiB
    old, new = os.urandom(size), os.urandom(size)
    store.put(f"{PREFIX}/{key}", old)
    link = links(store.port, rate=8 * MiB)  # 2 s for the object
    server, port = start_serve(procs, link.endpoint)
    client = subprocess.Popen(
        [str(BIN), "fetch", "127.0.0.1", str(port), key, "-q", "--timeout", "5"],
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    raw = Reader(connect(port))
    raw.sock.sendall(file_request(key))
    try:
        until(lambda: link.upstream_bytes >= 4 * MiB, 20, "4 MiB through the relay")
        if changed:
            store.put(f"{PREFIX}/{key}", new)
        link.cut()
        raw.read_to_end(deadline=30)
        _, stderr = client.communicate(timeout=40)
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()
    outcome = check_one_version(raw, old, new)
    if client.returncode == 0:
        assert (tmp_path / key).read_bytes() == old
        outcomes = (outcome, "fetch: old")
    else:
        assert client.returncode == 7, stderr  # incomplete transfer
        assert left_in(tmp_path) == []
        outcomes = (outcome, "fetch: incomplete")
    if changed:
        # The old version cannot be resumed once the object changed.
        assert outcome == "incomplete" and client.returncode == 7, outcomes
    assert outcome != "new"
    if changed:
        line = server.wait_for(rf'reading the file failed: (.*); connection aborted.*name="{key}"')
        print("logged:", line.group(1))
    print(f"store connection cut ({'overwritten' if changed else 'unchanged'}):", outcomes)


def test_the_store_stopped_mid_transfer(moto, procs, links, tmp_path):
    """moto is killed while a 100 MiB object is read slowly: the client sees an incomplete
    transfer, and `filefetch fetch` keeps nothing."""
    data = os.urandom(100 * MiB)
    moto.put(f"{PREFIX}/big", data)
    _, direct = start_serve(procs, moto.endpoint)
    link = links(moto.port, rate=16 * MiB)
    _, throttled = start_serve(procs, link.endpoint)

    reader = Reader(connect(direct, rcvbuf=256 * 1024))
    reader.sock.sendall(file_request("big"))
    client = subprocess.Popen(
        [str(BIN), "fetch", "127.0.0.1", str(throttled), "big", "-q", "--timeout", "5"],
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        reader.read_until(2 * MiB, pause=0.01, deadline=20)
        until(lambda: link.upstream_bytes >= 2 * MiB, 20, "2 MiB through the relay")
        moto.kill()
        reader.read_to_end(deadline=40)
        _, stderr = client.communicate(timeout=40)
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()
    status, length = reader.header
    assert (status, length) == (1, len(data))
    assert len(reader.body) < length, "the whole object arrived though the store stopped"
    assert reader.body == data[: len(reader.body)]
    assert reader.ended in ("eof", "reset")
    assert client.returncode == 7, stderr
    assert left_in(tmp_path) == []


def test_a_store_that_is_down_gets_status_0_and_the_server_recovers(moto, procs, tmp_path):
    moto.put(f"{PREFIX}/a", b"first")
    server, port = start_serve(procs, moto.endpoint, "--send-timeout", "2")
    assert fetch(port, "a", tmp_path).returncode == 0
    (tmp_path / "a").unlink()

    moto.kill()
    for _ in range(2):
        started = time.monotonic()
        done = fetch(port, "a", tmp_path, "--timeout", "10")
        took = time.monotonic() - started
        assert done.returncode == 3, done.stderr
        assert took < 2 + 1.5, f"StatusCode 0 took {took:.1f} s (send timeout 2 s)"
        assert left_in(tmp_path) == []
        print(f"store down: StatusCode 0 after {took:.2f} s")
    server.wait_for(r"the object store failed: .*answered StatusCode 0.*name=\"a\" status=0")

    moto.start()  # the same port, an empty store again
    moto.bucket()
    moto.put(f"{PREFIX}/a", b"second")
    done = fetch(port, "a", tmp_path, "--timeout", "5")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "a").read_bytes() == b"second"


def test_a_store_that_does_not_answer_gets_status_0_within_the_send_timeout(procs, tmp_path):
    # Accepts connections (the kernel does, from the backlog) and never answers.
    with socket.create_server(("127.0.0.1", 0)) as silent:
        endpoint = f"http://127.0.0.1:{silent.getsockname()[1]}"
        server, port = start_serve(procs, endpoint, "--send-timeout", "2")
        results = {}

        def one(i):
            started = time.monotonic()
            results[i] = (ask(port, "a", timeout=10), time.monotonic() - started)

        threads = [threading.Thread(target=one, args=(i,)) for i in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=15)
        for answer, took in results.values():
            assert answer == NOT_FOUND
            assert took < 2 + 1.5, f"StatusCode 0 took {took:.1f} s (send timeout 2 s)"
        assert len(results) == 3
        print("store silent: StatusCode 0 after", ", ".join(f"{t:.2f} s" for _, t in results.values()))
        server.wait_for(r"the object store failed: no answer within 2 s")


def test_clients_that_never_read_cost_bounded_memory_and_are_dropped(store, procs, tmp_path):
    send_timeout = 4
    server, port = start_serve(procs, store.endpoint, "--send-timeout", str(send_timeout))
    assert fetch(port, "one", tmp_path).returncode == 0  # warm: threads, store connections
    before = server.rss_kib()
    mark = server.mark()

    stalled = []
    for _ in range(4):
        s = connect(port, rcvbuf=4096)
        s.sendall(file_request("hundred-mib"))
        stalled.append(s)
    started = time.monotonic()
    peak = before
    while time.monotonic() - started < send_timeout - 1:
        peak = max(peak, server.rss_kib())
        time.sleep(0.1)
    growth_mib = (peak - before) / 1024
    print(f"RSS {before / 1024:.1f} MiB before, peak {peak / 1024:.1f} MiB with 4 stalled clients")
    assert growth_mib < 64, f"RSS grew by {growth_mib:.1f} MiB while 4 clients read nothing"

    # Dropped after the send timeout with no progress: a log line each, then the socket ends
    # short of the 100 MiB announced.
    def dropped():
        return sum("client stopped reading; dropped" in line for line in server.lines[mark:])

    until(lambda: dropped() == len(stalled), send_timeout + 8, "4 stalled clients dropped")
    for s in stalled:
        reader = Reader(s, idle=5)
        reader.read_to_end(deadline=10)
        assert reader.ended in ("eof", "reset")
        assert len(reader.data) < 8 + 100 * MiB
        s.close()
    assert ask(port, "one")[:4] == FOUND


class HugeObjects(http.server.BaseHTTPRequestHandler):
    """An S3 endpoint whose every GET announces an object of the size its key names (the
    last component, in bytes) and then sends a few bytes of it, so that sizes around 4 GiB
    cost nothing to test."""

    protocol_version = "HTTP/1.1"

    def do_GET(self):  # noqa: N802 - the http.server API
        size = int(self.path.rsplit("/", 1)[-1])
        self.send_response(200)
        self.send_header("Content-Length", str(size))
        self.send_header("ETag", '"huge"')
        self.send_header("Last-Modified", "Mon, 30 Nov 2026 00:00:00 GMT")
        self.send_header("Content-Type", "application/octet-stream")
        self.end_headers()
        try:
            self.wfile.write(b"\0" * 4096)
            self.wfile.flush()
        except OSError:
            pass
        self.close_connection = True

    def log_message(self, *args):
        pass


def test_objects_of_4_gib_or_more_are_status_0(procs):
    store = http.server.ThreadingHTTPServer(("127.0.0.1", 0), HugeObjects)
    threading.Thread(target=store.serve_forever, daemon=True).start()
    try:
        endpoint = f"http://127.0.0.1:{store.server_address[1]}"
        server, port = start_serve(procs, endpoint, "--send-timeout", "2")
        for size in (1 << 32, (1 << 32) + 1, 1 << 40):
            assert ask(port, str(size)) == NOT_FOUND, size
        server.wait_for(r"more than the 32-bit DataLength can describe.*status=0")
        # The largest size DataLength can carry is announced, and its data starts to flow.
        with connect(port) as s:
            s.sendall(file_request(str((1 << 32) - 1)))
            reader = Reader(s, idle=5)
            reader.read_until(8 + 4096, deadline=5)
            assert reader.header == (1, (1 << 32) - 1)
    finally:
        store.shutdown()
        store.server_close()
