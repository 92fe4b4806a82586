"""processing_grace: a quick task skips its ``processing`` row; retries and slow tasks keep it."""

from __future__ import annotations

import asyncio

from tq_aws import Entity, Task, TaskQueue
from tq_aws.core.projections import ProjectionRow
from tq_aws.testing import ManualClock

USER = Entity(id="u-1", type="user")


def _recording(app: TaskQueue) -> list[tuple[str, str]]:
    seen: list[tuple[str, str]] = []
    upsert = app.projection_store.upsert

    async def spy(rows: list[ProjectionRow]) -> None:
        seen.extend((r.task_id, r.status) for r in rows)
        await upsert(rows)

    app.projection_store.upsert = spy  # type: ignore[method-assign]
    return seen


async def test_quick_task_writes_no_processing_row() -> None:
    app = TaskQueue(clock=ManualClock(), processing_grace=60)
    seen = _recording(app)

    @app.executor("q", "quick")
    async def quick(task: Task, actions) -> None:  # type: ignore[no-untyped-def]
        actions.success(task)

    [tid] = await app.add_tasks([Task(type="quick", queue_id="q", entity=USER)])
    await app.run_until_idle()
    assert seen == [(tid, "scheduled"), (tid, "executed")]


async def test_without_grace_processing_is_written_first() -> None:
    app = TaskQueue(clock=ManualClock())
    seen = _recording(app)

    @app.executor("q", "quick")
    async def quick(task: Task, actions) -> None:  # type: ignore[no-untyped-def]
        actions.success(task)

    [tid] = await app.add_tasks([Task(type="quick", queue_id="q", entity=USER)])
    await app.run_until_idle()
    assert seen == [(tid, "scheduled"), (tid, "processing"), (tid, "executed")]


async def test_task_that_will_retry_still_shows_processing() -> None:
    clock = ManualClock()
    app = TaskQueue(clock=clock, processing_grace=60)
    seen = _recording(app)

    @app.executor("q", "flaky", retries=1, retry_after=1)
    async def flaky(task: Task, actions) -> None:  # type: ignore[no-untyped-def]
        if task.retry_count == 0:
            actions.fail(task, "not yet")
        else:
            actions.success(task)

    [tid] = await app.add_tasks([Task(type="flaky", queue_id="q", entity=USER)])
    await app.run_until_idle()
    assert seen == [(tid, "scheduled"), (tid, "processing")]
    assert [r.status for r in await app.entity_status(USER)] == ["processing"]
    clock.advance(seconds=1)
    await app.run_until_idle()
    assert seen[-1] == (tid, "executed")


async def test_slow_task_gets_processing_once_the_grace_is_over() -> None:
    app = TaskQueue(clock=ManualClock(), processing_grace=0.01)
    seen = _recording(app)
    shown: list[str] = []

    @app.executor("q", "slow")
    async def slow(task: Task, actions) -> None:  # type: ignore[no-untyped-def]
        for _ in range(200):  # wait (bounded) until the late write has landed
            rows = await app.entity_status(USER)
            if rows and rows[0].status == "processing":
                shown.append("processing")
                break
            await asyncio.sleep(0.005)
        actions.success(task)

    [tid] = await app.add_tasks([Task(type="slow", queue_id="q", entity=USER)])
    await app.run_until_idle()
    assert shown == ["processing"]
    assert seen == [(tid, "scheduled"), (tid, "processing"), (tid, "executed")]
