"""Failing for good: ``PermanentFailure`` and ``actions.fail(task, error, retry=False)`` skip the
remaining retries. The task ends ``failed`` at once, stored, projected, reported to its flow as
a failed step and announced as exhausted, on every kind of executor."""

from __future__ import annotations

import asyncio
from typing import Any

import tq_aws
from tests.support.events import USER, EventRecorder, make_task
from tq_aws import Actions, Join, PermanentFailure, Task, TaskQueue, TaskStatus, TqError
from tq_aws.core.outcomes import PERMANENT_KEY
from tq_aws.engine.handoff import AsyncTaskManager
from tq_aws.testing import ManualClock


async def run_long(app: TaskQueue, clock: ManualClock) -> None:
    """Run until idle, then far past every retry's backoff, a few times: a retry that was
    scheduled would run here."""
    for _ in range(4):
        await app.run_until_idle()
        clock.advance(seconds=600)
    await app.run_until_idle()


def assert_failed_for_good(record: Task | None, error: str) -> None:
    assert record is not None
    assert record.status is TaskStatus.FAILED
    assert record.retry_count == 0
    stats = record.execution_stats
    assert stats["last_error"] == error
    assert stats[PERMANENT_KEY] is True
    assert "failed_at" in stats


def test_permanent_failure_is_a_tq_error_exported_from_both_places() -> None:
    assert tq_aws.PermanentFailure is tq_aws.errors.PermanentFailure
    assert issubclass(PermanentFailure, TqError)
    err = PermanentFailure("bad address", meta={"to": "x"})
    assert (str(err), err.meta) == ("bad address", {"to": "x"})
    assert PermanentFailure().meta is None


async def test_raising_permanent_failure_skips_the_remaining_retries(
    app: TaskQueue, clock: ManualClock, events: EventRecorder
) -> None:
    attempts: list[int] = []

    @app.executor("q", "t", retries=3, retry_after=1)
    async def run(task: Task, actions: Actions) -> None:
        attempts.append(task.retry_count)
        raise PermanentFailure("no such address", meta={"to": "nobody"})

    [tid] = await app.add_tasks([make_task(entity=USER)])
    await run_long(app, clock)

    assert attempts == [0]
    record = await app.get_task(tid)
    assert_failed_for_good(record, "no such address")
    assert record is not None and record.execution_stats["to"] == "nobody"
    assert "PermanentFailure: no such address" in record.execution_stats["last_error_stack"]
    assert (app.stats.failed, app.stats.retried) == (1, 0)
    assert app.scheduler.pending_names() == []
    assert ("exhausted", tid, "no such address", 1) in events.events
    assert ("failed", tid, "no such address", False, None) in events.events
    [row] = await app.entity_status(USER)
    assert (row.status, row.error) == ("failed", "no such address")


async def test_fail_with_retry_false_skips_the_remaining_retries(
    app: TaskQueue, clock: ManualClock, events: EventRecorder
) -> None:
    attempts: list[int] = []

    @app.executor("q", "t", retries=3, retry_after=1)
    def run(task: Task, actions: Actions) -> None:
        attempts.append(task.retry_count)
        actions.fail(task, "card declined", meta={"code": 51}, retry=False)

    [tid] = await app.add_tasks([make_task()])
    await run_long(app, clock)

    assert attempts == [0]
    record = await app.get_task(tid)
    assert_failed_for_good(record, "card declined")
    assert record is not None and record.execution_stats["code"] == 51
    assert ("exhausted", tid, "card declined", 1) in events.events


async def test_fail_given_a_permanent_failure_is_for_good_too(
    app: TaskQueue, clock: ManualClock
) -> None:
    @app.executor("q", "t", retries=3, retry_after=1)
    async def run(task: Task, actions: Actions) -> None:
        actions.fail(task, PermanentFailure("gone", meta={"a": 1}), meta={"b": 2})

    [tid] = await app.add_tasks([make_task()])
    await run_long(app, clock)
    record = await app.get_task(tid)
    assert_failed_for_good(record, "gone")
    assert record is not None
    assert (record.execution_stats["a"], record.execution_stats["b"]) == (1, 2)


async def test_an_ordinary_failure_still_retries(app: TaskQueue, clock: ManualClock) -> None:
    """The control: the same executor failing with retry=True (the default) is retried."""
    attempts: list[int] = []

    @app.executor("q", "t", retries=2, retry_after=1)
    async def run(task: Task, actions: Actions) -> None:
        attempts.append(task.retry_count)
        actions.fail(task, "try again")

    [tid] = await app.add_tasks([make_task()])
    await run_long(app, clock)
    assert attempts == [0, 1, 2]
    record = await app.get_task(tid)
    assert record is not None and PERMANENT_KEY not in record.execution_stats


async def test_parallel_executor_in_threads(app: TaskQueue, clock: ManualClock) -> None:
    attempts: list[Any] = []

    @app.executor("q", "t", parallel=True, chunk_size=4, retries=3, retry_after=1)
    def run(task: Task, actions: Actions) -> None:
        attempts.append(task.payload)
        if task.payload % 2:
            raise PermanentFailure(f"odd {task.payload}")
        actions.fail(task, f"even {task.payload}", retry=False)

    ids = await app.add_tasks([make_task(payload=i) for i in range(4)])
    await run_long(app, clock)
    assert sorted(attempts) == [0, 1, 2, 3]
    for i, tid in enumerate(ids):
        assert_failed_for_good(await app.get_task(tid), f"{'odd' if i % 2 else 'even'} {i}")


async def test_batch_executor_raising_fails_its_undecided_tasks_for_good(
    app: TaskQueue, clock: ManualClock
) -> None:
    calls: list[list[Any]] = []

    @app.batch_executor("q", "t", retries=3, retry_after=1)
    async def run(tasks: list[Task], actions: Actions) -> None:
        calls.append(sorted(t.payload for t in tasks))
        for t in tasks:
            if t.payload == "ok":
                actions.success(t)
            elif t.payload == "retry":
                actions.fail(t, "later")
            elif t.payload == "stop":
                actions.fail(t, "stop now", retry=False)
        raise PermanentFailure("batch is bad")

    ids = await app.add_tasks([make_task(payload=p) for p in ("ok", "retry", "stop", "undecided")])
    await run_long(app, clock)
    ok, retried, stop, undecided = [await app.get_task(t) for t in ids]
    # only the one failed with retry=True came back, as often as its retries allow
    assert calls == [["ok", "retry", "stop", "undecided"], ["retry"], ["retry"], ["retry"]]
    assert ok is None or ok.status is TaskStatus.EXECUTED
    assert retried is not None and retried.status is TaskStatus.FAILED
    assert retried.retry_count == 3 and PERMANENT_KEY not in retried.execution_stats
    assert_failed_for_good(stop, "stop now")
    assert_failed_for_good(undecided, "batch is bad")


async def test_a_flow_step_failed_for_good_reaches_the_barrier_at_once(
    app: TaskQueue, clock: ManualClock
) -> None:
    attempts: list[int] = []
    joined: list[dict[str, Any]] = []

    @app.executor("q", "start")
    async def start(task: Task, actions: Actions) -> None:
        steps = [Task(type="step", queue_id="q", payload=i, retries=5) for i in range(2)]
        actions.start_flow(steps, Join(queue_id="q", type="join"), failure_policy="abort")
        actions.success(task)

    @app.executor("q", "step", retry_after=1)
    async def step(task: Task, actions: Actions) -> None:
        if task.payload == 1:
            attempts.append(task.retry_count)
            raise PermanentFailure("step 1 cannot work")
        actions.success(task, "fine")

    @app.executor("q", "join")
    async def join(task: Task, actions: Actions) -> None:
        joined.append(task.payload["flow_results"])
        actions.success(task)

    await app.add_tasks([Task(type="start", queue_id="q")])
    await app.run_until_idle()  # no clock move: a retry of step 1 would still be pending
    assert attempts == [0]
    [results] = joined
    assert results["aborted"] is True
    assert {"step_index": 1, "status": "fail", "error": "step 1 cannot work"} in results["steps"]
    status = await app.flow_status(results["flow_id"])
    assert status is not None and (status.state, status.failed) == ("aborted", 1)
    await run_long(app, clock)
    assert attempts == [0]


async def test_a_handed_off_task_failed_for_good() -> None:
    clock = ManualClock()
    app = TaskQueue(
        clock=clock, async_tasks=AsyncTaskManager(sweep_interval=0.02, default_max_duration=5.0)
    )
    release = asyncio.Event()
    attempts: list[int] = []

    @app.executor("q", "long", handoff_timeout=0.01, retries=3, retry_after=1)
    async def long(task: Task, actions: Actions) -> None:
        attempts.append(task.retry_count)
        await release.wait()
        raise PermanentFailure("long one gave up")

    @app.executor("q", "short")
    async def short(task: Task, actions: Actions) -> None:
        release.set()
        actions.success(task)

    [tid, _] = await app.add_tasks(
        [Task(type="long", queue_id="q"), Task(type="short", queue_id="q")]
    )
    await run_long(app, clock)
    assert attempts == [0]
    assert_failed_for_good(await app.get_task(tid), "long one gave up")
