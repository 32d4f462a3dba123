"""The tests run against the package as installed from its wheel (tests/run-python.sh
installs it into a fresh virtual environment and runs them from outside the source tree),
not against python/filefetch."""

from __future__ import annotations

import os
import sys
import sysconfig
from pathlib import Path

import pytest

import filefetch
from conftest import REPO
from filefetch import _native

VENV = os.environ.get("FILEFETCH_TEST_VENV")


@pytest.mark.skipif(
    not VENV, reason="run by tests/run-python.sh, which names the environment it installed"
)
def test_imported_from_the_installed_wheel() -> None:
    assert VENV is not None
    venv = Path(VENV).resolve()
    assert Path(sys.prefix).resolve() == venv
    site = Path(sysconfig.get_path("platlib")).resolve()
    assert venv in site.parents
    package = Path(filefetch.__file__).resolve().parent
    assert package == site / "filefetch", package
    assert Path(_native.__file__).resolve().parent == package
    assert REPO / "python" not in package.parents
    # A wheel's files, not an editable install pointing back at the sources.
    assert not list(site.glob("*.pth")) or not any(
        str(REPO) in pth.read_text() for pth in site.glob("*.pth")
    )
    # The typing information ships with it.
    assert (package / "py.typed").is_file()
    assert (package / "_native.pyi").is_file()
