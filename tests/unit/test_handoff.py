"""Long tasks handed off from their batch (AsyncTaskManager): the batch goes on, the outcome is
recorded when the task ends, and a task past its maximum duration is cancelled and retried."""

from __future__ import annotations

import asyncio

import pytest

from tq_aws import Task, TaskQueue
from tq_aws.core.task import TaskStatus
from tq_aws.engine.handoff import AsyncTaskManager
from tq_aws.errors import ConfigurationError
from tq_aws.testing import ManualClock


def _app(**manager: float) -> TaskQueue:
    options = {"sweep_interval": 0.02, "default_max_duration": 5.0, **manager}
    return TaskQueue(clock=ManualClock(), async_tasks=AsyncTaskManager(**options))  # type: ignore[arg-type]


async def test_batch_goes_on_while_a_long_task_runs() -> None:
    app = _app()
    order: list[str] = []
    release = asyncio.Event()

    @app.executor("q", "long", handoff_timeout=0.01)
    async def long(task: Task, actions) -> None:  # type: ignore[no-untyped-def]
        await release.wait()
        order.append("long done")
        actions.add_tasks([Task(type="short", queue_id="q", payload="child")])
        actions.success(task, {"ok": True})

    @app.executor("q", "short")
    async def short(task: Task, actions) -> None:  # type: ignore[no-untyped-def]
        order.append(f"short {task.payload}")
        if task.payload == "sibling":
            release.set()
        actions.success(task)

    [long_id, _] = await app.add_tasks(
        [
            Task(type="long", queue_id="q", force_store=True),
            Task(type="short", queue_id="q", payload="sibling"),
        ]
    )
    await app.run_until_idle()
    assert order == ["short sibling", "long done", "short child"]
    record = await app.get_task(long_id)
    assert record is not None and record.status is TaskStatus.EXECUTED
    assert record.execution_result == {"ok": True}
    metrics = app.async_tasks.get_metrics()
    assert (metrics.total_handed_off, metrics.total_completed, metrics.active_task_count) == (
        1,
        1,
        0,
    )
    assert app.scheduler.pending_names() == []  # the delivery watchdog was cancelled


async def test_handed_off_task_is_durable_while_it_runs() -> None:
    app = _app()
    app.batch_size = 1  # the probe runs in the next batch, after this one is recorded
    seen: list[TaskStatus | None] = []
    release = asyncio.Event()

    @app.executor("q", "long", handoff_timeout=0.01)
    async def long(task: Task, actions) -> None:  # type: ignore[no-untyped-def]
        await release.wait()
        actions.success(task)

    @app.executor("q", "probe")
    async def probe(task: Task, actions) -> None:  # type: ignore[no-untyped-def]
        record = await app.get_task(task.payload)
        seen.append(record.status if record else None)
        release.set()
        actions.success(task)

    [long_id] = await app.add_tasks([Task(type="long", queue_id="q")])
    await app.add_tasks([Task(type="probe", queue_id="q", payload=long_id)])
    await app.run_until_idle()
    # Stored as processing, with a watchdog delivery, before its batch was acknowledged.
    assert seen == [TaskStatus.PROCESSING]
    record = await app.get_task(long_id)
    assert record is not None and record.status is TaskStatus.EXECUTED


async def test_task_past_its_max_duration_is_cancelled_and_retried() -> None:
    app = _app()
    attempts: list[int] = []
    cancelled: list[int] = []
    timeouts: list[str] = []
    app.async_tasks.on_task_timeout = lambda tid, task, ms: timeouts.append(tid)

    @app.executor("q", "stuck", handoff_timeout=0.01, max_duration=0.05, retries=1, retry_after=0)
    async def stuck(task: Task, actions) -> None:  # type: ignore[no-untyped-def]
        attempts.append(task.retry_count)
        if task.retry_count == 0:
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                cancelled.append(task.retry_count)
                raise
        actions.success(task)

    [tid] = await app.add_tasks([Task(type="stuck", queue_id="q", force_store=True)])
    await app.run_until_idle()
    assert attempts == [0, 1]
    assert cancelled == [0]
    assert timeouts == [tid]
    record = await app.get_task(tid)
    assert record is not None and record.status is TaskStatus.EXECUTED
    assert "maximum duration" in record.execution_stats["last_error"]
    assert app.async_tasks.get_metrics().total_timed_out == 1


async def test_a_full_manager_makes_the_batch_wait_instead() -> None:
    app = _app(max_tasks=0)
    done: list[str] = []

    @app.executor("q", "long", handoff_timeout=0.01)
    async def long(task: Task, actions) -> None:  # type: ignore[no-untyped-def]
        await asyncio.sleep(0.05)
        done.append("long")
        actions.success(task)

    @app.executor("q", "short")
    async def short(task: Task, actions) -> None:  # type: ignore[no-untyped-def]
        done.append("short")
        actions.success(task)

    await app.add_tasks([Task(type="long", queue_id="q"), Task(type="short", queue_id="q")])
    await app.run_until_idle()
    assert done == ["long", "short"]
    assert app.async_tasks.get_metrics().total_handed_off == 0


async def test_shutdown_reports_abandoned_tasks_and_refuses_new_ones() -> None:
    manager = AsyncTaskManager(sweep_interval=0, shutdown_grace=0.05)
    gate = asyncio.Event()

    async def forever() -> None:
        await gate.wait()

    async def record(evicted: bool) -> None:
        return None

    job = asyncio.ensure_future(forever())
    assert manager.handoff_task(Task(id="t-1", type="x", queue_id="q"), job, record)
    assert not manager.handoff_task(Task(id="t-1", type="x", queue_id="q"), job, record)
    result = await manager.shutdown()
    assert result.abandoned_task_ids == ["t-1"] and result.completed_during_grace == 0
    assert not manager.can_accept_task()
    assert manager.get_metrics().total_rejected == 1
    gate.set()
    await job


def test_handoff_options_are_validated() -> None:
    app = TaskQueue()

    def fn(task: Task, actions: object) -> None:
        return None

    with pytest.raises(ConfigurationError, match="handoff_timeout"):
        app.executor("q", "p", parallel=True, handoff_timeout=1)(fn)
    with pytest.raises(ConfigurationError, match="max_duration"):
        app.executor("q", "m", max_duration=5)(fn)
    with pytest.raises(ConfigurationError, match="handoff_timeout"):
        app.executor("q", "z", handoff_timeout=0)(fn)
