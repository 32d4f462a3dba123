"""`python -m filefetch serve|fetch`: the Rust command's options and exit codes (every kind's
code against the README's table is in test_error_table.py)."""

from __future__ import annotations

import hashlib
import os
import re
import sys
import sysconfig
from pathlib import Path
from typing import Callable, Optional

import pytest

import filefetch
from filefetch._cli import sha256sum_line
from conftest import Process, python

Spawn = Callable[..., Process]


def fetch_args(port: int, name: str, *more: str) -> list[str]:
    return python("-m", "filefetch", "fetch", "127.0.0.1", str(port), name, *more)


def test_fetch_command(spawn: Spawn, server: filefetch.Server, files: Path, out: Path) -> None:
    args = fetch_args(server.port, "hello.txt", "-o", str(out))
    proc = spawn(args, cwd=out)
    assert proc.finish() == 0, proc.seen
    assert (out / "hello.txt").read_bytes() == (files / "hello.txt").read_bytes()
    assert proc.seen == [f"received 13 bytes into {out / 'hello.txt'}"]

    again = spawn(args, cwd=out)
    assert again.finish() == 4
    assert any("destination exists" in l for l in again.seen), again.seen

    forced = spawn([*args, "--overwrite", "--timeout", "2.5", "-q"], cwd=out)
    assert forced.finish() == 0, forced.seen
    assert forced.seen == []

    missing = spawn(fetch_args(server.port, "no"), cwd=out)
    assert missing.finish() == 3
    assert any("no such file" in l for l in missing.seen), missing.seen
    assert sorted(p.name for p in out.iterdir()) == ["hello.txt"]


def test_fetch_limits(spawn: Spawn, server: filefetch.Server, files: Path, out: Path) -> None:
    size = (files / "one-mib.bin").stat().st_size
    limits = ["--connect-timeout", "2", "--max-time", "60", "--speed-limit", "1",
              "--speed-time", "30"]
    small = spawn(fetch_args(server.port, "one-mib.bin", "--max-size", str(size - 1)), cwd=out)
    assert small.finish() == 9, small.seen
    assert any(f"{size} bytes" in l for l in small.seen), small.seen
    assert list(out.iterdir()) == []

    exact = spawn(
        fetch_args(server.port, "one-mib.bin", "--max-size", str(size), *limits), cwd=out
    )
    assert exact.finish() == 0, exact.seen
    assert (out / "one-mib.bin").read_bytes() == (files / "one-mib.bin").read_bytes()


@pytest.mark.parametrize(
    ("options", "setting"),
    [
        (["--timeout", "0"], "timeout"),
        (["--timeout", "1e19"], "timeout"),
        (["--connect-timeout", "-1"], "connect_timeout"),
        (["--max-time", "0"], "max_time"),
        (["--speed-limit", "-1"], "speed_limit"),
        (["--speed-limit", "10", "--speed-time", "nan"], "speed_time"),
        (["--max-size", "-1"], "max_size"),
        (["--max-size", str(2**70)], "max_size"),
    ],
)
def test_fetch_option_out_of_range(
    spawn: Spawn, server: filefetch.Server, out: Path, options: list[str], setting: str
) -> None:
    proc = spawn(fetch_args(server.port, "hello.txt", *options), cwd=out)
    assert proc.finish() == 2, proc.seen
    assert f"invalid {setting}:" in proc.seen[-1], proc.seen
    assert list(out.iterdir()) == []


@pytest.mark.parametrize(
    ("options", "setting"),
    [
        (["70000"], "port"),
        (["0", "--max-connections", "0"], "max_connections"),
        (["0", "--max-connections", str(2**70)], "max_connections"),
        (["0", "--threads", "-1"], "threads"),
        (["0", "--threads", "100000"], "threads"),
        (["0", "--request-timeout", "1e19"], "request_timeout"),
        (["0", "--send-timeout", "0"], "send_timeout"),
        (["0", "--file-cache", "-1"], "file_cache"),
    ],
)
def test_serve_option_out_of_range(
    spawn: Spawn, files: Path, options: list[str], setting: str
) -> None:
    proc = spawn(
        python("-m", "filefetch", "serve", *options, "--bind", "127.0.0.1", "--root", str(files)),
        cwd=files,
    )
    assert proc.finish() == 2, proc.seen
    assert f"invalid {setting}:" in proc.seen[-1], proc.seen


def waiting_on(proc: Process) -> tuple[str, int, Path]:
    """The address, port and root of the next "Waiting for connection" line."""
    line = proc.wait_for(lambda l: l.startswith("Waiting for connection"))
    assert line is not None, proc.seen
    match = re.match(r"Waiting for connection on (.*):(\d+), serving (.*)$", line)
    assert match, line
    return match.group(1), int(match.group(2)), Path(match.group(3))


@pytest.mark.parametrize("bind", ["--bind", "--host"])
def test_serve_command(spawn: Spawn, files: Path, out: Path, bind: str) -> None:
    # --host is the former name of --bind, kept working.
    proc = spawn(
        python("-m", "filefetch", "serve", "0", "--root", str(files), bind, "127.0.0.1",
               "--threads", "2", "--file-cache", "0", "--portable"),
        cwd=out,
    )
    host, port, root = waiting_on(proc)
    assert (host, root) == ("127.0.0.1", files)
    assert filefetch.fetch_bytes("127.0.0.1", port, "hello.txt") == b"hello, world\n"
    assert proc.wait_for(lambda l: '"hello.txt": sent' in l) is not None
    proc.interrupt()
    assert proc.finish() == 0


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="127.0.0.2 is loopback on Linux")
def test_serve_on_several_addresses(spawn: Spawn, files: Path, out: Path) -> None:
    proc = spawn(
        python("-m", "filefetch", "serve", "0", "--root", str(files),
               "--bind", "127.0.0.1", "--bind", "127.0.0.2"),
        cwd=out,
    )
    first, second = waiting_on(proc), waiting_on(proc)
    assert [first[0], second[0]] == ["127.0.0.1", "127.0.0.2"]
    for host, port, _ in (first, second):
        assert filefetch.fetch_bytes(host, port, "hello.txt") == b"hello, world\n"
    proc.interrupt()
    assert proc.finish() == 0


def test_serve_port_in_use(spawn: Spawn, server: filefetch.Server, files: Path) -> None:
    proc = spawn(
        python("-m", "filefetch", "serve", str(server.port), "--bind", "127.0.0.1",
               "--root", str(files)),
        cwd=files,
    )
    assert proc.finish() == 1, proc.seen
    assert "cannot listen" in proc.seen[-1], proc.seen


def test_fetch_several(
    spawn: Spawn, server: filefetch.Server, files: Path, out: Path, tmp_path: Path
) -> None:
    both = fetch_args(server.port, "hello.txt", "one-mib.bin", "-j", "2", "-o", str(out),
                      "--retry", "2", "--retry-delay", "0.01")
    proc = spawn(both, cwd=out)
    assert proc.finish() == 0, proc.seen
    for name in ("hello.txt", "one-mib.bin"):
        assert (out / name).read_bytes() == (files / name).read_bytes()
    assert f"received 13 bytes into {out / 'hello.txt'}" in proc.seen
    assert f"fetched 2 of 2 files, {13 + (1 << 20)} bytes" in proc.seen

    # Names from a list too; a missing one fails alone, and the status is its own.
    listed = tmp_path / "names.txt"
    listed.write_text("one-mib.bin\r\n\n")
    again = out / "again"
    again.mkdir()
    mixed = spawn(
        fetch_args(server.port, "hello.txt", "no-such", "--from", str(listed), "-o", str(again)),
        cwd=out,
    )
    assert mixed.finish() == 3, mixed.seen
    assert sorted(p.name for p in again.iterdir()) == ["hello.txt", "one-mib.bin"]
    assert any(l.startswith("error: no-such: ") for l in mixed.seen), mixed.seen
    assert "fetched 2 of 3 files, 1048589 bytes; 1 failed" in mixed.seen

    # Several names need a directory to land in.
    not_dir = spawn(fetch_args(server.port, "hello.txt", "empty.bin", "-o",
                               str(tmp_path / "nowhere")), cwd=out)
    assert not_dir.finish() == 2, not_dir.seen


def test_fetch_checksum_list(
    spawn: Spawn, server: filefetch.Server, files: Path, out: Path, tmp_path: Path
) -> None:
    digest = hashlib.sha256((files / "hello.txt").read_bytes()).hexdigest()
    sums = tmp_path / "SUMS"
    sums.write_text(f"{digest.upper()}  hello.txt\n{'0' * 64} *./one-mib.bin\n")
    proc = spawn(fetch_args(server.port, "hello.txt", "one-mib.bin", "--sha256-file", str(sums),
                            "-o", str(out)), cwd=out)
    assert proc.finish() == 10, proc.seen
    assert [p.name for p in out.iterdir()] == ["hello.txt"]

    for more in (["other.txt", "--sha256-file", str(sums)],  # not listed
                 ["empty.bin", "--sha256", digest],  # one digest, two names
                 ["--sha256-file", str(tmp_path / "missing")]):
        usage = spawn(fetch_args(server.port, "hello.txt", *more), cwd=out)
        assert usage.finish() == 2, usage.seen
    nothing = spawn(python("-m", "filefetch", "fetch", "127.0.0.1", str(server.port)), cwd=out)
    assert nothing.finish() == 2, nothing.seen
    assert [p.name for p in out.iterdir()] == ["hello.txt"]


def test_fetch_print_sha256(spawn: Spawn, server: filefetch.Server, files: Path, out: Path) -> None:
    def line(name: str) -> str:
        return f"{hashlib.sha256((files / name).read_bytes()).hexdigest()}  {out / name}"

    one = spawn(fetch_args(server.port, "hello.txt", "-o", str(out), "--print-sha256", "-q"),
                cwd=out)
    assert one.finish() == 0, one.seen
    assert one.seen == [line("hello.txt")]
    two = spawn(fetch_args(server.port, "one-mib.bin", "empty.bin", "no-such", "-o", str(out),
                           "--print-sha256"), cwd=out)
    assert two.finish() == 3, two.seen
    assert line("one-mib.bin") in two.seen and line("empty.bin") in two.seen, two.seen
    assert "fetched 2 of 3 files, 1048576 bytes; 1 failed" in two.seen
    missing = spawn(fetch_args(server.port, "no-such", "--print-sha256"), cwd=out)
    assert missing.finish() == 3, missing.seen
    assert len(missing.seen) == 1 and missing.seen[0].startswith("error: "), missing.seen
    assert "no such file" in missing.seen[0] and "no-such: " not in missing.seen[0]
    assert sha256sum_line("ab", "a\\b\nc") == "\\ab  a\\\\b\\nc"


def test_usage_errors(spawn: Spawn, out: Path) -> None:
    for args in (
        ["-m", "filefetch"],
        ["-m", "filefetch", "fetch", "h", "1", "f", "--timeout", "soon"],
        ["-m", "filefetch", "fetch", "h", "port", "f"],
        ["-m", "filefetch", "serve", "0", "--threads", "many"],
    ):
        proc = spawn(python(*args), cwd=out)
        assert proc.finish() == 2, proc.seen


def test_help_lists_the_exit_codes(spawn: Spawn, out: Path) -> None:
    for command in ("serve", "fetch"):
        proc = spawn(python("-m", "filefetch", command, "--help"), cwd=out)
        assert proc.finish() == 0
        assert any(l.strip().startswith("9    the file is larger") for l in proc.seen), proc.seen


def console_script() -> Optional[Path]:
    """The installed ``filefetch-py`` command, beside this interpreter's other scripts."""
    scripts = Path(sysconfig.get_path("scripts"))
    for name in ("filefetch-py", "filefetch-py.exe"):
        if (scripts / name).is_file():
            return scripts / name
    return None


def test_console_script(spawn: Spawn, server: filefetch.Server, files: Path, out: Path) -> None:
    script = console_script()
    if script is None:
        if os.environ.get("FILEFETCH_TEST_VENV"):
            pytest.fail("the installed wheel has no filefetch-py command")
        pytest.skip("filefetch-py is not installed for this interpreter")
    # Its own name, so that installing the package never shadows the Rust command.
    assert not (script.parent / "filefetch").exists()
    helped = spawn([str(script), "--help"], cwd=out)
    assert helped.finish() == 0, helped.seen
    assert helped.seen[0].startswith("usage: filefetch-py "), helped.seen
    fetched = spawn(
        [str(script), "fetch", "127.0.0.1", str(server.port), "hello.txt", "-o", str(out)], cwd=out
    )
    assert fetched.finish() == 0, fetched.seen
    assert fetched.seen == [f"received 13 bytes into {out / 'hello.txt'}"]
    assert (out / "hello.txt").read_bytes() == (files / "hello.txt").read_bytes()
    missing = spawn([str(script), "fetch", "127.0.0.1", str(server.port), "no"], cwd=out)
    assert missing.finish() == 3


def test_module_keeps_its_name(spawn: Spawn, out: Path) -> None:
    helped = spawn(python("-m", "filefetch", "--help"), cwd=out)
    assert helped.finish() == 0
    assert helped.seen[0].startswith("usage: python -m filefetch "), helped.seen
