"""asyncio glue for the native module: the coroutine through which a future of its runtime
(a transfer of ``afetch`` or ``afetch_bytes``, a stop of ``AsyncServer``) is awaited.

The future is awaited under ``asyncio.shield``, so that cancelling the task does not cancel
the asyncio future at once: the Rust future is stopped (a transfer's task is aborted, which
drops it and its temporary file; a server is stopped at once) and waited for, and only then
does ``CancelledError`` propagate. Either way the coroutine ends only once the runtime's
thread that handed the outcome over has let go of Python.
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable, Protocol


class _Handoff(Protocol):
    def release(self) -> None: ...


async def settle(
    start: Callable[[], tuple[asyncio.Future[Any], _Handoff]], stop: Callable[[], None]
) -> Any:
    """Awaits the future ``start()`` runs; on cancellation, ``stop()`` it and wait for it to
    end before re-raising."""
    future, handoff = start()
    try:
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            stop()
            while not future.done():
                try:
                    await asyncio.wait((future,))
                except asyncio.CancelledError:
                    # Cancelled again: the first cancellation propagates once it has ended.
                    pass
            if not future.cancelled():
                # Its outcome (InterruptedTransferError, for a transfer) gives way to the
                # cancellation; taking it keeps asyncio from reporting it as never retrieved.
                future.exception()
            raise
        except GeneratorExit:
            # Closed without being resumed (its event loop discarded): stop it, without
            # waiting, which a closing coroutine cannot do.
            stop()
            raise
    finally:
        handoff.release()


def complete(future: asyncio.Future[Any], ok: bool, value: Any) -> None:
    """Sets the outcome of ``future``; called in its loop by the thread handing it over."""
    if future.done():
        return
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)
