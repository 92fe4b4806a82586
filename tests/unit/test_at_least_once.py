"""At-least-once delivery: duplicates, stale attempts, early and late deliveries, poison
records, and crashes between the writes of a batch."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import pytest

from tests.support.events import USER, EventRecorder, WorkerKilled, make_task
from tq_aws import Actions, ProjectionRow, Task, TaskQueue, TaskStatus
from tq_aws.core.codec import encode_task
from tq_aws.core.poison import PoisonRecord
from tq_aws.errors import CodecError
from tq_aws.ports import Delivery
from tq_aws.testing import FaultInjector, ManualClock, run_until_idle_through_crashes


class Runs:
    """Counts executions per task id; succeeds with the payload unless told to fail."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.ids: list[str] = []

    async def run(self, task: Task, actions: Actions) -> None:
        self.ids.append(task.id or "")
        if self.fail:
            actions.fail(task, f"attempt {task.retry_count} failed")
        else:
            actions.success(task, task.payload)

    def count(self, task_id: str) -> int:
        return self.ids.count(task_id)


def _record_upserts(app: TaskQueue, monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    written: list[tuple[str, str]] = []
    original = app.projection_store.upsert

    async def upsert(rows: Sequence[ProjectionRow]) -> None:
        written.extend((r.task_id, r.status) for r in rows)
        await original(rows)

    monkeypatch.setattr(app.projection_store, "upsert", upsert)
    return written


# -- duplicates ----------------------------------------------------------------------------


async def test_duplicate_of_a_finished_stored_task_is_dropped_and_reprojected(
    app: TaskQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = Runs()
    app.executor("q", "t")(runs.run)
    [tid] = await app.add_tasks([make_task(force_store=True, entity=USER, payload="p")])
    published = await app.get_task(tid)
    await app.run_until_idle()
    written = _record_upserts(app, monkeypatch)
    await app.transport.publish([published])  # the transport delivers it again
    await app.run_until_idle()
    assert runs.count(tid) == 1
    assert app.stats.duplicates_dropped == 1
    assert written == [(tid, "executed")]  # the terminal projection is written again
    [row] = await app.entity_status(USER)
    assert (row.status, row.result) == ("executed", "p")
    record = await app.get_task(tid)
    assert record is not None and record.status is TaskStatus.EXECUTED


async def test_same_record_twice_in_one_batch_runs_once(app: TaskQueue) -> None:
    runs = Runs()
    app.executor("q", "t")(runs.run)
    task = make_task(id="dup-1", payload="x", execute_at=app.clock.now())
    data = encode_task(task)
    app.transport.put_raw("q", data)
    app.transport.put_raw("q", data)
    assert await app.run_until_idle() == 1
    assert runs.ids == ["dup-1"]
    assert app.stats.duplicates_dropped == 1


async def test_delivery_of_an_older_attempt_is_dropped(app: TaskQueue, clock: ManualClock) -> None:
    runs = Runs(fail=True)
    app.executor("q", "t", retries=2, retry_after=10)(runs.run)
    [tid] = await app.add_tasks([make_task(force_store=True)])
    first_attempt = await app.get_task(tid)
    await app.run_until_idle()
    stored = await app.get_task(tid)
    assert stored is not None and stored.retry_count == 1
    await app.transport.publish([first_attempt])  # a late duplicate of attempt 0
    await app.run_until_idle()
    assert runs.count(tid) == 1
    assert app.stats.duplicates_dropped == 1
    stored = await app.get_task(tid)
    assert stored is not None
    assert (stored.status, stored.retry_count) == (TaskStatus.SCHEDULED, 1)
    clock.advance(seconds=10)
    await app.run_until_idle()
    assert runs.count(tid) == 2


async def test_replayed_first_attempt_never_undoes_a_final_failure(
    app: TaskQueue, clock: ManualClock
) -> None:
    first: list[Task] = []
    runs = Runs(fail=True)

    async def run(task: Task, actions: Actions) -> None:
        if task.retry_count == 0:
            first.append(task)
        await runs.run(task, actions)

    app.executor("q", "t", retries=1, retry_after=10, store_on_failure=True)(run)
    [tid] = await app.add_tasks([make_task()])
    await app.run_until_idle()
    clock.advance(seconds=10)
    await app.run_until_idle()
    final = await app.get_task(tid)
    assert final is not None and final.status is TaskStatus.FAILED
    await app.transport.publish(first)  # the transport replays attempt 0
    await app.run_until_idle()
    # Attempt 0 was never stored (plain tasks cost no store request), so its replay runs again:
    # at-least-once. But it cannot undo the recorded outcome...
    assert runs.count(tid) == 3
    after = await app.get_task(tid)
    assert after is not None and after.status is TaskStatus.FAILED
    assert after.retry_count == 1
    # ...and the retry it scheduled is dropped at delivery, as a duplicate of a finished task.
    clock.advance(seconds=10)
    await app.run_until_idle()
    assert runs.count(tid) == 3
    assert app.stats.duplicates_dropped == 1
    assert app.scheduler.pending_names() == []


async def test_duplicates_and_reordering_never_run_a_stored_task_twice(
    clock: ManualClock,
) -> None:
    app = TaskQueue(clock=clock, batch_size=7)
    runs = Runs()
    app.executor("q", "t")(runs.run)
    faults = FaultInjector(duplicate_rate=0.4, reorder=True, seed=11).install(app)
    ids = await app.add_tasks([make_task(force_store=True, payload=n) for n in range(40)])
    await app.run_until_idle()
    assert faults.duplicates > 5
    assert Counter(runs.ids) == Counter(ids)
    for n, tid in enumerate(ids):
        record = await app.get_task(tid)
        assert record is not None
        assert (record.status, record.execution_result) == (TaskStatus.EXECUTED, n)


async def test_crashes_anywhere_lose_nothing(clock: ManualClock) -> None:
    app = TaskQueue(clock=clock, batch_size=5)
    runs = Runs()
    app.executor("q", "t")(runs.run)
    faults = FaultInjector(duplicate_rate=0.2, reorder=True, crash_rate=0.15, seed=3)
    ids = await app.add_tasks(
        [make_task(force_store=True, entity=USER, payload=n) for n in range(25)]
    )
    faults.install(app)
    crashes = await run_until_idle_through_crashes(app)
    assert crashes > 0
    assert set(runs.ids) == set(ids)
    for n, tid in enumerate(ids):
        record = await app.get_task(tid)
        assert record is not None
        assert (record.status, record.execution_result) == (TaskStatus.EXECUTED, n)
    rows = await app.entity_status(USER)
    assert {r.task_id: r.status for r in rows} == dict.fromkeys(ids, "executed")


# -- early and late deliveries -------------------------------------------------------------


async def test_early_delivery_is_held_back_and_runs_once_when_due(
    app: TaskQueue, clock: ManualClock
) -> None:
    runs = Runs()
    app.executor("q", "t")(runs.run)
    due = clock.now() + timedelta(seconds=30)
    early = make_task(id="early-1", execute_at=due)
    await app.transport.publish([early])  # bypasses add_tasks: a producer or a duplicate
    await app.run_until_idle()
    assert runs.ids == []
    assert app.stats.held_back == 1
    clock.set(due - timedelta(milliseconds=2))
    await app.run_until_idle()
    assert runs.ids == []
    clock.set(due)
    await app.run_until_idle()
    assert runs.ids == ["early-1"]
    clock.advance(seconds=600)
    await app.run_until_idle()
    assert runs.ids == ["early-1"]


async def test_early_copy_of_a_scheduled_task_does_not_run_it_twice(
    app: TaskQueue, clock: ManualClock
) -> None:
    runs = Runs()
    app.executor("q", "t")(runs.run)
    due = clock.now() + timedelta(seconds=30)
    [tid] = await app.add_tasks([make_task(execute_at=due)])
    await app.transport.publish([await app.get_task(tid)])
    await app.run_until_idle()
    assert runs.ids == []
    clock.set(due)
    await app.run_until_idle()
    clock.advance(seconds=600)
    await app.run_until_idle()
    assert runs.ids == [tid]


async def test_early_delivery_leaves_a_stored_task_scheduled_and_cancellable(
    app: TaskQueue, clock: ManualClock
) -> None:
    runs = Runs()
    app.executor("q", "t")(runs.run)
    due = clock.now() + timedelta(seconds=30)
    [tid] = await app.add_tasks([make_task(execute_at=due)])
    await app.transport.publish([await app.get_task(tid)])
    await app.run_until_idle()
    assert runs.ids == [] and app.stats.held_back == 1
    record = await app.get_task(tid)
    assert record is not None and record.status is TaskStatus.SCHEDULED
    assert await app.cancel(tid) is True


async def test_delivery_at_or_after_expiry_is_not_run(
    app: TaskQueue, clock: ManualClock, events: EventRecorder
) -> None:
    runs = Runs()
    app.executor("q", "t")(runs.run)
    deadline = clock.now() + timedelta(seconds=10)
    ids = await app.add_tasks(
        [make_task(expires_at=deadline, entity=USER), make_task(payload="no deadline")]
    )
    clock.set(deadline)
    await app.run_until_idle()
    assert runs.ids == [ids[1]]
    record = await app.get_task(ids[0])
    assert record is not None and record.status is TaskStatus.EXPIRED
    [row] = await app.entity_status(USER)
    assert (row.status, row.error) == ("expired", "expired")
    assert app.stats.expired == 1
    assert events.of("expired") == [("expired", ids[0])]


async def test_delivery_just_before_expiry_runs(app: TaskQueue, clock: ManualClock) -> None:
    runs = Runs()
    app.executor("q", "t")(runs.run)
    deadline = clock.now() + timedelta(seconds=10)
    [tid] = await app.add_tasks([make_task(expires_at=deadline)])
    clock.set(deadline - timedelta(microseconds=1))
    await app.run_until_idle()
    assert runs.ids == [tid]
    assert app.stats.expired == 0


async def test_future_task_that_expires_before_it_is_delivered(
    app: TaskQueue, clock: ManualClock
) -> None:
    runs = Runs()
    app.executor("q", "t")(runs.run)
    now = clock.now()
    [tid] = await app.add_tasks(
        [make_task(execute_at=now + timedelta(seconds=10), expires_at=now + timedelta(seconds=20))]
    )
    clock.advance(seconds=25)
    await app.run_until_idle()
    assert runs.ids == []
    record = await app.get_task(tid)
    assert record is not None and record.status is TaskStatus.EXPIRED


async def test_retry_due_after_expiry_expires(app: TaskQueue, clock: ManualClock) -> None:
    runs = Runs(fail=True)
    app.executor("q", "t", retries=3, retry_after=10)(runs.run)
    [tid] = await app.add_tasks([make_task(expires_at=clock.now() + timedelta(seconds=5))])
    await app.run_until_idle()
    clock.advance(seconds=10)
    await app.run_until_idle()
    assert runs.ids == [tid]
    record = await app.get_task(tid)
    assert record is not None and record.status is TaskStatus.EXPIRED


# -- poison records ------------------------------------------------------------------------


async def test_poison_record_is_kept_aside_and_does_not_block_the_queue(app: TaskQueue) -> None:
    runs = Runs()
    app.executor("q", "t")(runs.run)
    [before] = await app.add_tasks([make_task(payload="before")])
    app.transport.put_raw("q", b"garbage")
    app.transport.put_raw("q", b'{"v": 9, "task": {}}')
    [after] = await app.add_tasks([make_task(payload="after")])
    await app.run_until_idle()
    assert runs.ids == [before, after]
    assert [(p.reason, p.data, p.queue_id) for p in app.poison] == [
        ("malformed", b"garbage", "q"),
        ("unknown_version", b'{"v": 9, "task": {}}', "q"),
    ]
    assert [p.position for p in app.poison] == ["memory:q:2", "memory:q:3"]
    assert all(p.seen_at == app.clock.now() and p.error for p in app.poison)
    assert app.stats.poison == 2
    assert app.transport.pending() == 0


async def test_a_batch_of_only_poison_is_consumed(app: TaskQueue) -> None:
    app.transport.put_raw("q", b"\x78not zlib")
    app.transport.put_raw("q", b'{"v": 1, "task": {"type": ""}}')
    await app.run_until_idle()
    assert [p.reason for p in app.poison] == ["malformed", "invalid_task"]
    assert app.transport.pending() == 0
    assert await app.run_until_idle() == 0
    assert len(app.poison) == 2


async def test_poison_is_kept_in_the_poison_store_once_however_often_it_comes(
    app: TaskQueue,
) -> None:
    app.transport.put_raw("q", b"garbage")
    await app.run_until_idle()
    [kept] = await app.poison_records()
    assert (kept.queue_id, kept.position, kept.data) == ("q", "memory:q:1", b"garbage")
    # the same record delivered again (a redelivered batch) is the same poison record
    await app.processor.process(
        [
            Delivery(
                queue_id="q",
                data=b"garbage",
                position="memory:q:1",
                error=CodecError("x", reason="malformed"),
            )
        ]
    )
    assert await app.poison_records() == [kept]
    assert app.stats.poison == 2  # sightings are still counted


async def test_a_batch_whose_poison_could_not_be_kept_runs_nothing_and_comes_again(
    app: TaskQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = Runs()
    app.executor("q", "t")(runs.run)
    app.transport.put_raw("q", b"garbage")
    [tid] = await app.add_tasks([make_task(payload="after")])
    original = app.poison_store.record
    calls = {"n": 0}

    async def record(records: Sequence[PoisonRecord]) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise ConnectionError("poison table unavailable")
        await original(records)

    monkeypatch.setattr(app.poison_store, "record", record)
    with pytest.raises(ConnectionError):
        await app.run_until_idle()
    assert runs.ids == [] and await app.poison_records() == []

    await app.run_until_idle()  # the batch was given back: both come again
    assert runs.ids == [tid]
    assert [p.data for p in await app.poison_records()] == [b"garbage"]


# -- crashes between writes ----------------------------------------------------------------


def _fail_put_once(app: TaskQueue, monkeypatch: pytest.MonkeyPatch, *, on_call: int) -> None:
    original = app.task_store.put
    calls = {"n": 0}

    async def put(tasks: Sequence[Task]) -> None:
        calls["n"] += 1
        if calls["n"] == on_call:
            raise ConnectionError("task table unavailable")
        await original(tasks)

    monkeypatch.setattr(app.task_store, "put", put)


async def test_crash_before_the_records_are_written_redelivers_the_batch(
    clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The outcome of the second batch was never recorded, so it runs again (at-least-once);
    the first batch's task, whose outcome was recorded, never runs again."""
    app = TaskQueue(clock=clock, batch_size=1)
    runs = Runs()
    app.executor("q", "t")(runs.run)
    ids = await app.add_tasks([make_task(force_store=True, payload=n) for n in range(2)])
    _fail_put_once(app, monkeypatch, on_call=2)
    with pytest.raises(ConnectionError):
        await app.run_until_idle()
    assert app.transport.pending() == 1  # given back for redelivery
    assert app.transport.in_flight == 0
    await app.run_until_idle()
    assert runs.count(ids[0]) == 1
    assert runs.count(ids[1]) == 2
    for n, tid in enumerate(ids):
        record = await app.get_task(tid)
        assert record is not None
        assert (record.status, record.execution_result) == (TaskStatus.EXECUTED, n)


async def test_crash_after_scheduling_a_retry_schedules_it_once(
    app: TaskQueue, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    attempts: list[int] = []

    @app.executor("q", "t", retries=1, retry_after=5, store_on_failure=True)
    async def run(task: Task, actions: Actions) -> None:
        attempts.append(task.retry_count)
        actions.fail(task, "transient")

    [tid] = await app.add_tasks([make_task()])
    _fail_put_once(app, monkeypatch, on_call=1)
    with pytest.raises(ConnectionError):
        await app.run_until_idle()
    await app.run_until_idle()
    assert attempts == [0, 0]
    assert app.scheduler.pending_names() == [f"{tid}.a1"]
    clock.advance(seconds=5)
    await app.run_until_idle()
    assert attempts == [0, 0, 1]
    record = await app.get_task(tid)
    assert record is not None and record.status is TaskStatus.FAILED


async def test_crash_after_the_records_are_written_runs_nothing_twice(
    app: TaskQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = Runs()
    app.executor("q", "t")(runs.run)
    ids = await app.add_tasks(
        [make_task(force_store=True, entity=USER, payload=n) for n in range(3)]
    )
    original = app.projection_store.upsert
    crashed: list[bool] = []

    async def upsert(rows: Sequence[ProjectionRow]) -> None:
        if not crashed and rows and rows[0].status == "executed":
            crashed.append(True)
            raise WorkerKilled()
        await original(rows)

    monkeypatch.setattr(app.projection_store, "upsert", upsert)
    with pytest.raises(WorkerKilled):
        await app.run_until_idle()
    assert app.transport.pending() == 3
    await app.run_until_idle()
    assert runs.ids == ids  # each ran once
    assert app.stats.duplicates_dropped == 3
    rows = await app.entity_status(USER)
    assert [(r.task_id, r.status, r.result) for r in rows] == [
        (tid, "executed", n) for n, tid in enumerate(ids)
    ]


async def test_redelivery_after_a_crash_keeps_the_original_order(
    app: TaskQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    order: list[Any] = []

    @app.executor("q", "t")
    async def run(task: Task, actions: Actions) -> None:
        order.append(task.payload)
        actions.success(task)

    await app.add_tasks([make_task(payload=n, entity=USER) for n in range(4)])
    original = app.projection_store.upsert
    crashed: list[bool] = []

    async def upsert(rows: Sequence[ProjectionRow]) -> None:
        if not crashed and rows and rows[0].status == "executed":
            crashed.append(True)
            raise WorkerKilled()
        await original(rows)

    monkeypatch.setattr(app.projection_store, "upsert", upsert)
    with pytest.raises(WorkerKilled):
        await app.run_until_idle()
    await app.run_until_idle()
    # Plain tasks have no stored copy, so the redelivered batch runs again, in order.
    assert order == [0, 1, 2, 3, 0, 1, 2, 3]


async def test_stored_and_plain_tasks_of_one_batch_run_in_delivery_order(app: TaskQueue) -> None:
    runs = Runs()
    app.executor("q", "t", partition_key=lambda t: "one-key")(runs.run)
    tasks = [make_task(payload=i, force_store=i % 2 == 1) for i in range(6)]
    ids = await app.add_tasks(tasks)
    finished = ids[3]
    await app.run_until_idle()
    assert runs.ids == ids
    runs.ids.clear()
    # a batch that delivers everything again, plus fresh tasks around a finished stored one
    again = [make_task(payload=i, force_store=i % 2 == 1) for i in range(6, 10)]
    fresh = await app.add_tasks(again[:2])
    stored = await app.get_task(finished)
    assert stored is not None
    await app.transport.publish([stored])
    fresh += await app.add_tasks(again[2:])
    await app.run_until_idle()

    assert runs.ids == fresh  # in delivery order; the finished stored copy is dropped
    assert app.stats.duplicates_dropped == 1
