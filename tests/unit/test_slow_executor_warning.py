"""An async executor that blocks the event loop (``time.sleep``) is named in a WARNING with how
long it blocked, as asyncio's debug mode does; time spent awaiting is not blocking.

The durations are measured with ``time.perf_counter``, whatever the app's clock: these apps run
on a ``ManualClock`` that never moves."""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time
from typing import Any

import pytest

from tests.support.events import make_task
from tq_aws import Actions, Task, TaskQueue, TaskStatus
from tq_aws.core.blocking import DEFAULT_SLOW_CALLBACK_DURATION, run_timed
from tq_aws.errors import ConfigurationError
from tq_aws.testing import ManualClock

LOGGER = "tq_aws.core.blocking"
BLOCK = 0.15  # longer than the default threshold of 0.1 s


def blocked(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING]


def seconds_in(record: logging.LogRecord) -> float:
    found = re.search(r"for (\d+\.\d+) s", record.getMessage())
    assert found, record.getMessage()
    return float(found.group(1))


async def test_time_sleep_in_an_async_executor_is_named_with_how_long_it_blocked(
    app: TaskQueue, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    assert DEFAULT_SLOW_CALLBACK_DURATION == 0.1
    caplog.set_level(logging.WARNING, LOGGER)
    before = clock.now()

    @app.executor("emails", "send")
    async def send(task: Task, actions: Actions) -> None:
        time.sleep(BLOCK)  # the mistake: blocks the loop
        actions.success(task)

    [tid] = await app.add_tasks([make_task(type="send", queue_id="emails", force_store=True)])
    await app.run_until_idle()

    [record] = blocked(caplog)
    message = record.getMessage()
    assert "emails/send" in message and f"task {tid}" in message
    assert "asyncio.to_thread" in message
    assert seconds_in(record) >= BLOCK
    assert record.tq_blocked_seconds >= BLOCK  # type: ignore[attr-defined]
    assert record.tq_executor == "emails/send"  # type: ignore[attr-defined]
    assert clock.now() == before  # measured on the real clock, not the app's
    stored = await app.get_task(tid)
    assert stored is not None and stored.status is TaskStatus.EXECUTED


async def test_a_blocking_step_after_an_await_is_named_too(
    app: TaskQueue, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, LOGGER)

    @app.executor("q", "t")
    async def run(task: Task, actions: Actions) -> None:
        await asyncio.sleep(0)
        await asyncio.sleep(0.01)
        time.sleep(BLOCK)
        await asyncio.sleep(0)
        actions.success(task)

    await app.add_tasks([make_task()])
    await app.run_until_idle()
    [record] = blocked(caplog)
    assert "q/t" in record.getMessage() and seconds_in(record) >= BLOCK


async def test_awaiting_is_not_blocking(caplog: pytest.LogCaptureFixture) -> None:
    """Long awaits add up to far more than the threshold; no single step comes near it."""
    caplog.set_level(logging.WARNING, LOGGER)
    app = TaskQueue(clock=ManualClock(), slow_callback_duration=0.25)
    done: list[str] = []

    @app.executor("q", "t")
    async def run(task: Task, actions: Actions) -> None:
        await asyncio.sleep(0.3)
        await asyncio.sleep(0.3)
        done.append(task.id or "")
        actions.success(task)

    await app.add_tasks([make_task()])
    await app.run_until_idle()
    assert len(done) == 1
    assert blocked(caplog) == []


async def test_a_blocking_executor_that_raises_is_named_and_fails(
    app: TaskQueue, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, LOGGER)

    @app.executor("q", "t")
    async def run(task: Task, actions: Actions) -> None:
        time.sleep(BLOCK)
        raise RuntimeError("after blocking")

    [tid] = await app.add_tasks([make_task()])
    await app.run_until_idle()
    assert len(blocked(caplog)) == 1
    stored = await app.get_task(tid)
    assert stored is not None and stored.status is TaskStatus.FAILED
    assert stored.execution_stats["last_error"] == "after blocking"


async def test_batch_and_parallel_async_executors(
    app: TaskQueue, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, LOGGER)

    @app.batch_executor("q", "batch")
    async def batch(tasks: list[Task], actions: Actions) -> None:
        time.sleep(BLOCK)
        for t in tasks:
            actions.success(t)

    @app.executor("q", "par", parallel=True, chunk_size=3)
    async def par(task: Task, actions: Actions) -> None:
        await asyncio.sleep(0)
        if task.payload == "blocks":
            time.sleep(BLOCK)
        actions.success(task)

    await app.add_tasks([make_task(type="batch", payload=i) for i in range(2)])
    par_ids = await app.add_tasks(
        [make_task(type="par", payload=p) for p in ("fine", "blocks", "fine")]
    )
    await app.run_until_idle()
    messages = [r.getMessage() for r in blocked(caplog)]
    assert len(messages) == 2
    [batch_message] = [m for m in messages if "q/batch" in m]
    assert "batch call" in batch_message
    [par_message] = [m for m in messages if "q/par" in m]
    assert f"task {par_ids[1]}" in par_message  # the one that blocked, not its neighbours


async def test_the_threshold_is_configurable_and_none_turns_it_off(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, LOGGER)
    for threshold, warned in ((0.02, 1), (None, 0)):
        caplog.clear()
        app = TaskQueue(clock=ManualClock(), slow_callback_duration=threshold)

        @app.executor("q", "t")
        async def run(task: Task, actions: Actions) -> None:
            time.sleep(0.05)
            actions.success(task)

        await app.add_tasks([make_task()])
        await app.run_until_idle()
        assert len(blocked(caplog)) == warned, threshold


@pytest.mark.parametrize("bad", [0, -1, math.nan, True, "0.1"])
def test_a_bad_threshold_is_refused(bad: Any) -> None:
    with pytest.raises(ConfigurationError, match="slow_callback_duration"):
        TaskQueue(slow_callback_duration=bad)


async def test_run_timed_passes_results_exceptions_and_cancellation_through(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, LOGGER)
    seen: list[str] = []

    async def value() -> int:
        await asyncio.sleep(0)
        return 7

    async def thrown_in() -> str:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_soon(fut.set_exception, KeyError("inner"))
        try:
            await fut
        except KeyError:
            return "caught"
        return "not thrown"

    async def forever() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            seen.append("cleaned up")

    assert await run_timed(value(), 10.0, "q", "t", "a") == 7
    assert await run_timed(thrown_in(), 10.0, "q", "t", "b") == "caught"
    job = asyncio.ensure_future(run_timed(forever(), 10.0, "q", "t", "c"))
    await asyncio.sleep(0.01)
    job.cancel()
    with pytest.raises(asyncio.CancelledError):
        await job
    assert seen == ["cleaned up"]
    assert blocked(caplog) == []
