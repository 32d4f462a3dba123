"""The outcome of each file of :func:`filefetch.fetch_many`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

__all__ = ["FetchResult"]


@dataclass(frozen=True)
class FetchResult:
    """One file of :func:`filefetch.fetch_many`: the ``name`` asked for, and either where the
    file landed (``path``, and its ``size`` in bytes) or why it did not (``error``: the
    exception :func:`filefetch.fetch` would have raised for it, or the one the progress
    callback raised; nothing of the file was left behind). ``ok`` tells which. ``sha256`` is
    the SHA-256 digest of a file that landed (64 lowercase hexadecimal digits) when one was
    computed: with ``compute_sha256=True``, or when ``sha256`` gave the digest to check."""

    name: str
    path: Optional[Path] = None
    size: Optional[int] = None
    error: Optional[BaseException] = None
    sha256: Optional[str] = None

    @property
    def ok(self) -> bool:
        """True when the file landed (``path`` and ``size`` are set, ``error`` is None)."""
        return self.error is None
