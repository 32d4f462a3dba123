"""fetch_many: a list of files from one server, several at a time, each landing whole or not
at all; one result per name, in the order given; one failure leaving the others alone."""

from __future__ import annotations

import hashlib
import socket
import threading
from pathlib import Path
from typing import Callable

import pytest

import filefetch
from conftest import WAIT, Process, RawServer, python, read_request, response

StartRaw = Callable[[Callable[[socket.socket], object]], RawServer]
Spawn = Callable[..., Process]


@pytest.fixture
def tree(files: Path) -> Path:
    """`files`, with a few more in subdirectories."""
    for i in range(5):
        d = files / f"dir{i % 2}"
        d.mkdir(exist_ok=True)
        (d / f"f{i}.bin").write_bytes(bytes([i]) * (i * 70_001))
    return files


NAMES = ["dir0/f0.bin", "dir1/f1.bin", "dir0/f2.bin", "dir1/f3.bin", "dir0/f4.bin", "hello.txt"]


def test_every_file_lands_and_results_follow_the_names(tree: Path, out: Path) -> None:
    with filefetch.Server(root=tree) as server:
        results = filefetch.fetch_many("127.0.0.1", server.port, NAMES, out, jobs=3)
    assert [r.name for r in results] == NAMES
    for result in results:
        assert isinstance(result, filefetch.FetchResult)
        assert result.ok and result.error is None, result
        leaf = result.name.rsplit("/", 1)[-1]
        assert result.path == out / leaf
        data = (tree / result.name).read_bytes()
        assert result.size == len(data)
        assert result.path.read_bytes() == data
    assert sorted(p.name for p in out.iterdir()) == sorted(n.rsplit("/", 1)[-1] for n in NAMES)


def test_a_failure_leaves_the_others_alone(tree: Path, out: Path) -> None:
    names = ["hello.txt", "missing.bin", "dir1/f3.bin", "a/../x"]
    with filefetch.Server(root=tree) as server:
        results = filefetch.fetch_many("127.0.0.1", server.port, names, out)
    ok, missing, f3, refused = results
    assert ok.ok and f3.ok
    assert not missing.ok and missing.path is None and missing.size is None
    assert isinstance(missing.error, filefetch.NotFoundError)
    assert isinstance(missing.error, FileNotFoundError)
    # The server refuses a name with ".." as it refuses a missing one.
    assert isinstance(refused.error, filefetch.NotFoundError)
    # Nothing of the failed ones was left behind.
    assert sorted(p.name for p in out.iterdir()) == ["f3.bin", "hello.txt"]


def test_no_file_of_the_list_replaces_another(tree: Path, out: Path) -> None:
    (tree / "dir0" / "hello.txt").write_bytes(b"another hello\n")
    names = ["hello.txt", "dir0/hello.txt"]
    with filefetch.Server(root=tree) as server:
        first, second = filefetch.fetch_many(
            "127.0.0.1", server.port, names, out, overwrite=True
        )
    assert first.ok
    assert isinstance(second.error, filefetch.DestinationExistsError)
    assert (out / "hello.txt").read_bytes() == b"hello, world\n"


def test_existing_files_are_kept_unless_overwrite(tree: Path, out: Path) -> None:
    (out / "hello.txt").write_bytes(b"mine")
    with filefetch.Server(root=tree) as server:
        names = ["hello.txt", "dir0/f2.bin"]
        kept, other = filefetch.fetch_many("127.0.0.1", server.port, names, out)
        assert isinstance(kept.error, filefetch.DestinationExistsError) and other.ok
        assert (out / "hello.txt").read_bytes() == b"mine"
        (replaced,) = filefetch.fetch_many(
            "127.0.0.1", server.port, ["hello.txt"], out, overwrite=True
        )
        assert replaced.ok
        assert (out / "hello.txt").read_bytes() == b"hello, world\n"


def test_into_the_current_directory_by_default(
    tree: Path, out: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(out)
    with filefetch.Server(root=tree) as server:
        (result,) = filefetch.fetch_many("127.0.0.1", server.port, ["dir1/f1.bin"])
    assert result.ok
    assert (out / "f1.bin").read_bytes() == (tree / "dir1" / "f1.bin").read_bytes()


def test_at_most_jobs_at_once(raw_server: StartRaw, out: Path) -> None:
    # Each connection waits until another one is open beside it, then answers: with jobs=2
    # they go two by two, so two are open at once, never more. (The server's threads are
    # Python's: fetch_many releases the GIL, or they could not run.)
    lock = threading.Lock()
    state = {"open": 0, "most": 0}
    pair = threading.Barrier(2, timeout=WAIT)

    def handler(conn: socket.socket) -> None:
        name = read_request(conn)
        with lock:
            state["open"] += 1
            state["most"] = max(state["most"], state["open"])
        pair.wait()
        conn.sendall(response(1, name))
        with lock:
            state["open"] -= 1

    srv = raw_server(handler)
    names = [f"n{i}" for i in range(6)]
    results = filefetch.fetch_many("127.0.0.1", srv.port, names, out, jobs=2, timeout=WAIT)
    assert all(r.ok for r in results), results
    assert state["most"] == 2
    for name in names:
        assert (out / name).read_bytes() == name.encode()


def test_retries_apply_to_each_file(raw_server: StartRaw, out: Path) -> None:
    # Every name's first connection is closed without a response; the second is served.
    lock = threading.Lock()
    seen: dict[bytes, int] = {}

    def handler(conn: socket.socket) -> None:
        name = read_request(conn)
        with lock:
            seen[name] = seen.get(name, 0) + 1
            attempt = seen[name]
        if attempt > 1:
            conn.sendall(response(1, name))

    srv = raw_server(handler)
    names = ["a", "b", "c"]
    failed = filefetch.fetch_many("127.0.0.1", srv.port, names, out)
    assert all(isinstance(r.error, filefetch.ServerClosedError) for r in failed), failed
    seen.clear()
    results = filefetch.fetch_many("127.0.0.1", srv.port, names, out, retries=1, retry_delay=0)
    assert all(r.ok for r in results), results
    assert seen == {b"a": 2, b"b": 2, b"c": 2}


def test_max_size_applies_to_each_file(tree: Path, out: Path) -> None:
    with filefetch.Server(root=tree) as server:
        small, large = filefetch.fetch_many(
            "127.0.0.1", server.port, ["hello.txt", "dir1/f1.bin"], out, max_size=1000
        )
    assert small.ok
    assert isinstance(large.error, filefetch.TooLargeError)
    assert (large.error.size, large.error.limit) == (70_001, 1000)
    assert [p.name for p in out.iterdir()] == ["hello.txt"]


def test_digests(tree: Path, out: Path) -> None:
    names = ["hello.txt", "dir1/f1.bin"]
    digests = {n: hashlib.sha256((tree / n).read_bytes()).hexdigest() for n in names}
    with filefetch.Server(root=tree) as server:
        results = filefetch.fetch_many("127.0.0.1", server.port, names, out, sha256=digests)
        assert all(r.ok for r in results), results
        assert [r.sha256 for r in results] == [digests[n] for n in names]
        for p in out.iterdir():
            p.unlink()
        wrong = dict(digests, **{"dir1/f1.bin": "00" * 32})
        good, bad = filefetch.fetch_many("127.0.0.1", server.port, names, out, sha256=wrong)
    assert good.ok
    assert isinstance(bad.error, filefetch.ChecksumMismatchError)
    assert bad.error.actual == digests["dir1/f1.bin"]
    assert [p.name for p in out.iterdir()] == ["hello.txt"]


def test_digests_computed_on_request(tree: Path, out: Path) -> None:
    names = ["hello.txt", "dir1/f1.bin", "empty.bin"]
    with filefetch.Server(root=tree) as server:
        plain = filefetch.fetch_many("127.0.0.1", server.port, names, out)
        assert [r.sha256 for r in plain] == [None, None, None]
        for p in out.iterdir():
            p.unlink()
        computed = filefetch.fetch_many("127.0.0.1", server.port, names, out, compute_sha256=True)
    assert [r.sha256 for r in computed] == [
        hashlib.sha256((tree / n).read_bytes()).hexdigest() for n in names
    ]


def test_a_name_without_a_digest_fetches_nothing(raw_server: StartRaw, out: Path) -> None:
    connections: list[socket.socket] = []
    srv = raw_server(connections.append)
    with pytest.raises(filefetch.InvalidArgumentError, match='no digest for "b"'):
        filefetch.fetch_many("127.0.0.1", srv.port, ["a", "b"], out, sha256={"a": "00" * 32})
    with pytest.raises(filefetch.InvalidArgumentError, match="sha256"):
        filefetch.fetch_many("127.0.0.1", srv.port, ["a"], out, sha256={"a": "not hex"})
    with pytest.raises(TypeError):
        digest = "00" * 32
        filefetch.fetch_many("127.0.0.1", srv.port, ["a"], out, sha256=digest)  # type: ignore
    assert connections == []
    assert list(out.iterdir()) == []


def test_progress(tree: Path, out: Path) -> None:
    lock = threading.Lock()
    last: dict[str, tuple[int, int]] = {}

    def progress(name: str, received: int, total: int) -> None:
        with lock:
            last[name] = (received, total)

    names = ["hello.txt", "dir1/f3.bin", "dir0/f4.bin"]
    with filefetch.Server(root=tree) as server:
        results = filefetch.fetch_many("127.0.0.1", server.port, names, out, progress=progress)
    assert all(r.ok for r in results), results
    sizes = {n: (tree / n).stat().st_size for n in names}
    assert last == {n: (size, size) for n, size in sizes.items()}


def test_a_progress_exception_fails_its_file_only(tree: Path, out: Path) -> None:
    class Stop(Exception):
        pass

    def progress(name: str, received: int, total: int) -> None:
        if name == "dir1/f3.bin":
            raise Stop(name)

    names = ["hello.txt", "dir1/f3.bin", "dir0/f4.bin"]
    with filefetch.Server(root=tree) as server:
        first, stopped, last = filefetch.fetch_many(
            "127.0.0.1", server.port, names, out, progress=progress
        )
    assert first.ok and last.ok
    assert isinstance(stopped.error, Stop) and stopped.error.args == ("dir1/f3.bin",)
    assert sorted(p.name for p in out.iterdir()) == ["f4.bin", "hello.txt"]


def test_requests_that_are_wrong_as_a_whole(
    raw_server: StartRaw, out: Path, tmp_path: Path
) -> None:
    connections: list[socket.socket] = []
    srv = raw_server(connections.append)
    for jobs in (0, 65, -1, 2**70):
        with pytest.raises(filefetch.InvalidArgumentError, match="jobs"):
            filefetch.fetch_many("127.0.0.1", srv.port, ["a"], out, jobs=jobs)
    a_file = tmp_path / "a-file"
    a_file.write_bytes(b"")
    with pytest.raises(filefetch.InvalidArgumentError, match="directory"):
        filefetch.fetch_many("127.0.0.1", srv.port, ["a", "b"], a_file)
    with pytest.raises(TypeError):
        filefetch.fetch_many("127.0.0.1", srv.port, "abc", out)
    with pytest.raises(filefetch.InvalidArgumentError, match="port"):
        filefetch.fetch_many("127.0.0.1", 0, ["a"], out)
    assert connections == []
    assert filefetch.fetch_many("127.0.0.1", srv.port, [], out) == []
    assert filefetch.fetch_many("127.0.0.1", srv.port, iter([]), out) == []


def test_names_from_any_iterable(tree: Path, out: Path) -> None:
    with filefetch.Server(root=tree) as server:
        results = filefetch.fetch_many(
            "127.0.0.1", server.port, (n for n in ["hello.txt", "dir0/f2.bin"]), out
        )
    assert [r.name for r in results] == ["hello.txt", "dir0/f2.bin"]
    assert all(r.ok for r in results)


FETCH_MANY = """
import sys
import filefetch
try:
    filefetch.fetch_many("127.0.0.1", int(sys.argv[1]), ["a", "b", "c", "d"], sys.argv[2],
                         jobs=2, timeout=600)
except KeyboardInterrupt:
    print("KeyboardInterrupt", flush=True)
else:
    print("returned", flush=True)
"""


def test_ctrl_c_stops_every_fetch_and_leaves_nothing(
    spawn: Spawn, raw_server: StartRaw, out: Path
) -> None:
    # Two fetches hold their connection open in the middle of the data: only Ctrl-C can end
    # them before their 600 s timeout. Their partial files go; the two others never start.
    requested = threading.Semaphore(0)
    release = threading.Event()

    def hold(conn: socket.socket) -> None:
        read_request(conn)
        conn.sendall(response(1, b"x" * 1000, length=1 << 20))
        requested.release()
        release.wait(WAIT)

    srv = raw_server(hold)
    try:
        proc = spawn(python("-c", FETCH_MANY, str(srv.port), str(out)), cwd=out)
        for _ in range(2):
            assert requested.acquire(timeout=WAIT)
        proc.interrupt()
        ended = proc.wait_for(lambda l: l in ("KeyboardInterrupt", "returned"))
        assert ended == "KeyboardInterrupt", proc.seen
        assert proc.finish() == 0
    finally:
        release.set()
    assert list(out.iterdir()) == []
    assert len(srv.threads) == 2
