"""Retries: exact backoff on the clock, limits, overrides, and what is stored in between."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.support.events import USER, EventRecorder, make_task
from tq_aws import Actions, Task, TaskQueue, TaskStatus
from tq_aws.core.retry import MAX_DELAY_SECONDS, backoff_seconds
from tq_aws.testing import ManualClock

EPSILON = timedelta(microseconds=1)


class Attempts:
    """An executor that fails until attempt ``succeed_on`` (never, if ``None``)."""

    def __init__(self, succeed_on: int | None = None) -> None:
        self.succeed_on = succeed_on
        self.seen: list[tuple[int, object]] = []

    async def run(self, task: Task, actions: Actions) -> None:
        self.seen.append((task.retry_count, task.execute_at))
        if self.succeed_on is not None and task.retry_count >= self.succeed_on:
            actions.success(task, f"ok on {task.retry_count}")
        else:
            raise RuntimeError(f"attempt {task.retry_count} failed")

    @property
    def count(self) -> int:
        return len(self.seen)


@pytest.mark.parametrize(
    ("retry_after", "made", "expected"),
    [
        (2.0, 0, 2.0),
        (2.0, 1, 8.0),
        (2.0, 2, 18.0),
        (2.0, 11, 288.0),
        (2.0, 12, 300.0),
        (1.5, 3, 24.0),
        (0.0, 5, 0.0),
        (1000.0, 0, 300.0),
    ],
)
def test_backoff_is_retry_after_times_square_capped(
    retry_after: float, made: int, expected: float
) -> None:
    assert backoff_seconds(retry_after, made) == expected
    assert MAX_DELAY_SECONDS == 300.0


async def test_each_retry_waits_exactly_its_backoff(app: TaskQueue, clock: ManualClock) -> None:
    run = Attempts()
    app.executor("q", "t", retries=3, retry_after=1.0)(run.run)
    await app.add_tasks([make_task()])
    await app.run_until_idle()
    assert run.count == 1
    start = clock.now()
    for n, delay in enumerate([1, 4, 9], start=1):
        clock.set(start + timedelta(seconds=delay) - EPSILON)
        await app.run_until_idle()
        assert run.count == n, f"retry {n} ran before its backoff"
        clock.set(start + timedelta(seconds=delay))
        await app.run_until_idle()
        assert run.count == n + 1, f"retry {n} did not run when due"
        assert run.seen[-1] == (n, clock.now())
        start = clock.now()
    clock.advance(seconds=3600)
    assert await app.run_until_idle() == 0
    assert run.count == 4


async def test_retries_then_final_failure_is_stored(
    app: TaskQueue, clock: ManualClock, events: EventRecorder
) -> None:
    run = Attempts()
    app.executor("q", "t", retries=2, retry_after=0.5)(run.run)
    [tid] = await app.add_tasks([make_task(entity=USER)])
    await app.run_until_idle()
    clock.advance(seconds=0.5)
    await app.run_until_idle()
    clock.advance(seconds=2)
    await app.run_until_idle()
    assert [n for n, _ in run.seen] == [0, 1, 2]
    record = await app.get_task(tid)
    assert record is not None and record.status is TaskStatus.FAILED
    stats = record.execution_stats
    assert stats["retry_count"] == 2
    assert stats["last_error"] == "attempt 2 failed"
    assert "RuntimeError: attempt 2 failed" in stats["last_error_stack"]
    assert stats["failed_at"] == clock.now().isoformat()
    assert (app.stats.retried, app.stats.failed) == (2, 1)
    rows = await app.entity_status(USER)
    assert [(r.status, r.error) for r in rows] == [("failed", "attempt 2 failed")]
    failed = events.of("failed")
    assert [(e[2], e[3]) for e in failed] == [
        ("attempt 0 failed", True),
        ("attempt 1 failed", True),
        ("attempt 2 failed", False),
    ]
    assert events.of("exhausted") == [("exhausted", tid, "attempt 2 failed", 3)]


async def test_success_on_a_retry(app: TaskQueue, clock: ManualClock) -> None:
    run = Attempts(succeed_on=1)
    app.executor("q", "t", retries=5, retry_after=2)(run.run)
    [tid] = await app.add_tasks([make_task(entity=USER)])
    await app.run_until_idle()
    clock.advance(seconds=2)
    await app.run_until_idle()
    assert run.count == 2
    rows = await app.entity_status(USER)
    assert [(r.task_id, r.status, r.result) for r in rows] == [(tid, "executed", "ok on 1")]
    assert (app.stats.executed, app.stats.retried, app.stats.failed) == (1, 1, 0)


async def test_no_retries_by_default(app: TaskQueue) -> None:
    run = Attempts()
    app.executor("q", "t")(run.run)
    [tid] = await app.add_tasks([make_task()])
    await app.run_until_idle()
    assert run.count == 1
    assert (await app.get_task(tid)).status is TaskStatus.FAILED
    assert app.scheduler.next_due() is None


async def test_task_retries_override_the_executors(app: TaskQueue, clock: ManualClock) -> None:
    more = Attempts()
    fewer = Attempts()
    app.executor("q", "more", retries=0, retry_after=1)(more.run)
    app.executor("q", "fewer", retries=5, retry_after=1)(fewer.run)
    await app.add_tasks([make_task("more", retries=2), make_task("fewer", retries=0)])
    for _ in range(5):
        await app.run_until_idle()
        clock.advance(seconds=60)
    assert more.count == 3
    assert fewer.count == 1


async def test_task_retry_after_overrides_the_executors(app: TaskQueue, clock: ManualClock) -> None:
    run = Attempts()
    app.executor("q", "t", retries=1, retry_after=100)(run.run)
    await app.add_tasks([make_task(retry_after=3)])
    await app.run_until_idle()
    clock.advance(seconds=3)
    await app.run_until_idle()
    assert run.count == 2


async def test_retry_after_zero_retries_at_once(app: TaskQueue, clock: ManualClock) -> None:
    run = Attempts()
    app.executor("q", "t", retries=3, retry_after=0)(run.run)
    await app.add_tasks([make_task()])
    await app.run_until_idle()
    assert [n for n, _ in run.seen] == [0, 1, 2, 3]
    assert all(at == clock.now() for _, at in run.seen)


async def test_backoff_is_capped_at_five_minutes(app: TaskQueue, clock: ManualClock) -> None:
    run = Attempts()
    app.executor("q", "t", retries=2, retry_after=200)(run.run)
    await app.add_tasks([make_task()])
    await app.run_until_idle()
    clock.advance(seconds=200)
    await app.run_until_idle()
    assert run.count == 2
    second = clock.now()
    clock.set(second + timedelta(seconds=300) - EPSILON)
    await app.run_until_idle()
    assert run.count == 2
    clock.set(second + timedelta(seconds=300))
    await app.run_until_idle()
    assert run.count == 3  # 200 * 2**2 = 800 s would have waited much longer


async def test_store_on_failure_shows_the_task_between_attempts(
    app: TaskQueue, clock: ManualClock
) -> None:
    run = Attempts(succeed_on=2)
    app.executor("q", "t", retries=3, retry_after=1, store_on_failure=True)(run.run)
    [tid] = await app.add_tasks([make_task()])
    assert await app.get_task(tid) is None
    await app.run_until_idle()
    record = await app.get_task(tid)
    assert record is not None and record.status is TaskStatus.SCHEDULED
    assert record.execution_stats["retry_count"] == 1
    assert record.execution_stats["last_error"] == "attempt 0 failed"
    assert record.execute_at == clock.now() + timedelta(seconds=1)
    clock.advance(seconds=1)
    await app.run_until_idle()
    record = await app.get_task(tid)
    assert record is not None and record.status is TaskStatus.SCHEDULED
    assert record.execution_stats["retry_count"] == 2
    assert record.execution_stats["last_error"] == "attempt 1 failed"
    clock.advance(seconds=4)
    await app.run_until_idle()
    record = await app.get_task(tid)
    assert record is not None and record.status is TaskStatus.EXECUTED
    assert record.execution_result == "ok on 2"
    assert run.count == 3


async def test_without_store_on_failure_a_retry_travels_by_the_scheduler_alone(
    app: TaskQueue, clock: ManualClock
) -> None:
    run = Attempts(succeed_on=1)
    app.executor("q", "t", retries=1, retry_after=1)(run.run)
    [tid] = await app.add_tasks([make_task()])
    await app.run_until_idle()
    assert await app.get_task(tid) is None
    assert app.task_store.writes == 0
    assert app.scheduler.pending_names() == [f"{tid}.a1"]
    clock.advance(seconds=1)
    await app.run_until_idle()
    assert run.count == 2
    assert await app.get_task(tid) is None
    assert app.task_store.writes == 0


async def test_a_stored_task_moves_on_between_attempts_without_store_on_failure(
    app: TaskQueue, clock: ManualClock
) -> None:
    run = Attempts(succeed_on=1)
    app.executor("q", "t", retries=1, retry_after=1)(run.run)
    [tid] = await app.add_tasks([make_task(force_store=True)])
    await app.run_until_idle()
    record = await app.get_task(tid)
    assert record is not None
    assert (record.status, record.retry_count) == (TaskStatus.SCHEDULED, 1)
    clock.advance(seconds=1)
    await app.run_until_idle()
    record = await app.get_task(tid)
    assert record is not None and record.status is TaskStatus.EXECUTED


async def test_retry_keeps_payload_context_and_task_fields(
    app: TaskQueue, clock: ManualClock
) -> None:
    seen: list[tuple[object, dict[str, str], int | None, str | None]] = []

    @app.executor("q", "t", retries=0, retry_after=1)
    async def run(task: Task, actions: Actions) -> None:
        seen.append((task.payload, task.log_context, task.retries, task.id))
        actions.fail(task, "again")

    [tid] = await app.add_tasks(
        [make_task(payload={"a": 1}, retries=1, metadata={"log_context": {"req": "r-1"}})]
    )
    await app.run_until_idle()
    clock.advance(seconds=1)
    await app.run_until_idle()
    assert seen == [({"a": 1}, {"req": "r-1"}, 1, tid)] * 2


async def test_failed_event_carries_next_attempt_time(
    app: TaskQueue, clock: ManualClock, events: EventRecorder
) -> None:
    app.executor("q", "t", retries=1, retry_after=7)(Attempts().run)
    [tid] = await app.add_tasks([make_task()])
    await app.run_until_idle()
    assert events.of("failed") == [
        ("failed", tid, "attempt 0 failed", True, clock.now() + timedelta(seconds=7))
    ]


async def test_fail_meta_cannot_reset_the_retry_counter(app: TaskQueue, clock: ManualClock) -> None:
    attempts: list[int] = []

    @app.executor("q", "t", retries=2, retry_after=1)
    async def run(task: Task, actions: Actions) -> None:
        attempts.append(task.retry_count)
        actions.fail(task, "no", {"retry_count": 0, "provider": "smtp"})

    [tid] = await app.add_tasks([make_task()])
    for _ in range(6):
        await app.run_until_idle()
        clock.advance(seconds=10)
    assert attempts == [0, 1, 2]
    record = await app.get_task(tid)
    assert record is not None and record.status is TaskStatus.FAILED
    assert record.execution_stats["provider"] == "smtp"
