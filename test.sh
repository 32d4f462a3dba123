#!/usr/bin/env bash
# Runs every test of filefetch on a fresh machine (Rust toolchain, Python 3 with pip, gcc,
# make): formatting and lints (for Linux, Windows, macOS on x86-64 and arm64, and FreeBSD),
# the Rust unit and integration tests, the interoperability tests against the original
# scripts, bounded fuzzing, the Python package's tests, the C library's tests, and the
# Windows builds: the core, command and C tests run under Wine, and the Python wheel built.
# Whatever else is needed (pytest, maturin, valgrind, mingw-w64, Wine, rustup's targets...)
# is installed here, into .venv, from the system's packages or with rustup.
set -euo pipefail
cd "$(dirname "$0")"

# A step's heading, with the minutes and seconds the command has run so far.
step() { printf '\n==> %s (at %dm%02ds)\n' "$*" $((SECONDS / 60)) $((SECONDS % 60)); }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

# The other supported systems: checking needs only rustup's standard library for each.
OTHER_TARGETS=(x86_64-pc-windows-gnu x86_64-apple-darwin aarch64-apple-darwin x86_64-unknown-freebsd)
installed="$(rustup target list --installed)"
for target in "${OTHER_TARGETS[@]}"; do
    grep -qx "$target" <<<"$installed" || rustup target add "$target"
done
for target in "${OTHER_TARGETS[@]}"; do
    step "cargo clippy --target $target (all targets, warnings are errors)"
    cargo clippy --workspace --all-targets --locked --target "$target" -- -D warnings
done

step "cargo doc (warnings are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked

step "cargo package -p filefetch (the crate as crates.io would get it, built from the package)"
cargo package -p filefetch --locked --allow-dirty

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
# The command `cargo test` just built (target/debug/filefetch): asking for the same build
# again finds it up to date, where building the command alone would compile it anew.
cargo test --workspace --exclude filefetch-python --locked --no-run
FILEFETCH_BIN="${CARGO_TARGET_DIR:-$PWD/target}/debug/filefetch" python -m pytest -q tests/interop

if [ -f tests/run-python.sh ]; then
    step "Python package"
    bash tests/run-python.sh
fi

if [ -f tests/run-c.sh ]; then
    step "C library"
    bash tests/run-c.sh
fi

# After the Python package and the C library: their installed forms serve an s3:// root too.
step "Scale-out: an S3-compatible store (moto), replicas behind HAProxy"
FILEFETCH_SKINS=required bash tests/run-scaleout.sh

step "Windows: core, command and C tests under Wine"
bash tests/run-windows.sh

step "Windows: the Python wheel (build check)"
python -m pip install --quiet "maturin>=1.9.4,<2"
wheels="${CARGO_TARGET_DIR:-$PWD/target}/windows-wheel"
rm -rf "$wheels"
maturin build --quiet -m python/Cargo.toml --target x86_64-pc-windows-gnu --locked -o "$wheels"
python - "$wheels" <<'EOF'
import pathlib, sys, zipfile
wheels = list(pathlib.Path(sys.argv[1]).glob("filefetch-*-cp39-abi3-win_amd64.whl"))
if len(wheels) != 1:
    sys.exit(f"expected one abi3 win_amd64 wheel in {sys.argv[1]}, found {wheels}")
names = zipfile.ZipFile(wheels[0]).namelist()
for want in ("filefetch/_native.pyd", "filefetch/__init__.py", "filefetch/py.typed"):
    if want not in names:
        sys.exit(f"{wheels[0].name} lacks {want}")
print(f"built {wheels[0].name}: {len(names)} files, filefetch/_native.pyd among them")
EOF

step "all tests passed"
