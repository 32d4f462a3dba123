"""The type stubs describe the module as it is."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import filefetch


def test_stubtest(tmp_path: Path) -> None:
    pytest.importorskip("mypy.stubtest")
    env = dict(os.environ, MYPY_CACHE_DIR=str(tmp_path / "mypy-cache"))
    result = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", "filefetch"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_all_names_exported() -> None:
    for name in filefetch.__all__:
        assert getattr(filefetch, name).__doc__, name
