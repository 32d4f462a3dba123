#!/usr/bin/env bash
# The scale-out tests: `filefetch serve --root s3://...` over a real S3 server (moto's server
# mode) on loopback, alone and as three replicas behind HAProxy (deploy/haproxy.cfg, with
# the ports filled in), and the same root served from the installed Python wheel and C library
# (tests/scaleout/test_skins.py: after tests/run-python.sh and tests/run-c.sh; skipped when
# those are not installed, unless FILEFETCH_SKINS=required). Installs what they need on a fresh machine: a virtual environment in
# target/scaleout-venv (moto[server], boto3, pytest, pytest-timeout; reused when present)
# and HAProxy from the system's packages; builds the command; runs tests/scaleout.
#
#   bash tests/run-scaleout.sh [PYTEST ARGS...]
#
# Bounded: each test has a timeout of its own (pytest-timeout, tests/scaleout/pytest.ini);
# on two busy cores the tests take about 40 s, and a fresh machine's installs about 50 s
# more, once the command is built.
set -euo pipefail

cd "$(dirname "$0")/.."
# shellcheck source=tests/packages.sh
. tests/packages.sh

target="${CARGO_TARGET_DIR:-$PWD/target}"
venv="$target/scaleout-venv"

if ! command -v haproxy >/dev/null; then
    install_packages haproxy
fi
haproxy -v | sed -n 1p  # (sed reads it all: no SIGPIPE under pipefail)

if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
# The tests run moto 5's server as `python -m moto.server -H 127.0.0.1 -p PORT`.
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    "moto[server]>=5,<6" "boto3>=1.34,<2" "pytest>=7" "pytest-timeout>=2.2"

# The command as `cargo test` builds it (target/debug/filefetch): up to date after ./test.sh's
# Rust tests, where building the command alone would compile it anew.
cargo test --workspace --exclude filefetch-python --locked --no-run

export FILEFETCH_BIN="$target/debug/filefetch"
exec "$venv/bin/python" -m pytest -q -p no:cacheprovider tests/scaleout "$@"
