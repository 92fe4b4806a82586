"""The process's event loop for the Lambda runtime: one loop per process, made on first use and
kept open, so a warm process reuses it (and the AWS clients cached on it by ``AwsClients``, and
their connections) across invocations. The handler is a plain function that runs its coroutines
here; call it outside any running loop, as Lambda's Python runtime does."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")

_loop: asyncio.AbstractEventLoop | None = None
_loop_lock = threading.Lock()

IN_LOOP = (
    "the Lambda handler was called inside a running event loop; it runs its own loop, as "
    "Lambda's Python runtime calls it: call it from synchronous code"
)
"""The message of the ``RuntimeError`` raised when the handler is called inside a loop."""


def process_loop() -> asyncio.AbstractEventLoop:
    """The event loop every Lambda handler of this process runs on: made on first use and kept
    open, so a warm process reuses it (and the AWS clients cached on it) across invocations."""
    global _loop
    with _loop_lock:
        if _loop is None or _loop.is_closed():
            _loop = asyncio.new_event_loop()
        return _loop


def close_process_loop() -> None:
    """Cancel whatever still runs on the process loop and close it; the next invocation makes
    a new one. For tests and tools; Lambda itself never needs it. Close AWS clients first
    (``handler.run(app.aclose())``)."""
    global _loop
    with _loop_lock:
        loop, _loop = _loop, None
    if loop is None or loop.is_closed():
        return
    pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for task in pending:
        task.cancel()
    if pending:
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
    loop.run_until_complete(loop.shutdown_asyncgens())
    loop.close()


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion on the process loop.

    Raises:
        RuntimeError: called inside a running event loop (``coro`` is closed, never run).
    """
    if in_running_loop():
        coro.close()
        raise RuntimeError(IN_LOOP)
    return process_loop().run_until_complete(coro)


def in_running_loop() -> bool:
    """Whether the caller runs inside an event loop (where the handler cannot run its own)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


__all__ = ["IN_LOOP", "close_process_loop", "in_running_loop", "process_loop", "run"]
