#!/usr/bin/env bash
# The Python package, tested as users get it:
#
# 1. a release wheel, built with maturin, whose platform tag maturin's auditwheel check
#    verifies (on Linux: manylinux_2_34, glibc 2.34 or later, the oldest this build machine's
#    symbols allow; an older tag needs a manylinux container or zig);
# 2. installed into a fresh virtual environment (target/py-test-venv), where the tests in
#    python/tests run from a directory outside the source tree (one of them checks that
#    `filefetch` is imported from that environment, another runs its `filefetch-py` command),
#    and the type stubs are checked against the installed module;
# 3. the source distribution, built with `maturin sdist` and installed with pip into another
#    fresh environment (target/py-sdist-venv), which builds it again, in CARGO_TARGET_DIR so
#    that the release build of the wheel is reused, and then imported and used.
#
# Run from anywhere with a virtual environment active (maturin is installed into it):
#   python3 -m venv .venv && . .venv/bin/activate && pip install -U pip && bash tests/run-python.sh
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"

if [ -z "${VIRTUAL_ENV:-}" ]; then
    echo "run-python.sh: activate a virtual environment first (maturin is installed into it)" >&2
    exit 2
fi

target="${CARGO_TARGET_DIR:-$repo/target}"
mkdir -p "$target"
target="$(cd "$target" && pwd)"
export CARGO_TARGET_DIR="$target"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# The interpreter inside a virtual environment, on Unix or Windows.
venv_python() {
    if [ -x "$1/bin/python" ]; then echo "$1/bin/python"; else echo "$1/Scripts/python.exe"; fi
}

# A step's heading, with the seconds the script has run so far.
step() { printf '== %s (at %ds)\n' "$*" "$SECONDS"; }

# A fresh virtual environment at $1 (whatever was there is removed).
fresh_venv() {
    rm -rf "$1"
    python -m venv "$1"
    "$(venv_python "$1")" -m pip install --quiet --upgrade pip
}

python -m pip install --quiet "maturin>=1.9.4,<2"

step "maturin build --release (auditwheel check)"
wheels="$target/py-wheels"
rm -rf "$wheels"
maturin build --quiet --release --locked -m python/Cargo.toml -o "$wheels" \
    --compatibility manylinux_2_34 --auditwheel check
wheel="$(python - "$wheels" <<'EOF'
import pathlib, platform, sys
wheels = list(pathlib.Path(sys.argv[1]).glob("filefetch-*-cp39-abi3-*.whl"))
if len(wheels) != 1:
    sys.exit(f"expected one abi3 wheel in {sys.argv[1]}, found {wheels}")
tag = wheels[0].name.rsplit("-", 1)[1]
if platform.system() == "Linux" and not tag.startswith("manylinux_2_34_"):
    sys.exit(f"{wheels[0].name}: expected a manylinux_2_34 platform tag, not {tag}")
print(wheels[0])
EOF
)"
echo "built $(basename "$wheel")"

step "install the wheel into a fresh environment"
venv="$target/py-test-venv"
fresh_venv "$venv"
py="$(venv_python "$venv")"
"$py" -m pip install --quiet "$wheel" "pytest>=7" "mypy>=1.8"

step "pytest python/tests (against the installed wheel, from $work)"
(cd "$work" && FILEFETCH_TEST_VENV="$venv" "$py" -m pytest "$repo/python/tests" -q)

step "mypy.stubtest filefetch"
(cd "$work" && MYPY_CACHE_DIR="$work/mypy-cache" "$py" -m mypy.stubtest filefetch)

step "maturin sdist, installed with pip into a fresh environment"
sdists="$target/py-sdist"
rm -rf "$sdists"
maturin sdist -m python/Cargo.toml -o "$sdists"
sdist="$(ls "$sdists"/filefetch-*.tar.gz)"
sdist_venv="$target/py-sdist-venv"
fresh_venv "$sdist_venv"
sdist_py="$(venv_python "$sdist_venv")"
# pip builds it with maturin from PyPI, in CARGO_TARGET_DIR: cargo finds the artifacts of the
# wheel above for the same sources, so it compiles only what differs, while a file missing
# from the source distribution still fails the build. No wheel cache: the build always runs.
# Not --locked: the source distribution's workspace has only the crates it needs, so cargo
# prunes the others from its Cargo.lock (the versions stay as locked).
"$sdist_py" -m pip install --quiet --no-cache-dir "$sdist"
(cd "$work" && "$sdist_py" - "$sdist_venv" <<'EOF'
import asyncio, pathlib, sys, tempfile
import filefetch

venv = pathlib.Path(sys.argv[1]).resolve()
where = pathlib.Path(filefetch.__file__).resolve()
if venv not in where.parents:
    sys.exit(f"filefetch imported from {where}, not from {venv}")
with tempfile.TemporaryDirectory() as root:
    (pathlib.Path(root) / "hello.txt").write_bytes(b"hello")
    with filefetch.Server(root=root) as server:
        assert filefetch.fetch_bytes("127.0.0.1", server.port, "hello.txt") == b"hello"
        got = asyncio.run(filefetch.afetch_bytes("127.0.0.1", server.port, "hello.txt"))
        assert got == b"hello"
print(f"the source distribution installs and works ({where})")
EOF
)
step "done"
