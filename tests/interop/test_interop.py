"""filefetch as a drop-in companion of the original scripts:
the original client.py fetches from our server, and our client fetches from server.py."""

from __future__ import annotations

import os
import sys

import pytest
from conftest import BIN, ORIGINAL, run

EXIT_PROTOCOL = 6
EXIT_NOT_FOUND = 3


def listing(d):
    return sorted(p.name for p in d.iterdir())


@pytest.mark.parametrize(
    "name,data",
    [
        ("hello.txt", b"hello from filefetch\n" * 50),
        ("random.bin", os.urandom(1 << 20)),
        ("all-bytes.bin", bytes(range(256)) * 64),
        ("empty.txt", b""),
        ("with space.txt", b"spaced"),
    ],
)
def test_original_client_fetches_from_our_server(ours, tmp_path, name, data):
    root, port = ours
    (root / name).write_bytes(data)
    dest = tmp_path / "client"
    dest.mkdir()
    r = run([sys.executable, str(ORIGINAL / "client.py"), "127.0.0.1", str(port), name], cwd=dest)
    assert "Download succeed" in r.stdout, r
    assert f"is {len(data)}" in r.stdout
    assert (dest / name).read_bytes() == data


def test_original_client_missing_file(ours, tmp_path):
    _, port = ours
    dest = tmp_path / "client"
    dest.mkdir()
    r = run([sys.executable, str(ORIGINAL / "client.py"), "127.0.0.1", str(port), "missing.txt"], cwd=dest)
    assert "does not exist on server side" in r.stdout, r
    assert listing(dest) == []


def test_original_client_cannot_escape_our_root(ours, tmp_path):
    root, port = ours
    (tmp_path / "secret.txt").write_text("outside the root")
    dest = tmp_path / "client"
    dest.mkdir()
    r = run([sys.executable, str(ORIGINAL / "client.py"), "127.0.0.1", str(port), "../secret.txt"], cwd=dest)
    assert "does not exist on server side" in r.stdout, r
    assert listing(dest) == []


@pytest.mark.parametrize(
    "name,data",
    [("doc.txt", b"served by the original\n"), ("blob.bin", os.urandom(300_000)), ("zero.bin", b"")],
)
def test_our_client_fetches_from_original_server(original_server, tmp_path, name, data):
    root, port = original_server
    (root / name).write_bytes(data)
    dest = tmp_path / "ours"
    dest.mkdir()
    r = run([str(BIN), "fetch", "127.0.0.1", str(port), name], cwd=dest)
    assert r.returncode == 0, r
    assert f"received {len(data)} bytes" in r.stdout
    assert (dest / name).read_bytes() == data
    assert listing(dest) == [name]


def test_our_client_missing_file_on_original_server(original_server, tmp_path):
    """server.py closes without a response for a missing file: a clear error, no file."""
    _, port = original_server
    dest = tmp_path / "ours"
    dest.mkdir()
    r = run([str(BIN), "fetch", "127.0.0.1", str(port), "missing.txt"], cwd=dest)
    assert r.returncode == EXIT_PROTOCOL, r
    assert "closed the connection without a response" in r.stderr
    assert listing(dest) == []


def test_our_client_never_overwrites(original_server, tmp_path):
    root, port = original_server
    (root / "same.txt").write_bytes(b"remote")
    dest = tmp_path / "ours"
    dest.mkdir()
    (dest / "same.txt").write_bytes(b"local and precious")
    r = run([str(BIN), "fetch", "127.0.0.1", str(port), "same.txt"], cwd=dest)
    assert r.returncode == 4, r
    assert (dest / "same.txt").read_bytes() == b"local and precious"
    assert listing(dest) == ["same.txt"]
