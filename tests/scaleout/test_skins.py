"""The same `s3://` root served from the Python module and from the C library, over a real
S3 server (moto): the root URL reaches core through each skin, objects arrive byte for byte
(fetched with the command and with the Python client), and a missing key is StatusCode 0.

The Python module is the installed wheel (`FILEFETCH_PYTHON`: the interpreter of the
environment ./tests/run-python.sh installed it into) and the C library the installed tree
(`FILEFETCH_C_PREFIX`: ./tests/run-c.sh's prefix), so ./test.sh runs these after both.
Either one missing skips its tests, unless `FILEFETCH_SKINS=required` (as ./test.sh sets).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import BUCKET, NOT_FOUND, PREFIX, REPO, MiB, Moto, ask, fetch, sha256, store_env

TARGET = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
PYTHON = Path(os.environ.get("FILEFETCH_PYTHON", TARGET / "py-test-venv" / "bin" / "python"))
C_PREFIX = Path(os.environ.get("FILEFETCH_C_PREFIX", TARGET / "c-api" / "prefix"))
REQUIRED = os.environ.get("FILEFETCH_SKINS") == "required"

OBJECTS = {"small": os.urandom(1000), "two-mib": os.urandom(2 * MiB), "empty": b""}

# `python SCRIPT ROOT`: serves ROOT on 127.0.0.1 until standard input closes.
SERVE_PY = """
import sys, filefetch
with filefetch.Server(0, root=sys.argv[1]) as server:
    print("port", server.port, flush=True)
    sys.stdin.read()
    server.shutdown()
"""


def need(path: Path, what: str) -> Path:
    if not path.exists():
        message = f"{what} not found at {path}"
        if REQUIRED:
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="module")
def store():
    server = Moto()
    try:
        server.bucket()
        for name, data in OBJECTS.items():
            server.put(f"{PREFIX}/{name}", data)
        yield server
    finally:
        server.kill()


@pytest.fixture(scope="module")
def serve_root_c(tmp_path_factory) -> Path:
    """tests/scaleout/serve_root.c, built against the installed library with pkg-config."""
    prefix = need(C_PREFIX / "lib" / "pkgconfig" / "filefetch.pc", "the installed C library").parents[2]
    env = {**os.environ, "PKG_CONFIG_PATH": str(prefix / "lib" / "pkgconfig")}
    flags = subprocess.run(
        ["pkg-config", "--cflags", "--libs", "filefetch"], env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    exe = tmp_path_factory.mktemp("c") / "serve_root"
    cc = os.environ.get("CC") or shutil.which("cc") or "gcc"
    subprocess.run(
        [cc, "-std=c99", "-Wall", "-Werror", "-o", str(exe), str(Path(__file__).with_name("serve_root.c")),
         *flags, f"-Wl,-rpath,{prefix / 'lib'}"],
        check=True,
    )
    return exe


class Served:
    """A skin's server process: started with the root, asked for its port, stopped by closing
    its standard input (a graceful shutdown, which must end with exit status 0)."""

    def __init__(self, args: list[str], env: dict):
        self.p = subprocess.Popen(
            args, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        line = self.p.stdout.readline()
        if not line.startswith("port "):
            self.p.kill()
            _, err = self.p.communicate(timeout=10)
            raise AssertionError(f"{args[0]} did not start: {line!r} {err}")
        self.port = int(line.split()[1])

    def stop(self) -> int:
        self.p.stdin.close()
        try:
            return self.p.wait(timeout=15)
        finally:
            if self.p.poll() is None:
                self.p.kill()
                self.p.wait(timeout=10)


@pytest.fixture(params=["python", "c"])
def served(request, store):
    """The bucket's prefix served by the Python module or by the C library."""
    root = f"s3://{BUCKET}/{PREFIX}"
    env = store_env(store.endpoint)
    if request.param == "python":
        args = [str(need(PYTHON, "the installed wheel's interpreter")), "-c", SERVE_PY, root]
    else:
        args = [str(request.getfixturevalue("serve_root_c")), root]
    server = Served(args, env)
    try:
        yield server
    finally:
        assert server.stop() == 0, server.p.stderr.read()


@pytest.mark.parametrize("name", list(OBJECTS))
def test_objects_arrive_byte_for_byte(served, tmp_path, name):
    done = fetch(served.port, name, tmp_path, "--timeout", "5")
    assert done.returncode == 0, done.stderr
    assert sha256((tmp_path / name).read_bytes()) == sha256(OBJECTS[name])


def test_a_missing_key_is_status_0(served):
    assert ask(served.port, "no-such-key") == NOT_FOUND


def test_the_python_client_fetches_from_the_store(served, tmp_path):
    python = need(PYTHON, "the installed wheel's interpreter")
    script = (
        "import sys, filefetch\n"
        "data = filefetch.fetch_bytes('127.0.0.1', int(sys.argv[1]), 'two-mib', timeout=5.0)\n"
        "open(sys.argv[2], 'wb').write(data)\n"
        "filefetch.fetch('127.0.0.1', int(sys.argv[1]), 'small', sys.argv[3], timeout=5.0)\n"
    )
    got, small = tmp_path / "got", tmp_path / "small"
    subprocess.run([str(python), "-c", script, str(served.port), str(got), str(small)], check=True, timeout=60)
    assert sha256(got.read_bytes()) == sha256(OBJECTS["two-mib"])
    assert small.read_bytes() == OBJECTS["small"]
