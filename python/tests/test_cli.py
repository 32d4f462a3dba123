"""`python -m filefetch serve|fetch`."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable

import filefetch
from conftest import Process, python

Spawn = Callable[..., Process]


def test_fetch_command(spawn: Spawn, server: filefetch.Server, files: Path, out: Path) -> None:
    args = ["-m", "filefetch", "fetch", "127.0.0.1", str(server.port), "hello.txt", "-o", str(out)]
    proc = spawn(python(*args), cwd=out)
    assert proc.finish() == 0, proc.seen
    assert (out / "hello.txt").read_bytes() == (files / "hello.txt").read_bytes()
    assert any("received 13 bytes" in l for l in proc.seen), proc.seen

    again = spawn(python(*args), cwd=out)
    assert again.finish() == 1
    assert any("destination exists" in l for l in again.seen), again.seen

    forced = spawn(python(*args, "--overwrite", "--timeout", "2.5"), cwd=out)
    assert forced.finish() == 0, forced.seen

    missing = spawn(python("-m", "filefetch", "fetch", "127.0.0.1", str(server.port), "no"), cwd=out)
    assert missing.finish() == 1
    assert any("no such file" in l for l in missing.seen), missing.seen


def test_serve_command(spawn: Spawn, files: Path, out: Path) -> None:
    proc = spawn(
        python("-m", "filefetch", "serve", "0", "--root", str(files), "--host", "127.0.0.1"),
        cwd=out,
    )
    line = proc.wait_for(lambda l: l.startswith("Waiting for connection"))
    assert line is not None, proc.seen
    match = re.search(r"127\.0\.0\.1:(\d+), serving (.*)$", line)
    assert match and Path(match.group(2)) == files, line
    port = int(match.group(1))
    assert filefetch.fetch_bytes("127.0.0.1", port, "hello.txt") == b"hello, world\n"
    assert proc.wait_for(lambda l: '"hello.txt": sent' in l) is not None
    proc.interrupt()
    assert proc.finish() == 0


def test_usage_errors(spawn: Spawn, out: Path) -> None:
    for args in (["-m", "filefetch"], ["-m", "filefetch", "fetch", "h", "1", "f", "--timeout", "0"]):
        proc = spawn(python(*args), cwd=out)
        assert proc.finish() == 2, proc.seen
