"""The README's error table, walked row by row: each kind is provoked over loopback and what
Python raises, and what ``python -m filefetch`` exits with, must be what the table says.

The table is the one whose header is ``| kind | meaning | exit code | C status | Python
exception |``; its Python column names the class (the first name in it), the builtin it
derives from ("(a `FileNotFoundError`)"), and refinements ("`ServerClosedError` (also a
`ConnectionError`) for a close without a response")."""

from __future__ import annotations

import builtins
import contextlib
import functools
import re
import signal
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, Callable, Optional

import pytest

import filefetch
from filefetch import _cli
from conftest import REPO, WAIT, RawServer, free_port, read_request, response

StartRaw = Callable[[Callable[[socket.socket], object]], RawServer]

README = REPO / "README.md"

# Every kind of core's ErrorKind. A kind added to the table fails these tests until it gets
# a case below.
KINDS = {
    "NotFound", "DestinationExists", "TimedOut", "Unreachable", "Protocol", "Incomplete",
    "TooLarge", "ChecksumMismatch", "InvalidArgument", "Local", "Aborted", "Interrupted",
}


def error_table() -> dict[str, dict[str, str]]:
    """The rows of the README's error table by kind, each a dict of its cells by column."""
    text = README.read_text(encoding="utf-8")
    start = text.find("| kind | meaning |")
    assert start >= 0, f"{README} has no error table"
    lines = text[start:].splitlines()
    header = [c.strip() for c in lines[0].strip().strip("|").split("|")]
    rows: dict[str, dict[str, str]] = {}
    for line in lines[2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        row = dict(zip(header, cells))
        rows[row["kind"].strip("`")] = row
    assert set(rows) == KINDS, sorted(rows)
    return rows


def named(cell: str) -> list[str]:
    """The names in backquotes in a cell, in order."""
    return re.findall(r"`(\w+)`", cell)


def builtin_bases(cell: str) -> dict[str, str]:
    """Class -> builtin base, from "`Class` (a `Builtin`)" or "(also a `Builtin`)"."""
    return dict(re.findall(r"`(\w+)` \((?:also )?an? `(\w+)`\)", cell))


class Stop(Exception):
    """Raised by a progress callback."""


def stop(received: int, total: int) -> None:
    """A progress callback that aborts the transfer."""
    raise Stop(received, total)


@dataclass
class Case:
    """One way to provoke a kind: a call of fetch (and of fetch_bytes, unless the case is
    about the destination)."""

    kind: str
    port: int
    name: str
    dest: Path
    options: dict[str, Any] = field(default_factory=dict)
    # The class the table names for it; None for a kind that raises an exception of the
    # caller's (the progress callback's, the signal handler's).
    expect: Optional[str] = None
    to_bytes: bool = True
    # When set, KeyboardInterrupt is raised as by Ctrl-C once this event is set.
    interrupt_when: Optional[threading.Event] = None
    # The files the destination directory holds before and must hold after.
    present: list[str] = field(default_factory=list)


@contextlib.contextmanager
def ctrl_c_once(ready: threading.Event) -> Iterator[None]:
    """KeyboardInterrupt from a signal handler, as Ctrl-C raises it, once `ready` is set."""

    def handler(signum: int, frame: Optional[FrameType]) -> None:
        if ready.is_set():
            signal.setitimer(signal.ITIMER_REAL, 0)
            raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, 0.05, 0.05)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture
def cases(
    server: filefetch.Server, raw_server: StartRaw, tmp_path: Path
) -> Iterator[list[Case]]:
    """A case for each kind (two for Protocol), against `server` or raw servers."""
    release = threading.Event()
    requested = threading.Event()

    def holds(conn: socket.socket) -> None:
        read_request(conn)
        requested.set()
        release.wait(WAIT)

    def replies(data: bytes) -> Callable[[socket.socket], None]:
        def reply(conn: socket.socket) -> None:
            read_request(conn)
            conn.sendall(data)

        return reply

    def dest(kind: str) -> Path:
        d = tmp_path / kind
        d.mkdir()
        return d

    exists = dest("DestinationExists")
    (exists / "hello.txt").write_bytes(b"mine")
    port = server.port
    built = [
        Case("NotFound", port, "missing.txt", dest("NotFound")),
        Case("DestinationExists", port, "hello.txt", exists, to_bytes=False,
             present=["hello.txt"]),
        Case("TimedOut", raw_server(holds).port, "slow.bin", dest("TimedOut"),
             {"timeout": 0.2}),
        Case("Unreachable", free_port(), "hello.txt", dest("Unreachable")),
        Case("Protocol", raw_server(replies(b"\x12\x34\x02\x01\x00\x00\x00\x00")).port,
             "x.bin", dest("Protocol")),
        Case("Protocol", raw_server(read_request).port, "x.bin", dest("ServerClosed"),
             expect="ServerClosedError"),
        Case("Incomplete", raw_server(replies(response(1, b"x" * 10, length=100))).port,
             "x.bin", dest("Incomplete")),
        Case("TooLarge", port, "one-mib.bin", dest("TooLarge"), {"max_size": 1000}),
        Case("ChecksumMismatch", port, "hello.txt", dest("ChecksumMismatch"),
             {"sha256": "0" * 64}),
        Case("InvalidArgument", port, "a" * 1025, dest("InvalidArgument")),
        Case("Local", port, "hello.txt", dest("Local") / "missing-dir" / "hello.txt",
             to_bytes=False),
        Case("Aborted", port, "hello.txt", dest("Aborted"), {"progress": stop},
             to_bytes=False),
        Case("Interrupted", raw_server(holds).port, "x.bin", dest("Interrupted"),
             {"timeout": WAIT}, interrupt_when=requested),
    ]
    try:
        yield built
    finally:
        release.set()


def directory(case: Case) -> Path:
    return case.dest if case.dest.is_dir() else case.dest.parent.parent


def leaves_nothing(case: Case) -> None:
    assert sorted(p.name for p in directory(case).iterdir()) == case.present, case.kind


def expected_class(case: Case, cell: str) -> Optional[type[BaseException]]:
    """The class the table's cell gives for the case, checked to be exported and to derive
    from the builtins the cell names; None where the caller's own exception propagates."""
    names = named(cell)
    # Any class the cell names (a fallback such as AbortedError, say) must exist.
    for name in names:
        assert hasattr(filefetch, name) or hasattr(builtins, name), (name, cell)
    if case.kind == "Aborted":
        assert "callback" in cell, cell
        return None
    if case.kind == "Interrupted":
        assert names[0] == "KeyboardInterrupt", cell
        return KeyboardInterrupt
    name = case.expect or names[0]
    assert name in names, (name, cell)
    assert name in filefetch.__all__, name
    cls = getattr(filefetch, name)
    assert issubclass(cls, filefetch.Error), name
    for sub, base in builtin_bases(cell).items():
        assert issubclass(getattr(filefetch, sub), getattr(builtins, base)), (sub, base)
    return cls  # type: ignore[no-any-return]


def provoke(case: Case, call: Callable[[], object]) -> BaseException:
    """What `call` raises (it must raise), with Ctrl-C simulated if the case asks for it."""
    guard = ctrl_c_once(case.interrupt_when) if case.interrupt_when else contextlib.nullcontext()
    with pytest.raises(BaseException) as info, guard:
        call()
    return info.value


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="needs signal.setitimer")
def test_python_exceptions_follow_the_table(cases: list[Case]) -> None:
    table = error_table()
    assert {c.kind for c in cases} == KINDS
    for case in cases:
        cell = table[case.kind]["Python exception"]
        cls = expected_class(case, cell)
        calls: list[Callable[[], object]] = [functools.partial(
            filefetch.fetch, "127.0.0.1", case.port, case.name, case.dest, **case.options
        )]
        if case.to_bytes:
            calls.append(functools.partial(
                filefetch.fetch_bytes, "127.0.0.1", case.port, case.name, **case.options
            ))
        for call in calls:
            raised = provoke(case, call)
            if cls is None:
                assert isinstance(raised, Stop), (case.kind, raised)
            else:
                assert type(raised) is cls, (case.kind, raised)
            leaves_nothing(case)


# The fetch keywords the cases use, as options of the command.
OPTIONS = {"timeout": "--timeout", "max_size": "--max-size", "sha256": "--sha256"}


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="needs signal.setitimer")
def test_command_exit_codes_follow_the_table(
    cases: list[Case], capsys: pytest.CaptureFixture[str]
) -> None:
    table = error_table()
    for case in cases:
        code = int(table[case.kind]["exit code"])
        if "progress" in case.options:
            # The command has no progress callback to abort from; its code is still the
            # table's.
            assert _cli.exit_code(filefetch.AbortedError("aborted")) == code
            continue
        argv = ["fetch", "127.0.0.1", str(case.port), case.name, "-o", str(case.dest)]
        for key, value in case.options.items():
            argv += [OPTIONS[key], str(value)]
        guard = ctrl_c_once(case.interrupt_when) if case.interrupt_when else contextlib.nullcontext()
        with guard:
            got = _cli.main(argv)
        err = capsys.readouterr().err
        assert got == code, (case.kind, err)
        assert err, case.kind
        leaves_nothing(case)
