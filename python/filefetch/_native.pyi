"""Native part of the filefetch package; import from ``filefetch`` instead."""

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Optional, Union, final

from typing_extensions import Self

__all__ = ["AsyncServer", "Server", "afetch", "afetch_bytes", "fetch", "fetch_bytes", "serve"]

_PathLike = Union[str, "os.PathLike[str]"]
_Hosts = Union[str, Sequence[str]]

def fetch(
    host: str,
    port: int,
    name: str,
    dest: Optional[_PathLike] = None,
    *,
    overwrite: bool = False,
    timeout: float = 1.0,
    connect_timeout: float = 5.0,
    max_time: Optional[float] = None,
    speed_limit: int = 0,
    speed_time: float = 30.0,
    max_size: Optional[int] = None,
    sha256: Optional[str] = None,
    progress: Optional[Callable[[int, int], object]] = None,
) -> Path: ...
def fetch_bytes(
    host: str,
    port: int,
    name: str,
    *,
    timeout: float = 1.0,
    connect_timeout: float = 5.0,
    max_time: Optional[float] = None,
    speed_limit: int = 0,
    speed_time: float = 30.0,
    max_size: Optional[int] = None,
    sha256: Optional[str] = None,
) -> bytes: ...
async def afetch(
    host: str,
    port: int,
    name: str,
    dest: Optional[_PathLike] = None,
    *,
    overwrite: bool = False,
    timeout: float = 1.0,
    connect_timeout: float = 5.0,
    max_time: Optional[float] = None,
    speed_limit: int = 0,
    speed_time: float = 30.0,
    max_size: Optional[int] = None,
    sha256: Optional[str] = None,
    progress: Optional[Callable[[int, int], object]] = None,
) -> Path: ...
async def afetch_bytes(
    host: str,
    port: int,
    name: str,
    *,
    timeout: float = 1.0,
    connect_timeout: float = 5.0,
    max_time: Optional[float] = None,
    speed_limit: int = 0,
    speed_time: float = 30.0,
    max_size: Optional[int] = None,
    sha256: Optional[str] = None,
) -> bytes: ...
def serve(
    port: int,
    root: _PathLike = ".",
    *,
    host: _Hosts = "0.0.0.0",
    max_connections: int = 10000,
    request_timeout: float = 1.0,
    send_timeout: float = 10.0,
    grace_period: float = 10.0,
    threads: int = 0,
    file_cache: float = 1.0,
    portable: bool = False,
) -> None: ...

@final
class Server:
    def __new__(
        cls,
        port: int = 0,
        root: _PathLike = ".",
        *,
        host: _Hosts = "127.0.0.1",
        max_connections: int = 10000,
        request_timeout: float = 1.0,
        send_timeout: float = 10.0,
        grace_period: float = 10.0,
        threads: int = 0,
        file_cache: float = 1.0,
        portable: bool = False,
    ) -> Self: ...
    @property
    def port(self) -> int: ...
    @property
    def address(self) -> tuple[str, int]: ...
    @property
    def addresses(self) -> list[tuple[str, int]]: ...
    @property
    def closed(self) -> bool: ...
    def close(self) -> None: ...
    def shutdown(self) -> None: ...
    def serve_forever(self) -> None: ...
    def __enter__(self) -> Self: ...
    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc_value: Optional[BaseException],
        traceback: Optional[TracebackType],
    ) -> bool: ...

@final
class AsyncServer:
    def __new__(
        cls,
        port: int = 0,
        root: _PathLike = ".",
        *,
        host: _Hosts = "127.0.0.1",
        max_connections: int = 10000,
        request_timeout: float = 1.0,
        send_timeout: float = 10.0,
        grace_period: float = 10.0,
        threads: int = 0,
        file_cache: float = 1.0,
        portable: bool = False,
    ) -> Self: ...
    @property
    def port(self) -> int: ...
    @property
    def address(self) -> tuple[str, int]: ...
    @property
    def addresses(self) -> list[tuple[str, int]]: ...
    @property
    def closed(self) -> bool: ...
    def close(self) -> None: ...
    async def aclose(self) -> None: ...
    async def shutdown(self) -> None: ...
    async def serve_forever(self) -> None: ...
    async def __aenter__(self) -> Self: ...
    async def __aexit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc_value: Optional[BaseException],
        traceback: Optional[TracebackType],
    ) -> bool: ...
