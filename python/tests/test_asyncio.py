"""The asyncio API: afetch, afetch_bytes and AsyncServer give what fetch, fetch_bytes and
Server give; many transfers share one event loop and a bounded set of threads; cancelling a
task stops its transfer at once and leaves nothing behind."""

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
from conftest import WAIT, RawServer, free_port, read_request, response

StartRaw = Callable[[Callable[[socket.socket], object]], RawServer]
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


def test_progress_exception_propagates(server: filefetch.Server, out: Path) -> None:
    class Stop(Exception):
        pass

    def progress(received: int, total: int) -> None:
        raise Stop(received, total)

    with pytest.raises(Stop) as raised:
        run(filefetch.afetch("127.0.0.1", server.port, "one-mib.bin", out, progress=progress))
    assert raised.value.args == (0, 1 << 20)
    assert list(out.iterdir()) == []


# --- Many transfers in one loop ---------------------------------------------------------------


def test_hundred_concurrent_fetches(files: Path, out: Path) -> None:
    want = (files / "one-mib.bin").read_bytes()
    before = os_threads()

    async def main() -> tuple[list[bytes], list[Path], int]:
        peak = 0
        done = False

        async def sample() -> None:
            nonlocal peak
            while not done:
                peak = max(peak, os_threads() or 0)
                await asyncio.sleep(0.001)

        with filefetch.Server(root=files, threads=2) as server:
            sampler = asyncio.ensure_future(sample())
            data = asyncio.gather(
                *(filefetch.afetch_bytes("127.0.0.1", server.port, "one-mib.bin")
                  for _ in range(100))
            )
            paths = asyncio.gather(
                *(filefetch.afetch("127.0.0.1", server.port, "hello.txt", out / f"{i}.txt")
                  for i in range(100))
            )
            results = await asyncio.gather(data, paths)
            done = True
            await sampler
        return results[0], results[1], peak

    data, paths, peak = run(main())
    assert len(data) == 100 and all(d == want for d in data)
    assert paths == [out / f"{i}.txt" for i in range(100)]
    assert all(p.read_bytes() == b"hello, world\n" for p in paths)
    assert len(list(out.iterdir())) == 100
    if before is None:
        pytest.skip("this system does not say how many threads a process has")
    # 200 transfers in flight; a thread per call would be over 200.
    assert peak < 40, (before, peak)


def test_calls_past_the_running_ones_wait_and_can_be_cancelled(
    raw_server: StartRaw, out: Path
) -> None:
    # More stalled transfers than run at once: the later ones wait for a slot, and
    # cancelling them all ends them all at once, leaving nothing behind.
    srv = raw_server(stalling(response(1, b"x" * 1000, length=1 << 20)))

    async def main() -> None:
        tasks = [
            asyncio.ensure_future(
                filefetch.afetch("127.0.0.1", srv.port, "f.bin", out / f"{i}.bin", timeout=LONG)
            )
            for i in range(40)
        ]
        await until(lambda: len(list(out.iterdir())) >= 16)
        for task in tasks:
            task.cancel()
        for task in tasks:
            assert await ends(task) < WAIT

    run(main())
    assert list(out.iterdir()) == []


# --- Cancelling -------------------------------------------------------------------------------


@pytest.mark.parametrize("sent", [b"", response(1, b"x" * 100_000, length=1 << 30)])
def test_cancelling_afetch_stops_it_and_leaves_nothing(
    raw_server: StartRaw, out: Path, sent: bytes
) -> None:
    # The server sends the header and some data, or nothing, then stalls: only cancelling
    # can end the fetch before its (hour-long) timeout.
    srv = raw_server(stalling(sent))

    async def main() -> float:
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
        took = await ends(task)
        # Nothing left, the moment CancelledError arrives.
        assert list(out.iterdir()) == []
        return took

    assert run(main()) < 5.0
    assert not srv.errors


def test_cancelling_afetch_bytes_stops_it(raw_server: StartRaw) -> None:
    srv = raw_server(stalling(response(1, b"x" * 100_000, length=64 << 20)))

    async def main() -> float:
        task = asyncio.ensure_future(
            filefetch.afetch_bytes("127.0.0.1", srv.port, "big.bin", timeout=LONG)
        )
        await asyncio.sleep(0.3)
        task.cancel()
        return await ends(task)

    assert run(main()) < 5.0


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
    """A progress callback that holds its fetch (on the runtime's thread) at the start, until
    released: the server's transfer stays in flight meanwhile."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()

    def __call__(self, received: int, total: int) -> None:
        if not self.started.is_set():
            self.started.set()
            assert self.release.wait(WAIT)


def test_shutdown_lets_a_transfer_in_flight_finish(files: Path, out: Path) -> None:
    data = os.urandom(BIG)
    (files / "big.bin").write_bytes(data)
    held = Held()

    async def main() -> None:
        async with filefetch.AsyncServer(root=files, grace_period=LONG) as server:
            fetching = asyncio.ensure_future(
                filefetch.afetch("127.0.0.1", server.port, "big.bin", out, progress=held)
            )
            await until(held.started.is_set)
            stopping = asyncio.ensure_future(server.shutdown())
            await asyncio.sleep(0.3)
            # Waiting for the transfer; no longer accepting.
            assert not stopping.done()
            with pytest.raises(filefetch.ConnectError):
                await filefetch.afetch_bytes("127.0.0.1", server.port, "hello.txt")
            held.release.set()
            assert await fetching == out / "big.bin"
            await asyncio.wait_for(stopping, WAIT)
            assert server.closed
            await server.shutdown()  # again: nothing to do

    run(main())
    assert (out / "big.bin").read_bytes() == data


def test_cancelled_shutdown_and_aclose_stop_at_once(files: Path, out: Path) -> None:
    (files / "big.bin").write_bytes(os.urandom(BIG))
    held = Held()

    async def main() -> None:
        server = filefetch.AsyncServer(root=files, grace_period=LONG)
        fetching = asyncio.ensure_future(
            filefetch.afetch("127.0.0.1", server.port, "big.bin", out, progress=held)
        )
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

    run(main())
    assert list(out.iterdir()) == []


def test_leaving_the_block_stops_at_once(files: Path, out: Path) -> None:
    (files / "big.bin").write_bytes(os.urandom(BIG))
    held = Held()

    async def main() -> None:
        async with filefetch.AsyncServer(root=files, grace_period=LONG) as server:
            fetching = asyncio.ensure_future(
                filefetch.afetch("127.0.0.1", server.port, "big.bin", out, progress=held)
            )
            await until(held.started.is_set)
        assert server.closed
        held.release.set()
        with pytest.raises(filefetch.Error):
            await asyncio.wait_for(fetching, WAIT)

    run(main())
    assert list(out.iterdir()) == []


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
        "import asyncio, sys, filefetch\n"
        "async def main():\n"
        "    async with filefetch.AsyncServer(root=sys.argv[1]) as server:\n"
        "        await filefetch.afetch_bytes('127.0.0.1', server.port, 'hello.txt')\n"
        "        try:\n"
        "            await filefetch.afetch_bytes('127.0.0.1', server.port, 'missing')\n"
        "        except filefetch.NotFoundError:\n"
        "            pass\n"
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
