#!/usr/bin/env bash
# The Python package: build and install it from source into the active virtual environment,
# then run its tests (round trips, exceptions, interop with the original scripts, Ctrl-C,
# threads) and check the type stubs against the module.
#
# Run from the repository root with a virtual environment active:
#   python3 -m venv .venv && . .venv/bin/activate && pip install -U pip && bash tests/run-python.sh
set -euo pipefail

cd "$(dirname "$0")/.."

if [ -z "${VIRTUAL_ENV:-}" ]; then
    echo "run-python.sh: activate a virtual environment first (it installs packages)" >&2
    exit 2
fi

echo "== pip install ./python"
python -m pip install --quiet --force-reinstall ./python
python -m pip install --quiet "pytest>=7" "mypy>=1.8"

echo "== pytest python/tests"
python -m pytest python/tests -q

echo "== mypy.stubtest filefetch"
cache="$(mktemp -d)"
trap 'rm -rf "$cache"' EXIT
(cd "$cache" && MYPY_CACHE_DIR="$cache" python -m mypy.stubtest filefetch)
