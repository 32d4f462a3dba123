"""Native part of the filefetch package; import from ``filefetch`` instead."""

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Optional, Union, final

from typing_extensions import Self

from ._many import FetchResult

__all__ = [
    "AsyncServer",
    "Server",
    "afetch",
    "afetch_bytes",
    "fetch",
    "fetch_bytes",
    "fetch_many",
    "serve",
]

_PathLike = Union[str, "os.PathLike[str]"]
_Hosts = Union[str, Sequence[str]]
# Networks ("10.0.0.0/8", "192.0.2.7") or rules ("deny 10.0.0.5"): one or several.
_Strings = Union[str, Sequence[str]]

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
    retries: int = 0,
    retry_delay: float = 0.25,
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
    retries: int = 0,
    retry_delay: float = 0.25,
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
    retries: int = 0,
    retry_delay: float = 0.25,
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
    retries: int = 0,
    retry_delay: float = 0.25,
    sha256: Optional[str] = None,
) -> bytes: ...
def fetch_many(
    host: str,
    port: int,
    names: Iterable[str],
    dest: Optional[_PathLike] = None,
    *,
    jobs: int = 4,
    overwrite: bool = False,
    timeout: float = 1.0,
    connect_timeout: float = 5.0,
    max_time: Optional[float] = None,
    speed_limit: int = 0,
    speed_time: float = 30.0,
    max_size: Optional[int] = None,
    retries: int = 0,
    retry_delay: float = 0.25,
    sha256: Optional[Mapping[str, str]] = None,
    compute_sha256: bool = False,
    progress: Optional[Callable[[str, int, int], object]] = None,
) -> list[FetchResult]: ...
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
    proxy_protocol: bool = False,
    allow: _Strings = (),
    deny: _Strings = (),
    access: _Strings = (),
    max_per_address: int = 0,
    rate_limit: int = 0,
    total_rate_limit: int = 0,
    metrics: Optional[str] = None,
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
        proxy_protocol: bool = False,
        allow: _Strings = (),
        deny: _Strings = (),
        access: _Strings = (),
        max_per_address: int = 0,
        rate_limit: int = 0,
        total_rate_limit: int = 0,
        metrics: Optional[str] = None,
    ) -> Self: ...
    @property
    def port(self) -> int: ...
    @property
    def address(self) -> tuple[str, int]: ...
    @property
    def addresses(self) -> list[tuple[str, int]]: ...
    @property
    def metrics_address(self) -> Optional[tuple[str, int]]: ...
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
        proxy_protocol: bool = False,
        allow: _Strings = (),
        deny: _Strings = (),
        access: _Strings = (),
        max_per_address: int = 0,
        rate_limit: int = 0,
        total_rate_limit: int = 0,
        metrics: Optional[str] = None,
    ) -> Self: ...
    @property
    def port(self) -> int: ...
    @property
    def address(self) -> tuple[str, int]: ...
    @property
    def addresses(self) -> list[tuple[str, int]]: ...
    @property
    def metrics_address(self) -> Optional[tuple[str, int]]: ...
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
