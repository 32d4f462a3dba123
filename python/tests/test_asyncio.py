"""The asyncio API: afetch, afetch_bytes and AsyncServer give what fetch, fetch_bytes and
Server give; many transfers share one event loop and a small, fixed set of threads (the
transfers are futures, not threads); cancelling a task drops its transfer at once and leaves
nothing behind; progress callbacks run off the runtime's workers, the last one of a transfer
deciding whether it completes."""

from __future__ import annotations

import asyncio
import gc
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Coroutine
from pathlib import Path
from typing import Any, Callable, Optional, TypeVar

import pytest

import filefetch
from conftest import (
    WAIT,
    Process,
    RawServer,
    free_port,
    python,
    read_request,
    response,
)

StartRaw = Callable[[Callable[[socket.socket], object]], RawServer]
Spawn = Callable[..., Process]
T = TypeVar("T")

# Far more than the socket buffers hold, so that a transfer stays in flight while its
# client reads nothing.
BIG = 32 << 20

# A grace period no test waits out.
LONG = 3600.0


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Runs `coro` in a new event loop, for WAIT seconds at most."""
    return asyncio.run(asyncio.wait_for(coro, 2 * WAIT))


async def until(done: Callable[[], bool]) -> None:
    """Waits (without blocking the loop) until `done()`, for WAIT seconds at most."""
    deadline = time.monotonic() + WAIT
    while not done():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)


async def ends(task: Awaitable[Any]) -> float:
    """Awaits a cancelled `task`: it must raise CancelledError within WAIT seconds. Returns
    how long that took."""
    start = time.monotonic()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(asyncio.shield(task), WAIT)
    return time.monotonic() - start


def os_threads() -> Optional[int]:
    """The threads of this process as the system counts them (Python's and Rust's), where
    the system says."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Threads:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def stalling(sent: bytes) -> Callable[[socket.socket], object]:
    """A handler that answers with `sent` and then stalls, until its server is closed."""

    def handler(conn: socket.socket) -> None:
        read_request(conn)
        conn.sendall(sent)
        stop = threading.Event()
        while not stop.wait(0.05):
            try:
                # Ends when the client goes away.
                conn.settimeout(0.0)
                if conn.recv(1) == b"":
                    return
            except BlockingIOError:
                pass
            except OSError:
                return

    return handler


# --- Results and exceptions: as the blocking functions' --------------------------------------


def test_afetch_returns_what_fetch_returns(
    server: filefetch.Server, files: Path, out: Path, tmp_path: Path
) -> None:
    blocking = tmp_path / "blocking"
    blocking.mkdir()
    for name in ("hello.txt", "empty.bin", "one-mib.bin"):
        want = filefetch.fetch("127.0.0.1", server.port, name, blocking)
        got = run(filefetch.afetch("127.0.0.1", server.port, name, out))
        assert got == out / name and type(got) is type(want)
        assert got.read_bytes() == want.read_bytes() == (files / name).read_bytes()
    # A path as the destination, overwrite, and progress as fetch calls it.
    calls: list[tuple[int, int]] = []
    target = out / "renamed.txt"
    target.write_bytes(b"old")
    got = run(
        filefetch.afetch(
            "127.0.0.1",
            server.port,
            "hello.txt",
            str(target),
            overwrite=True,
            progress=lambda received, total: calls.append((received, total)),
        )
    )
    assert got == target and target.read_bytes() == b"hello, world\n"
    assert calls[0] == (0, 13) and calls[-1] == (13, 13)
    assert sorted(p.name for p in out.iterdir()) == [
        "empty.bin", "hello.txt", "one-mib.bin", "renamed.txt"
    ]


def test_afetch_without_dest_writes_here(
    server: filefetch.Server, out: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(out)
    got = run(filefetch.afetch("127.0.0.1", server.port, "hello.txt"))
    assert got == Path("hello.txt") == filefetch.fetch("127.0.0.1", server.port, "hello.txt",
                                                       overwrite=True)
    assert (out / "hello.txt").read_bytes() == b"hello, world\n"


def test_afetch_bytes_returns_what_fetch_bytes_returns(
    server: filefetch.Server, files: Path
) -> None:
    for name in ("hello.txt", "empty.bin", "one-mib.bin"):
        got = run(filefetch.afetch_bytes("127.0.0.1", server.port, name, max_size=1 << 20))
        assert type(got) is bytes
        assert got == filefetch.fetch_bytes("127.0.0.1", server.port, name)
        assert got == (files / name).read_bytes()


def outcome(call: Callable[[], object]) -> BaseException:
    try:
        call()
    except BaseException as e:  # the test compares what was raised
        return e
    raise AssertionError("no exception")


def same(blocking: BaseException, asynchronous: BaseException) -> None:
    assert type(asynchronous) is type(blocking)
    assert str(asynchronous) == str(blocking)
    for attr in ("size", "limit", "received", "expected", "filename", "errno"):
        assert getattr(asynchronous, attr, None) == getattr(blocking, attr, None), attr


@pytest.mark.parametrize(
    "name, kwargs, cls",
    [
        ("missing.txt", {}, filefetch.NotFoundError),
        ("one-mib.bin", {"max_size": 1000}, filefetch.TooLargeError),
        ("", {}, filefetch.InvalidArgumentError),
        ("hello.txt", {"timeout": 0}, filefetch.InvalidArgumentError),
        ("hello.txt", {"max_time": -1}, filefetch.InvalidArgumentError),
        ("hello.txt", {"speed_limit": 1 << 70}, filefetch.InvalidArgumentError),
    ],
)
def test_same_exceptions(
    server: filefetch.Server, out: Path, name: str, kwargs: dict[str, Any], cls: type
) -> None:
    port = server.port
    for blocking_call, async_call in [
        (
            lambda: filefetch.fetch("127.0.0.1", port, name, out, **kwargs),
            lambda: run(filefetch.afetch("127.0.0.1", port, name, out, **kwargs)),
        ),
        (
            lambda: filefetch.fetch_bytes("127.0.0.1", port, name, **kwargs),
            lambda: run(filefetch.afetch_bytes("127.0.0.1", port, name, **kwargs)),
        ),
    ]:
        blocking = outcome(blocking_call)
        assert isinstance(blocking, cls)
        same(blocking, outcome(async_call))
    assert list(out.iterdir()) == []


def test_same_exceptions_about_the_destination_and_the_connection(
    server: filefetch.Server, out: Path
) -> None:
    (out / "hello.txt").write_bytes(b"mine")
    exists = outcome(lambda: filefetch.fetch("127.0.0.1", server.port, "hello.txt", out))
    assert isinstance(exists, FileExistsError)
    same(exists, outcome(lambda: run(filefetch.afetch("127.0.0.1", server.port, "hello.txt", out))))
    assert (out / "hello.txt").read_bytes() == b"mine"

    port = free_port()
    refused = outcome(lambda: filefetch.fetch_bytes("127.0.0.1", port, "x"))
    assert isinstance(refused, filefetch.ConnectError)
    same(refused, outcome(lambda: run(filefetch.afetch_bytes("127.0.0.1", port, "x"))))

    for bad_port in (0, 65536):
        same(
            outcome(lambda: filefetch.fetch("127.0.0.1", bad_port, "x")),
            outcome(lambda: run(filefetch.afetch("127.0.0.1", bad_port, "x"))),
        )


def test_arguments_are_checked_when_called(out: Path) -> None:
    # Before any event loop runs: nothing is started, the error is raised at once.
    with pytest.raises(filefetch.InvalidArgumentError, match="timeout"):
        filefetch.afetch("127.0.0.1", 1, "x", out, timeout=-1.0)
    with pytest.raises(filefetch.InvalidArgumentError, match="port"):
        filefetch.afetch_bytes("127.0.0.1", 0, "x")
    with pytest.raises(TypeError):
        filefetch.afetch("127.0.0.1", 1, "x", progress=42)  # type: ignore[arg-type]


def test_timeouts_and_incomplete_data_as_fetch(raw_server: StartRaw, out: Path) -> None:
    silent = raw_server(stalling(b""))
    short = raw_server(lambda conn: (read_request(conn), conn.sendall(response(1, b"abc", 10))))
    for srv, kwargs in [(silent, {"timeout": 0.2}), (short, {})]:
        blocking = outcome(lambda: filefetch.fetch("127.0.0.1", srv.port, "x", out, **kwargs))
        assert isinstance(blocking, (filefetch.TimedOutError, filefetch.IncompleteTransferError))
        same(
            blocking,
            outcome(lambda: run(filefetch.afetch("127.0.0.1", srv.port, "x", out, **kwargs))),
        )
        assert list(out.iterdir()) == []


def test_checksum_mismatch_as_fetch(server: filefetch.Server, out: Path) -> None:
    (out / "hello.txt").write_bytes(b"mine")
    wrong = "0" * 64
    for blocking_call, async_call in [
        (
            lambda: filefetch.fetch(
                "127.0.0.1", server.port, "hello.txt", out, overwrite=True, sha256=wrong
            ),
            lambda: run(
                filefetch.afetch(
                    "127.0.0.1", server.port, "hello.txt", out, overwrite=True, sha256=wrong
                )
            ),
        ),
        (
            lambda: filefetch.fetch_bytes("127.0.0.1", server.port, "hello.txt", sha256=wrong),
            lambda: run(
                filefetch.afetch_bytes("127.0.0.1", server.port, "hello.txt", sha256=wrong)
            ),
        ),
    ]:
        blocking = outcome(blocking_call)
        assert isinstance(blocking, filefetch.ChecksumMismatchError)
        same(blocking, outcome(async_call))
    # The existing destination is kept as it was, even with overwrite.
    assert [p.name for p in out.iterdir()] == ["hello.txt"]
    assert (out / "hello.txt").read_bytes() == b"mine"


# --- Progress ---------------------------------------------------------------------------------


class Recorder:
    """A progress callback that records its calls and the threads they came on, notes
    whether two ever overlapped, holds the first call `hold(received, total)` picks until
    released, and takes `pause` seconds over each of the others."""

    def __init__(
        self, hold: Callable[[int, int], bool] = lambda received, total: False, pause: float = 0
    ) -> None:
        self.hold = hold
        self.pause = pause
        self.calls: list[tuple[int, int]] = []
        self.threads: set[int] = set()
        self.inside = 0
        self.overlapped = False
        self.lock = threading.Lock()
        self.held = threading.Event()
        self.release = threading.Event()

    def __call__(self, received: int, total: int) -> None:
        with self.lock:
            self.inside += 1
            self.overlapped |= self.inside > 1
            self.calls.append((received, total))
            self.threads.add(threading.get_ident())
        try:
            if not self.held.is_set() and self.hold(received, total):
                self.held.set()
                assert self.release.wait(WAIT)
            else:
                time.sleep(self.pause)
        finally:
            with self.lock:
                self.inside -= 1

    def check(self, total: int) -> None:
        """The calls of one successful attempt: from (0, total) to (total, total), in order,
        one at a time."""
        assert self.calls[0] == (0, total) and self.calls[-1] == (total, total)
        assert all(t == total for _, t in self.calls)
        received = [r for r, _ in self.calls]
        assert received == sorted(received)
        assert not self.overlapped


def test_progress_calls_in_order_off_the_event_loop(server: filefetch.Server, out: Path) -> None:
    for name, size in [("one-mib.bin", 1 << 20), ("hello.txt", 13), ("empty.bin", 0)]:
        recorder = Recorder()

        async def main() -> Path:
            path = await filefetch.afetch(
                "127.0.0.1", server.port, name, out, progress=recorder
            )
            # Every call was made by the time the result arrives: the last one before it.
            recorder.check(size)
            return path

        assert run(main()) == out / name
        assert (out / name).stat().st_size == size
        # Not on the event loop's thread (which ran `run`, here).
        assert threading.get_ident() not in recorder.threads


def test_progress_exception_propagates(server: filefetch.Server, out: Path) -> None:
    class Stop(Exception):
        pass

    def progress(received: int, total: int) -> None:
        raise Stop(received, total)

    with pytest.raises(Stop) as raised:
        run(filefetch.afetch("127.0.0.1", server.port, "one-mib.bin", out, progress=progress))
    assert raised.value.args == (0, 1 << 20)
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("name", ["hello.txt", "one-mib.bin", "empty.bin"])
def test_an_exception_from_the_last_progress_call_keeps_nothing(
    server: filefetch.Server, out: Path, name: str
) -> None:
    # The last call comes once all the data is in, before the file is moved into place: an
    # exception there still stops the fetch, as it does the blocking one, even when
    # overwriting.
    class Stop(Exception):
        pass

    def progress(received: int, total: int) -> None:
        if received == total:
            raise Stop(received, total)

    target = out / "target"
    target.write_bytes(b"mine")
    kwargs: dict[str, Any] = {"overwrite": True, "progress": progress}
    blocking = outcome(lambda: filefetch.fetch("127.0.0.1", server.port, name, target, **kwargs))
    assert isinstance(blocking, Stop)
    asynchronous = outcome(
        lambda: run(filefetch.afetch("127.0.0.1", server.port, name, target, **kwargs))
    )
    assert type(asynchronous) is Stop and asynchronous.args == blocking.args
    assert [p.name for p in out.iterdir()] == ["target"]
    assert target.read_bytes() == b"mine"


def test_a_progress_callback_holds_up_no_other_transfer(
    server: filefetch.Server, files: Path, out: Path
) -> None:
    # One callback held at its first call: its own transfer goes on up to its last call
    # (which waits for the one in progress), and other transfers run to their end.
    held = Recorder(hold=lambda received, total: received == 0)

    async def main() -> None:
        fetching = asyncio.ensure_future(
            filefetch.afetch("127.0.0.1", server.port, "one-mib.bin", out, progress=held)
        )
        await until(held.held.is_set)
        others = await asyncio.gather(
            filefetch.afetch_bytes("127.0.0.1", server.port, "hello.txt"),
            filefetch.afetch("127.0.0.1", server.port, "hello.txt", out),
        )
        assert others == [b"hello, world\n", out / "hello.txt"]
        # Its last call cannot be made yet, so the file is not in place.
        assert not (out / "one-mib.bin").exists()
        held.release.set()
        assert await fetching == out / "one-mib.bin"
        held.check(1 << 20)

    try:
        run(main())
    finally:
        held.release.set()
    assert (out / "one-mib.bin").read_bytes() == (files / "one-mib.bin").read_bytes()


def test_transfers_held_at_their_last_call_hold_up_no_other(
    server: filefetch.Server, files: Path, out: Path
) -> None:
    # The last call is made inside the fetch, which waits for it: as many transfers held
    # there as the runtime has worker threads, and another transfer still runs. (The other
    # calls are slow, so that one is often in progress as the last one comes.)
    held = [
        Recorder(hold=lambda received, total: received == total, pause=0.005) for _ in range(2)
    ]

    async def main() -> None:
        fetching = [
            asyncio.ensure_future(
                filefetch.afetch(
                    "127.0.0.1", server.port, "one-mib.bin", out / f"{i}.bin", progress=h
                )
            )
            for i, h in enumerate(held)
        ]
        for h in held:
            await until(h.held.is_set)
        # All the data is in, in the temporary files; neither is in place.
        assert sorted(p.suffix for p in out.iterdir()) == [".part", ".part"]
        data = await filefetch.afetch_bytes("127.0.0.1", server.port, "hello.txt")
        assert data == b"hello, world\n"
        for h in held:
            h.release.set()
        assert await asyncio.gather(*fetching) == [out / "0.bin", out / "1.bin"]

    try:
        run(main())
    finally:
        for h in held:
            h.release.set()
    want = (files / "one-mib.bin").read_bytes()
    assert sorted(p.name for p in out.iterdir()) == ["0.bin", "1.bin"]
    assert all((out / f"{i}.bin").read_bytes() == want for i in range(2))


# --- Many transfers in one loop ---------------------------------------------------------------


# A Server in a process of its own, until killed; prints its port.
SERVER_PROCESS = """
import sys, time, filefetch
with filefetch.Server(root=sys.argv[1], threads=2) as server:
    print(server.port, flush=True)
    time.sleep(3600)
"""


def test_hundred_concurrent_fetches_on_a_few_threads(
    spawn: Spawn, files: Path, out: Path
) -> None:
    # The server runs in another process, so that only the client's threads are counted.
    proc = spawn(python("-c", SERVER_PROCESS, str(files)), cwd=files)
    line = proc.wait_for(str.isdigit)
    assert line is not None, proc.seen
    port = int(line)
    want = (files / "one-mib.bin").read_bytes()
    recorders = [Recorder() for _ in range(50)]

    async def main() -> tuple[list[Path], list[bytes], Optional[int], int]:
        peak = 0
        done = False

        async def sample() -> None:
            nonlocal peak
            while not done:
                peak = max(peak, os_threads() or 0)
                await asyncio.sleep(0.001)

        before = os_threads()
        sampler = asyncio.ensure_future(sample())
        paths = asyncio.gather(
            *(
                filefetch.afetch(
                    "127.0.0.1",
                    port,
                    "one-mib.bin",
                    out / f"{i}.bin",
                    progress=recorders[i] if i < len(recorders) else None,
                )
                for i in range(100)
            )
        )
        data = asyncio.gather(
            *(filefetch.afetch_bytes("127.0.0.1", port, "hello.txt") for _ in range(100))
        )
        results = await asyncio.gather(paths, data)
        done = True
        await sampler
        return results[0], results[1], before, peak

    paths, data, before, peak = run(main())
    assert paths == [out / f"{i}.bin" for i in range(100)]
    assert all(p.read_bytes() == want for p in paths)
    assert sorted(out.iterdir()) == sorted(paths)  # no temporary file left
    assert data == [b"hello, world\n"] * 100
    for recorder in recorders:
        recorder.check(1 << 20)
    if before is None:
        pytest.skip("this system does not say how many threads a process has")
    # 200 transfers in flight at once on the runtime's few threads, made when first used.
    assert peak - before <= 8, (before, peak)


def test_many_stalled_transfers_all_run_and_all_cancel(raw_server: StartRaw, out: Path) -> None:
    # No slot to wait for: every transfer is under way at once (each receiving into its
    # temporary file), and cancelling them all ends them all, leaving nothing behind.
    srv = raw_server(stalling(response(1, b"x" * 1000, length=1 << 20)))
    recorders = [Recorder() for _ in range(40)]

    async def main() -> None:
        tasks = [
            asyncio.ensure_future(
                filefetch.afetch(
                    "127.0.0.1", srv.port, "f.bin", out / f"{i}.bin", timeout=LONG, progress=r
                )
            )
            for i, r in enumerate(recorders)
        ]
        await until(lambda: all(r.calls for r in recorders))
        assert [p.suffix for p in out.iterdir()] == [".part"] * 40
        for task in tasks:
            task.cancel()
        for task in tasks:
            await ends(task)
        assert list(out.iterdir()) == []

    run(main())


# --- Cancelling -------------------------------------------------------------------------------


class HalfThenStall:
    """An asyncio server (in the test's loop) that announces `size` bytes, sends half of them
    and stalls until the client goes away."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.server: Optional[asyncio.AbstractServer] = None
        self.port = 0

    async def __aenter__(self) -> HalfThenStall:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            header = await reader.readexactly(5)
            await reader.readexactly(int.from_bytes(header[3:5], "big"))
            writer.write(response(1, b"h" * (self.size // 2), length=self.size))
            await writer.drain()
            while await reader.read(1 << 16):
                pass
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


HALF = 1 << 20


@pytest.mark.parametrize("existing", [False, True])
def test_cancelling_mid_transfer_leaves_nothing(out: Path, existing: bool) -> None:
    target = out / "big.bin"
    if existing:
        target.write_bytes(b"mine")

    async def main() -> None:
        async with HalfThenStall(2 * HALF) as srv:
            recorder = Recorder()
            task = asyncio.ensure_future(
                filefetch.afetch(
                    "127.0.0.1", srv.port, "big.bin", target, overwrite=existing,
                    timeout=LONG, progress=recorder,
                )
            )
            # Half of the data is in the temporary file; the rest never comes.
            await until(lambda: recorder.calls[-1:] == [(HALF, 2 * HALF)])
            assert sorted(p.suffix for p in out.iterdir()) == [".bin", ".part"][1 - existing:]
            task.cancel()
            await ends(task)
            # Nothing left, the moment CancelledError arrives.
            assert list(out.iterdir()) == ([target] if existing else [])

    run(main())
    if existing:
        assert target.read_bytes() == b"mine"


@pytest.mark.parametrize("existing", [False, True])
def test_a_wait_for_timeout_leaves_nothing(out: Path, existing: bool) -> None:
    target = out / "big.bin"
    if existing:
        target.write_bytes(b"mine")

    async def main() -> None:
        async with HalfThenStall(2 * HALF) as srv:
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(
                    filefetch.afetch(
                        "127.0.0.1", srv.port, "big.bin", target, overwrite=existing,
                        timeout=LONG,
                    ),
                    0.5,
                )
            assert list(out.iterdir()) == ([target] if existing else [])
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(
                    filefetch.afetch_bytes("127.0.0.1", srv.port, "big.bin", timeout=LONG), 0.5
                )

    run(main())
    if existing:
        assert target.read_bytes() == b"mine"


@pytest.mark.parametrize("sent", [b"", response(1, b"x" * 100_000, length=1 << 30)])
def test_cancelling_afetch_stops_it_and_leaves_nothing(
    raw_server: StartRaw, out: Path, sent: bytes
) -> None:
    # The server sends the header and some data, or nothing, then stalls: only cancelling
    # can end the fetch before its (hour-long) timeout.
    srv = raw_server(stalling(sent))

    async def main() -> None:
        arrived = threading.Event()

        def progress(received: int, total: int) -> None:
            if received:
                arrived.set()

        task = asyncio.ensure_future(
            filefetch.afetch(
                "127.0.0.1", srv.port, "big.bin", out, timeout=LONG, progress=progress
            )
        )
        if sent:
            await until(arrived.is_set)
            assert [p.suffix for p in out.iterdir()] == [".part"]
        else:
            await asyncio.sleep(0.2)
        task.cancel()
        await ends(task)
        # Nothing left, the moment CancelledError arrives.
        assert list(out.iterdir()) == []

    run(main())
    assert not srv.errors


def test_cancelling_afetch_bytes_stops_it(raw_server: StartRaw) -> None:
    srv = raw_server(stalling(response(1, b"x" * 100_000, length=64 << 20)))

    async def main() -> None:
        task = asyncio.ensure_future(
            filefetch.afetch_bytes("127.0.0.1", srv.port, "big.bin", timeout=LONG)
        )
        await asyncio.sleep(0.3)
        task.cancel()
        await ends(task)

    run(main())


def test_wait_for_timeout_cancels_the_transfer(raw_server: StartRaw, out: Path) -> None:
    srv = raw_server(stalling(response(1, b"x" * 100_000, length=1 << 30)))

    async def main() -> None:
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(
                filefetch.afetch("127.0.0.1", srv.port, "big.bin", out, timeout=LONG), 0.5
            )
        assert list(out.iterdir()) == []

    run(main())


def test_a_discarded_loop_stops_its_transfers(raw_server: StartRaw, out: Path) -> None:
    # A loop closed with a transfer in flight, its task then collected: the coroutine is
    # closed without being resumed, and the transfer stops and cleans up on its own.
    srv = raw_server(stalling(response(1, b"x" * 100_000, length=1 << 30)))
    loop = asyncio.new_event_loop()
    try:
        task = loop.create_task(
            filefetch.afetch("127.0.0.1", srv.port, "big.bin", out, timeout=LONG)
        )
        deadline = time.monotonic() + WAIT
        while not list(out.iterdir()):
            assert time.monotonic() < deadline
            loop.run_until_complete(asyncio.sleep(0.01))
    finally:
        loop.close()
    del task
    gc.collect()
    deadline = time.monotonic() + WAIT
    while list(out.iterdir()):
        assert time.monotonic() < deadline, list(out.iterdir())
        time.sleep(0.01)


# --- AsyncServer ------------------------------------------------------------------------------


def test_async_server_serves(files: Path) -> None:
    async def main() -> None:
        async with filefetch.AsyncServer(root=files) as server:
            assert server.address == ("127.0.0.1", server.port)
            assert server.addresses == [server.address]
            assert not server.closed
            data = await filefetch.afetch_bytes("127.0.0.1", server.port, "hello.txt")
            assert data == b"hello, world\n"
            # The blocking client too, from a thread: the loop is not needed to serve.
            loop = asyncio.get_running_loop()
            data = await loop.run_in_executor(
                None, lambda: filefetch.fetch_bytes("127.0.0.1", server.port, "hello.txt")
            )
            assert data == b"hello, world\n"
        assert server.closed
        assert repr(server).endswith(" closed>")
        with pytest.raises(filefetch.ConnectError):
            await filefetch.afetch_bytes("127.0.0.1", server.port, "hello.txt")

    run(main())


def test_async_server_arguments_as_server(files: Path) -> None:
    for kwargs in ({"threads": -1}, {"grace_period": float("nan")}, {"port": 70000}):
        same(
            outcome(lambda: filefetch.Server(root=files, **kwargs)),
            outcome(lambda: filefetch.AsyncServer(root=files, **kwargs)),
        )
    with pytest.raises(filefetch.LocalError):
        filefetch.AsyncServer(root=files / "missing")


class Held:
    """A progress callback for the blocking fetch, which calls it on the fetch's own thread:
    holds the fetch at the start, until released, so that the server's transfer stays in
    flight meanwhile."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()

    def __call__(self, received: int, total: int) -> None:
        if not self.started.is_set():
            self.started.set()
            assert self.release.wait(WAIT)


def held_fetch(port: int, out: Path, held: Held) -> asyncio.Future[Path]:
    """The blocking fetch of "big.bin", held by `held`, on a thread of the loop's executor."""
    loop = asyncio.get_running_loop()
    return loop.run_in_executor(
        None, lambda: filefetch.fetch("127.0.0.1", port, "big.bin", out, progress=held)
    )


def test_shutdown_lets_a_transfer_in_flight_finish(files: Path, out: Path) -> None:
    data = os.urandom(BIG)
    (files / "big.bin").write_bytes(data)
    held = Held()

    async def main() -> None:
        async with filefetch.AsyncServer(root=files, grace_period=LONG) as server:
            fetching = held_fetch(server.port, out, held)
            await until(held.started.is_set)
            stopping = asyncio.ensure_future(server.shutdown())
            await asyncio.sleep(0.3)
            # Waiting for the transfer; no longer accepting.
            assert not stopping.done()
            with pytest.raises(filefetch.ConnectError):
                await filefetch.afetch_bytes("127.0.0.1", server.port, "hello.txt")
            held.release.set()
            assert await asyncio.wait_for(fetching, WAIT) == out / "big.bin"
            await asyncio.wait_for(stopping, WAIT)
            assert server.closed
            await server.shutdown()  # again: nothing to do

    try:
        run(main())
    finally:
        held.release.set()
    assert (out / "big.bin").read_bytes() == data


def test_cancelled_shutdown_and_aclose_stop_at_once(files: Path, out: Path) -> None:
    (files / "big.bin").write_bytes(os.urandom(BIG))
    held = Held()

    async def main() -> None:
        server = filefetch.AsyncServer(root=files, grace_period=LONG)
        fetching = held_fetch(server.port, out, held)
        await until(held.started.is_set)
        stopping = asyncio.ensure_future(server.shutdown())
        await asyncio.sleep(0.2)
        stopping.cancel()
        await ends(stopping)
        assert server.closed
        held.release.set()
        # The transfer was cut: the fetch fails and leaves nothing.
        with pytest.raises(filefetch.Error):
            await asyncio.wait_for(fetching, WAIT)
        await server.aclose()

    try:
        run(main())
    finally:
        held.release.set()
    assert list(out.iterdir()) == []


def test_leaving_the_block_stops_at_once(files: Path, out: Path) -> None:
    (files / "big.bin").write_bytes(os.urandom(BIG))
    held = Held()

    async def main() -> None:
        async with filefetch.AsyncServer(root=files, grace_period=LONG) as server:
            fetching = held_fetch(server.port, out, held)
            await until(held.started.is_set)
        assert server.closed
        held.release.set()
        with pytest.raises(filefetch.Error):
            await asyncio.wait_for(fetching, WAIT)

    try:
        run(main())
    finally:
        held.release.set()
    assert list(out.iterdir()) == []


def test_waiting_for_the_server_takes_no_thread(files: Path) -> None:
    # Every wait for the server's end is a future: many waiters, and a few stops, add no
    # thread each.
    async def main() -> tuple[Optional[int], Optional[int]]:
        server = filefetch.AsyncServer(root=files, threads=1)
        assert await filefetch.afetch_bytes("127.0.0.1", server.port, "hello.txt")
        before = os_threads()
        waiters = [asyncio.ensure_future(server.serve_forever()) for _ in range(50)]
        await asyncio.sleep(0.1)
        during = os_threads()
        assert not any(w.done() for w in waiters)
        stops = [asyncio.ensure_future(server.shutdown()) for _ in range(10)]
        stops.append(asyncio.ensure_future(server.aclose()))
        await asyncio.wait_for(asyncio.gather(*waiters, *stops), WAIT)
        assert server.closed
        return before, during

    before, during = run(main())
    if before is None or during is None:
        pytest.skip("this system does not say how many threads a process has")
    assert during - before <= 8, (before, during)


def test_serve_forever_and_close(files: Path) -> None:
    async def main() -> None:
        server = filefetch.AsyncServer(root=files)
        serving = asyncio.ensure_future(server.serve_forever())
        await asyncio.sleep(0.1)
        assert not serving.done()
        # Cancelling serve_forever leaves the server running.
        serving.cancel()
        await ends(serving)
        assert await filefetch.afetch_bytes("127.0.0.1", server.port, "hello.txt")
        serving = asyncio.ensure_future(server.serve_forever())
        server.close()
        await asyncio.wait_for(serving, WAIT)
        assert server.closed
        server.close()
        await server.aclose()

    run(main())


@pytest.mark.skipif(sys.platform == "win32", reason="runs the interpreter to its end")
def test_interpreter_exits_cleanly_after_asyncio_use(files: Path, tmp_path: Path) -> None:
    # The runtime's threads hand outcomes to the event loop; the program may end right after
    # the last one. Repeated, as an exit racing such a thread would crash now and then.
    script = tmp_path / "exit.py"
    script.write_text(
        "import asyncio, sys, tempfile, filefetch\n"
        "async def main():\n"
        "    async with filefetch.AsyncServer(root=sys.argv[1]) as server:\n"
        "        await filefetch.afetch_bytes('127.0.0.1', server.port, 'hello.txt')\n"
        "        try:\n"
        "            await filefetch.afetch_bytes('127.0.0.1', server.port, 'missing')\n"
        "        except filefetch.NotFoundError:\n"
        "            pass\n"
        "        with tempfile.TemporaryDirectory() as out:\n"
        "            await filefetch.afetch('127.0.0.1', server.port, 'one-mib.bin', out,\n"
        "                                   progress=lambda received, total: None)\n"
        "            task = asyncio.ensure_future(filefetch.afetch(\n"
        "                '127.0.0.1', server.port, 'one-mib.bin', out, overwrite=True,\n"
        "                progress=lambda received, total: None))\n"
        "            await asyncio.sleep(0)\n"
        "            task.cancel()\n"
        "            await asyncio.gather(task, return_exceptions=True)\n"
        "        await server.shutdown()\n"
        "asyncio.run(main())\n"
    )
    for _ in range(10):
        done = subprocess.run(
            [sys.executable, str(script), str(files)],
            capture_output=True,
            text=True,
            timeout=WAIT,
        )
        assert done.returncode == 0, done.stdout + done.stderr
