"""What is stored when, future tasks on the scheduler, force_store, and cancel."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.support.events import USER, EventRecorder, make_task
from tq_aws import Actions, Task, TaskQueue, TaskStatus
from tq_aws.errors import PublishError
from tq_aws.testing import ManualClock


@pytest.fixture
def runs(app: TaskQueue) -> list[str]:
    """Registers ``q/t``, which succeeds with its payload, and records the ids it ran."""
    seen: list[str] = []

    @app.executor("q", "t")
    async def run(task: Task, actions: Actions) -> None:
        seen.append(task.id or "")
        actions.success(task, task.payload)

    return seen


async def test_plain_immediate_success_writes_nothing(app: TaskQueue, runs: list[str]) -> None:
    [tid] = await app.add_tasks([make_task(entity=USER)])
    await app.run_until_idle()
    assert runs == [tid]
    assert app.task_store.writes == 0
    assert await app.get_task(tid) is None
    assert len(app.task_store) == 0


async def test_future_task_is_stored_scheduled_and_runs_when_due(
    app: TaskQueue, clock: ManualClock, runs: list[str]
) -> None:
    due = clock.now() + timedelta(minutes=10)
    [tid] = await app.add_tasks([make_task(execute_at=due, payload="later")])
    record = await app.get_task(tid)
    assert record is not None
    assert (record.status, record.execute_at) == (TaskStatus.SCHEDULED, due)
    assert app.transport.pending() == 0  # the scheduler holds it, not the transport
    assert await app.run_until_idle() == 0
    clock.set(due - timedelta(microseconds=1))
    assert await app.run_until_idle() == 0
    assert runs == []
    clock.set(due)
    assert await app.run_until_idle() == 1
    assert runs == [tid]
    record = await app.get_task(tid)
    assert record is not None
    assert (record.status, record.execution_result) == (TaskStatus.EXECUTED, "later")


async def test_task_due_now_or_in_the_past_is_immediate(
    app: TaskQueue, clock: ManualClock, runs: list[str]
) -> None:
    ids = await app.add_tasks(
        [make_task(execute_at=clock.now()), make_task(execute_at=clock.now() - timedelta(days=1))]
    )
    assert app.transport.pending() == 2
    await app.run_until_idle()
    assert runs == ids
    assert app.task_store.writes == 0


async def test_future_tasks_fire_in_due_order(
    app: TaskQueue, clock: ManualClock, runs: list[str]
) -> None:
    now = clock.now()
    ids = await app.add_tasks(
        [make_task(execute_at=now + timedelta(seconds=s)) for s in (30, 10, 20)]
    )
    clock.advance(seconds=60)
    await app.run_until_idle()
    assert runs == [ids[1], ids[2], ids[0]]


async def test_force_store_goes_scheduled_processing_then_terminal(app: TaskQueue) -> None:
    during: list[tuple[str, object]] = []

    @app.executor("q", "t")
    async def run(task: Task, actions: Actions) -> None:
        record = await app.get_task(task.id or "")
        assert record is not None
        during.append((record.status, record.processing_started_at))
        actions.success(task, "done")

    [tid] = await app.add_tasks([make_task(force_store=True)])
    record = await app.get_task(tid)
    assert record is not None and record.status is TaskStatus.SCHEDULED
    assert app.transport.pending() == 1  # stored and published at once
    await app.run_until_idle()
    assert during == [(TaskStatus.PROCESSING, app.clock.now())]
    record = await app.get_task(tid)
    assert record is not None
    assert (record.status, record.execution_result) == (TaskStatus.EXECUTED, "done")


async def test_stored_future_task_keeps_retries_and_payload(
    app: TaskQueue, clock: ManualClock
) -> None:
    due = clock.now() + timedelta(hours=1)
    ids = await app.add_tasks(
        [
            make_task(execute_at=due, retries=0, payload={"k": [1, None]}),
            make_task(execute_at=due),
        ]
    )
    first, second = [await app.get_task(i) for i in ids]
    assert first is not None and second is not None
    assert (first.retries, first.payload) == (0, {"k": [1, None]})
    assert second.retries is None  # absent stays absent: the executor's value applies


# -- cancel --------------------------------------------------------------------------------


async def test_cancel_future_task(
    app: TaskQueue, clock: ManualClock, runs: list[str], events: EventRecorder
) -> None:
    due = clock.now() + timedelta(seconds=30)
    [tid, other] = await app.add_tasks(
        [make_task(execute_at=due, entity=USER), make_task(execute_at=due)]
    )
    assert await app.cancel(tid) is True
    record = await app.get_task(tid)
    assert record is not None and record.status is TaskStatus.CANCELLED
    clock.advance(seconds=60)
    await app.run_until_idle()
    assert runs == [other]
    record = await app.get_task(tid)
    assert record is not None and record.status is TaskStatus.CANCELLED
    rows = await app.entity_status(USER)
    assert [(r.task_id, r.status) for r in rows] == [(tid, "cancelled")]
    assert app.stats.cancelled == 1
    assert events.of("cancelled") == [("cancelled", tid)]


async def test_cancel_force_store_task_whose_record_is_already_queued(
    app: TaskQueue, runs: list[str]
) -> None:
    [tid] = await app.add_tasks([make_task(force_store=True)])
    assert app.transport.pending() == 1
    assert await app.cancel(tid) is True
    await app.run_until_idle()
    assert runs == []
    record = await app.get_task(tid)
    assert record is not None and record.status is TaskStatus.CANCELLED
    assert app.stats.duplicates_dropped == 0


async def test_cancelled_task_never_runs_even_when_its_record_is_delivered(
    app: TaskQueue, clock: ManualClock, runs: list[str]
) -> None:
    due = clock.now() + timedelta(seconds=30)
    [tid] = await app.add_tasks([make_task(execute_at=due)])
    stored = await app.get_task(tid)
    assert await app.cancel(tid) is True
    clock.set(due)
    await app.transport.publish([stored])  # e.g. the scheduler had fired already
    await app.run_until_idle()
    assert runs == []
    record = await app.get_task(tid)
    assert record is not None and record.status is TaskStatus.CANCELLED


async def test_cancel_returns_false_when_there_is_nothing_to_cancel(
    app: TaskQueue, clock: ManualClock
) -> None:
    cancel_inside: list[bool] = []

    @app.executor("q", "t")
    async def run(task: Task, actions: Actions) -> None:
        cancel_inside.append(await app.cancel(task.id or ""))
        actions.success(task)

    [plain] = await app.add_tasks([make_task()])
    [stored] = await app.add_tasks([make_task(force_store=True)])
    assert await app.cancel("no-such-task") is False
    assert await app.cancel(plain) is False  # never stored
    await app.run_until_idle()
    assert cancel_inside == [False, False]  # already started
    assert await app.cancel(stored) is False  # finished
    record = await app.get_task(stored)
    assert record is not None and record.status is TaskStatus.EXECUTED
    assert app.stats.cancelled == 0


async def test_cancel_twice_only_the_first_counts(app: TaskQueue, clock: ManualClock) -> None:
    [tid] = await app.add_tasks([make_task(execute_at=clock.now() + timedelta(seconds=5))])
    assert [await app.cancel(tid), await app.cancel(tid)] == [True, False]
    assert app.stats.cancelled == 1


async def test_cancel_a_stored_retry_between_attempts(app: TaskQueue, clock: ManualClock) -> None:
    attempts: list[int] = []

    @app.executor("q", "t", retries=3, retry_after=1, store_on_failure=True)
    async def run(task: Task, actions: Actions) -> None:
        attempts.append(task.retry_count)
        actions.fail(task, "try again")

    [tid] = await app.add_tasks([make_task()])
    await app.run_until_idle()
    assert await app.cancel(tid) is True
    clock.advance(seconds=100)
    await app.run_until_idle()
    assert attempts == [0]
    record = await app.get_task(tid)
    assert record is not None and record.status is TaskStatus.CANCELLED
    assert app.scheduler.pending_names() == []


# -- publishing failures -------------------------------------------------------------------


async def test_publish_failure_raises_with_ids_and_stored_copies_stay_scheduled(
    app: TaskQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def refuse(tasks: object) -> None:
        raise ConnectionError("stream unavailable")

    monkeypatch.setattr(app.transport, "publish", refuse)
    with pytest.raises(PublishError) as info:
        await app.add_tasks([make_task(force_store=True), make_task()])
    ids = info.value.task_ids
    assert len(ids) == 2
    assert "stream unavailable" in str(info.value)
    stored = await app.get_task(ids[0])
    assert stored is not None and stored.status is TaskStatus.SCHEDULED
    assert await app.get_task(ids[1]) is None


async def test_store_failure_at_add_publishes_nothing(
    app: TaskQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(tasks: object) -> None:
        raise OSError("table unavailable")

    monkeypatch.setattr(app.task_store, "put", broken)
    with pytest.raises(OSError):
        await app.add_tasks([make_task(force_store=True), make_task()])
    assert app.transport.pending() == 0
