"""Naming async executors that block the event loop, as asyncio's debug mode does.

An ``async def`` executor that calls something blocking (``time.sleep``, a synchronous HTTP
client, heavy CPU work) stalls everything else on the loop: the other tasks of a parallel
group, handed-off tasks, the Lambda runtime's deadline. asyncio's debug mode
(``loop.slow_callback_duration``) reports such callbacks but slows the whole loop; here only
the executor's own coroutine is timed, with ``time.perf_counter`` around each of its steps
(from a resumption to its next suspension, or to its end), and a step longer than the
threshold is logged as a WARNING naming the executor.

A coroutine that finishes without suspending (the common executor) is stepped once, directly:
no wrapper object, one clock pair.
"""

from __future__ import annotations

import logging
import types
from collections.abc import Awaitable, Generator
from time import perf_counter
from typing import Any

logger = logging.getLogger(__name__)

DEFAULT_SLOW_CALLBACK_DURATION = 0.1
"""Seconds one step of an async executor may hold the event loop before it is named in a
warning: asyncio's own ``slow_callback_duration`` default."""


async def run_timed(
    awaitable: Awaitable[Any], threshold: float, queue_id: str, type_: str, task_id: str | None
) -> Any:
    """Await ``awaitable`` (an executor's coroutine); if one of its steps held the event loop
    longer than ``threshold`` seconds, log it (``warn_blocked``). Exceptions and cancellation
    pass through unchanged."""
    if isinstance(awaitable, types.CoroutineType):
        inner: Any = awaitable
    else:
        inner = awaitable.__await__()
    started = perf_counter()
    try:
        first = inner.send(None)
    except StopIteration as stop:  # finished without suspending: the common case
        elapsed = perf_counter() - started
        if elapsed > threshold:
            warn_blocked(queue_id, type_, task_id, elapsed)
        return stop.value
    except BaseException:
        elapsed = perf_counter() - started
        if elapsed > threshold:
            warn_blocked(queue_id, type_, task_id, elapsed)
        raise
    rest = _Resumed(inner, first, perf_counter() - started)
    try:
        return await rest
    finally:
        if rest.longest > threshold:
            warn_blocked(queue_id, type_, task_id, rest.longest)


class _Resumed:
    """The rest of a coroutine that suspended at its first step (yielding ``first``), awaited
    as it is while the longest of its steps is kept in ``longest``."""

    __slots__ = ("_first", "_inner", "longest")

    def __init__(self, inner: Any, first: Any, longest: float):
        self._inner = inner
        self._first = first
        self.longest = longest

    def __await__(self) -> Generator[Any, Any, Any]:
        inner = self._inner
        send, throw = inner.send, inner.throw
        yielded = self._first
        while True:
            error: BaseException | None = None
            value: Any = None
            try:
                value = yield yielded
            except GeneratorExit:
                inner.close()
                raise
            except BaseException as exc:  # cancellation included: handed on to the executor
                error = exc
            started = perf_counter()
            try:
                yielded = send(value) if error is None else throw(error)
            except StopIteration as stop:
                self._took(perf_counter() - started)
                return stop.value
            except BaseException:
                self._took(perf_counter() - started)
                raise
            self._took(perf_counter() - started)

    def _took(self, elapsed: float) -> None:
        if elapsed > self.longest:
            self.longest = elapsed


def warn_blocked(queue_id: str, type_: str, task_id: str | None, seconds: float) -> None:
    """Log that the executor of ``queue_id``/``type_`` held the event loop ``seconds`` in one
    step (``task_id``: the task it ran; ``None`` for a batch call)."""
    logger.warning(
        "async executor %s/%s blocked the event loop for %.3f s in one step (%s); other tasks "
        "and timers waited. Await instead (asyncio.to_thread for a blocking call), or register "
        "a plain function (parallel=True runs it in threads)",
        queue_id,
        type_,
        seconds,
        f"task {task_id}" if task_id is not None else "batch call",
        extra={"tq_blocked_seconds": round(seconds, 6), "tq_executor": f"{queue_id}/{type_}"},
    )
