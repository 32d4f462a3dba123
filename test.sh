#!/usr/bin/env bash
# Runs every test of filefetch on a fresh machine (Rust toolchain, Python 3 with pip, gcc,
# make): formatting and lints, the Rust unit and integration tests, the interoperability tests
# against the original scripts, bounded fuzzing, the Python package's tests and the C library's
# tests.
# Whatever else is needed (pytest, maturin, valgrind, ...) is installed here, into .venv or
# from the system's packages.
set -euo pipefail
cd "$(dirname "$0")"

step() { printf '\n==> %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo doc (warnings are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked

step "Rust tests"
cargo test --workspace --exclude filefetch-python --locked

step "Fuzzing (bounded: FUZZ_SECONDS per target, 20 by default)"
bash tests/run-fuzz.sh

step "Python environment (.venv)"
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
# shellcheck disable=SC1091
. .venv/bin/activate
python -m pip install --quiet --upgrade pip
python -m pip install --quiet pytest

step "Interoperability with the original scripts"
# The test profile (what `cargo test` just built the library with; its output directory is
# target/debug), so that only the command itself is compiled here.
cargo build -p filefetch-cli --profile test --locked
FILEFETCH_BIN="${CARGO_TARGET_DIR:-$PWD/target}/debug/filefetch" python -m pytest -q tests/interop

if [ -f tests/run-python.sh ]; then
    step "Python package"
    bash tests/run-python.sh
fi

if [ -f tests/run-c.sh ]; then
    step "C library"
    bash tests/run-c.sh
fi

step "all tests passed"
