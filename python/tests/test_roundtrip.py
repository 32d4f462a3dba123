"""Files go through Server + fetch / fetch_bytes unchanged, wherever they are asked to land."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

import filefetch

BIG = 50 << 20


@pytest.fixture(scope="module")
def big_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("big")
    (root / "big.bin").write_bytes(os.urandom(BIG))
    return root


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("name", ["empty.bin", "hello.txt", "one-mib.bin"])
def test_fetch_round_trip(server: filefetch.Server, files: Path, out: Path, name: str) -> None:
    path = filefetch.fetch("127.0.0.1", server.port, name, out)
    assert path == out / name
    assert isinstance(path, Path)
    assert path.read_bytes() == (files / name).read_bytes()
    assert sorted(os.listdir(out)) == [name]


@pytest.mark.parametrize("name", ["empty.bin", "hello.txt", "one-mib.bin"])
def test_fetch_bytes_round_trip(server: filefetch.Server, files: Path, name: str) -> None:
    data = filefetch.fetch_bytes("127.0.0.1", server.port, name)
    assert isinstance(data, bytes)
    assert data == (files / name).read_bytes()


def test_fifty_mib(big_root: Path, out: Path) -> None:
    seen: list[tuple[int, int]] = []
    expected = digest((big_root / "big.bin").read_bytes())
    with filefetch.Server(root=big_root) as server:
        path = filefetch.fetch(
            "127.0.0.1", server.port, "big.bin", out, timeout=5.0,
            progress=lambda received, total: seen.append((received, total)),
        )
        data = filefetch.fetch_bytes("127.0.0.1", server.port, "big.bin", timeout=5.0)
    assert path.stat().st_size == BIG
    assert digest(path.read_bytes()) == expected
    assert len(data) == BIG and digest(data) == expected
    # Progress starts at 0, only grows, and ends at the total.
    assert seen[0] == (0, BIG) and seen[-1] == (BIG, BIG)
    assert all(total == BIG for _, total in seen)
    assert all(a[0] <= b[0] for a, b in zip(seen, seen[1:]))


def test_destinations(server: filefetch.Server, files: Path, out: Path,
                      monkeypatch: pytest.MonkeyPatch) -> None:
    content = (files / "hello.txt").read_bytes()
    # A str naming a file, a path-like naming a file, a directory, and the default.
    assert filefetch.fetch("127.0.0.1", server.port, "hello.txt", str(out / "a.txt")) == out / "a.txt"
    assert filefetch.fetch("127.0.0.1", server.port, "hello.txt", out / "b.txt") == out / "b.txt"
    sub = out / "sub"
    sub.mkdir()
    assert filefetch.fetch("127.0.0.1", server.port, "hello.txt", sub) == sub / "hello.txt"
    monkeypatch.chdir(out)
    landed = filefetch.fetch("127.0.0.1", server.port, "hello.txt")
    assert (out / landed).resolve() == (out / "hello.txt").resolve()
    for name in ["a.txt", "b.txt", "sub/hello.txt", "hello.txt"]:
        assert (out / name).read_bytes() == content


def test_overwrite_replaces(server: filefetch.Server, files: Path, out: Path) -> None:
    dest = out / "hello.txt"
    dest.write_bytes(b"old")
    path = filefetch.fetch("127.0.0.1", server.port, "hello.txt", dest, overwrite=True)
    assert path.read_bytes() == (files / "hello.txt").read_bytes()
    assert os.listdir(out) == ["hello.txt"]


def test_names_are_confined_to_the_root(server: filefetch.Server, files: Path) -> None:
    (files.parent / "secret.txt").write_bytes(b"secret")
    with pytest.raises(filefetch.NotFoundError):
        filefetch.fetch_bytes("127.0.0.1", server.port, "../secret.txt")


def test_server_properties(files: Path) -> None:
    server = filefetch.Server(0, str(files))
    try:
        assert server.address == ("127.0.0.1", server.port)
        assert 0 < server.port < 65536
        assert not server.closed
        assert str(server.port) in repr(server)
    finally:
        server.close()
    assert server.closed
    server.close()  # a second close does nothing
    with pytest.raises(filefetch.ConnectError):
        filefetch.fetch_bytes("127.0.0.1", server.port, "hello.txt")
