"""Lifecycle listeners: the events of a task's life, and listeners that fail."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest

from tests.support.events import EventRecorder, make_task
from tq_aws import Actions, LifecycleListener, Task, TaskQueue, TaskStatus
from tq_aws.testing import ManualClock


async def test_events_of_a_successful_task_in_order(app: TaskQueue, events: EventRecorder) -> None:
    @app.executor("q", "t")
    async def run(task: Task, actions: Actions) -> None:
        actions.success(task, {"n": 1})

    [tid] = await app.add_tasks([make_task()])
    await app.run_until_idle()
    assert events.events == [
        ("scheduled", tid),
        ("batch_started", "q", 1),
        ("started", tid),
        ("completed", tid, {"n": 1}),
        ("batch_completed", "q", 1, 1, 0),
    ]


async def test_future_and_stored_tasks_are_announced_when_added(
    app: TaskQueue, clock: ManualClock, events: EventRecorder
) -> None:
    ids = await app.add_tasks(
        [make_task(execute_at=clock.now() + timedelta(hours=1)), make_task(force_store=True)]
    )
    assert events.events == [("scheduled", ids[0]), ("scheduled", ids[1])]


async def test_batch_executor_tasks_each_get_started_and_outcome_events(
    app: TaskQueue, events: EventRecorder
) -> None:
    @app.batch_executor("q", "b")
    async def run(tasks: list[Task], actions: Actions) -> None:
        actions.success(tasks[0], "ok")
        actions.fail(tasks[1], "bad")

    ids = await app.add_tasks([make_task("b"), make_task("b")])
    await app.run_until_idle()
    assert events.of("started") == [("started", ids[0]), ("started", ids[1])]
    assert events.of("completed") == [("completed", ids[0], "ok")]
    assert events.of("failed") == [("failed", ids[1], "bad", False, None)]
    assert events.of("exhausted") == [("exhausted", ids[1], "bad", 1)]


async def test_a_failing_listener_never_disturbs_processing(
    app: TaskQueue, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken(LifecycleListener):
        def on_task_started(self, task: Task) -> None:
            raise RuntimeError("listener bug")

        def on_task_completed(self, task: Task, result: object) -> None:
            raise RuntimeError("listener bug")

        def on_batch_completed(self, *args: object) -> None:
            raise RuntimeError("listener bug")

    after = EventRecorder()
    app.add_listener(Broken())
    app.add_listener(after)

    @app.executor("q", "t")
    async def run(task: Task, actions: Actions) -> None:
        actions.success(task, "done")

    [tid] = await app.add_tasks([make_task(force_store=True)])
    with caplog.at_level(logging.ERROR, logger="tq_aws"):
        await app.run_until_idle()
    record = await app.get_task(tid)
    assert record is not None and record.status is TaskStatus.EXECUTED
    assert after.of("completed") == [("completed", tid, "done")]
    failures = [r for r in caplog.records if "listener" in r.getMessage()]
    assert len(failures) == 3 and all(r.exc_info for r in failures)


async def test_base_listener_hooks_do_nothing(app: TaskQueue) -> None:
    app.add_listener(LifecycleListener())

    @app.executor("q", "t")
    async def run(task: Task, actions: Actions) -> None:
        actions.fail(task, "no")

    [tid] = await app.add_tasks([make_task()])
    await app.run_until_idle()
    assert (await app.get_task(tid)).status is TaskStatus.FAILED
