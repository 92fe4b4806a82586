"""Known problems of the reference (tq-behaviour.md §3.3 and §10) that this design fixes.

Each test states the fixed behaviour and would fail on the reference's; its docstring says
what the reference did.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import BaseModel

from tests.support.events import USER, EventRecorder, make_task
from tq_aws import Actions, Entity, ProjectionRow, Task, TaskQueue, TaskStatus
from tq_aws.core.actions import NO_DECISION
from tq_aws.errors import TaskValidationError
from tq_aws.testing import ManualClock

# -- §3.3 actions edge cases ---------------------------------------------------------------


async def test_forgetful_executor_fails_not_ignored__ref_3_3(
    app: TaskQueue, clock: ManualClock
) -> None:
    """Reference: stored `ignored` with reason `unknown_executor`, never retried, row stuck."""
    attempts: list[int] = []

    @app.executor("q", "t", retries=1, retry_after=1)
    async def run(task: Task, actions: Actions) -> None:
        attempts.append(task.retry_count)

    [tid] = await app.add_tasks([make_task(entity=USER)])
    await app.run_until_idle()
    clock.advance(seconds=1)
    await app.run_until_idle()
    assert attempts == [0, 1]
    record = await app.get_task(tid)
    assert record is not None and record.status is TaskStatus.FAILED
    assert record.execution_stats["last_error"] == NO_DECISION
    assert "ignored_reason" not in record.execution_stats
    assert app.stats.ignored == 0
    [row] = await app.entity_status(USER)
    assert (row.status, row.error) == ("failed", NO_DECISION)


async def test_batch_executor_forgotten_task_fails_not_vanishes__ref_3_3(
    app: TaskQueue, clock: ManualClock, events: EventRecorder
) -> None:
    """Reference: a task a multi executor left undecided vanished: no write, no retry."""
    attempts: list[int] = []

    @app.batch_executor("q", "b", retries=1, retry_after=1)
    async def run(tasks: list[Task], actions: Actions) -> None:
        attempts.extend(t.retry_count for t in tasks)

    [tid] = await app.add_tasks([make_task("b")])
    await app.run_until_idle()
    clock.advance(seconds=1)
    await app.run_until_idle()
    assert attempts == [0, 1]
    record = await app.get_task(tid)
    assert record is not None and record.status is TaskStatus.FAILED
    assert [e[3] for e in events.of("failed")] == [True, False]


async def test_success_twice_is_recorded_once__ref_3_3(
    app: TaskQueue, events: EventRecorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reference: two successTasks entries: double DB update and double projection."""
    rows_written: list[str] = []
    original = app.projection_store.upsert

    async def upsert(rows: Sequence[ProjectionRow]) -> None:
        rows_written.extend(r.status for r in rows)
        await original(rows)

    monkeypatch.setattr(app.projection_store, "upsert", upsert)

    @app.executor("q", "t")
    async def run(task: Task, actions: Actions) -> None:
        actions.success(task, 1)
        actions.success(task, 2)

    await app.add_tasks([make_task(entity=USER)])
    await app.run_until_idle()
    assert rows_written.count("executed") == 1
    assert app.stats.executed == 1
    assert [e[2] for e in events.of("completed")] == [1]


async def test_fail_twice_schedules_one_retry__ref_3_3(app: TaskQueue, clock: ManualClock) -> None:
    """Reference: two failedTasks entries, two retry copies, the task ran twice next round."""
    attempts: list[int] = []

    @app.executor("q", "t", retries=1, retry_after=1)
    async def run(task: Task, actions: Actions) -> None:
        attempts.append(task.retry_count)
        actions.fail(task, "one")
        actions.fail(task, "two")

    [tid] = await app.add_tasks([make_task()])
    await app.run_until_idle()
    assert app.scheduler.pending_names() == [f"{tid}.a1"]
    assert app.stats.retried == 1
    clock.advance(seconds=1)
    await app.run_until_idle()
    assert attempts == [0, 1]
    record = await app.get_task(tid)
    assert record is not None and record.execution_stats["last_error"] == "one"


async def test_success_then_fail_is_not_also_retried__ref_3_3(
    app: TaskQueue, clock: ManualClock
) -> None:
    """Reference: the task landed in both lists: marked executed AND a retry scheduled."""
    attempts: list[int] = []

    @app.executor("q", "t", retries=3, retry_after=1)
    async def run(task: Task, actions: Actions) -> None:
        attempts.append(task.retry_count)
        actions.success(task, "ok")
        actions.fail(task, "also failed?")

    [tid] = await app.add_tasks([make_task(force_store=True)])
    await app.run_until_idle()
    clock.advance(seconds=60)
    await app.run_until_idle()
    assert attempts == [0]
    assert app.scheduler.pending_names() == []
    record = await app.get_task(tid)
    assert record is not None and record.status is TaskStatus.EXECUTED


async def test_children_of_failed_attempts_are_not_dispatched__ref_3_3(
    app: TaskQueue, clock: ManualClock
) -> None:
    """Reference: children were dispatched even when the parent failed, on every retry."""
    children: list[str] = []

    @app.executor("q", "parent", retries=2, retry_after=1)
    async def parent(task: Task, actions: Actions) -> None:
        actions.add_tasks([make_task("child", payload=f"from attempt {task.retry_count}")])
        if task.retry_count < 2:
            raise RuntimeError("flaky")
        actions.success(task)

    @app.executor("q", "child")
    async def child(task: Task, actions: Actions) -> None:
        children.append(task.payload)
        actions.success(task)

    await app.add_tasks([make_task("parent")])
    for _ in range(3):
        await app.run_until_idle()
        clock.advance(seconds=10)
    assert children == ["from attempt 2"]


async def test_success_for_another_task_is_rejected__ref_3_3(app: TaskQueue) -> None:
    """Reference: success(otherTask) from a forked actions object decided the other task."""
    ids: list[str] = []

    @app.executor("q", "t")
    async def run(task: Task, actions: Actions) -> None:
        if task.payload == "a":
            actions.success(make_task(id=ids[1]), "hijacked")
        actions.success(task, f"own {task.payload}")

    ids.extend(
        await app.add_tasks(
            [make_task(payload="a", force_store=True), make_task(payload="b", force_store=True)]
        )
    )
    await app.run_until_idle()
    a, b = [await app.get_task(i) for i in ids]
    assert b is not None and b.execution_result == "own b"
    assert a is not None and a.status is TaskStatus.FAILED
    assert "not part of" in a.execution_stats["last_error"]


# -- §10 known bugs and limitations --------------------------------------------------------


async def test_retry_after_zero_means_no_delay__ref_10_1_T5(
    app: TaskQueue, clock: ManualClock
) -> None:
    """Reference: `retry_after: 0` was treated as absent, i.e. the 2000 ms default."""
    attempts: list[datetime | None] = []

    @app.executor("q", "t", retries=1)
    async def run(task: Task, actions: Actions) -> None:
        attempts.append(task.execute_at)
        actions.fail(task, "no")

    await app.add_tasks([make_task(retry_after=0)])
    await app.run_until_idle()
    assert attempts == [clock.now(), clock.now()]


async def test_one_failing_executor_does_not_retry_the_batchs_successes__ref_10_1_T1(
    app: TaskQueue, clock: ManualClock
) -> None:
    """Reference: a failed run failed the whole batch, so tasks that had succeeded ran again."""
    runs: list[object] = []

    @app.executor("q", "good", retries=3, retry_after=1)
    async def good(task: Task, actions: Actions) -> None:
        runs.append(task.payload)
        actions.success(task)

    @app.executor("q", "bad", retries=3, retry_after=1)
    async def bad(task: Task, actions: Actions) -> None:
        runs.append("bad")
        raise SystemError("executor crashed")

    await app.add_tasks(
        [make_task("good", payload=1), make_task("bad"), make_task("good", payload=2)]
    )
    await app.run_until_idle()
    clock.advance(seconds=1)
    await app.run_until_idle()
    assert runs == [1, 2, "bad", "bad"]


@pytest.mark.parametrize("how", ["future", "force_store"])
async def test_stored_task_keeps_the_executors_retries__ref_10_4_4(
    app: TaskQueue, clock: ManualClock, how: str
) -> None:
    """Reference: storing a task wrote `retries: 0`, which then overrode the executor's."""
    attempts: list[int] = []

    @app.executor("q", "t", retries=2, retry_after=1)
    async def run(task: Task, actions: Actions) -> None:
        attempts.append(task.retry_count)
        actions.fail(task, "no")

    if how == "future":
        task = make_task(execute_at=clock.now() + timedelta(minutes=5))
    else:
        task = make_task(force_store=True)
    [tid] = await app.add_tasks([task])
    stored = await app.get_task(tid)
    assert stored is not None and stored.retries is None
    for _ in range(4):
        clock.advance(seconds=300)
        await app.run_until_idle()
    assert attempts == [0, 1, 2]


async def test_retry_backoff_is_enforced__ref_10_4_6(app: TaskQueue, clock: ManualClock) -> None:
    """Reference: id-bearing retries were published at once and ran without any backoff on
    transports that ignore execute_at (Kinesis)."""
    attempts: list[datetime] = []

    @app.executor("q", "t", retries=1, retry_after=30)
    async def run(task: Task, actions: Actions) -> None:
        attempts.append(clock.now())
        actions.fail(task, "no")

    start = clock.now()
    await app.add_tasks([make_task(force_store=True)])
    for _ in range(3):
        await app.run_until_idle()
    assert attempts == [start]
    clock.advance(seconds=30)
    await app.run_until_idle()
    assert attempts == [start, start + timedelta(seconds=30)]


async def test_stored_final_failure_is_exhausted_with_the_real_error__ref_10_4_8(
    app: TaskQueue, events: EventRecorder
) -> None:
    """Reference: onTaskExhausted only for id-less discards, and onTaskFailed always carried a
    generic 'Task failed' error with no next_attempt_at."""

    @app.executor("q", "t")
    async def run(task: Task, actions: Actions) -> None:
        raise LookupError("no such mailbox")

    [tid] = await app.add_tasks([make_task(force_store=True)])
    await app.run_until_idle()
    assert events.of("failed") == [("failed", tid, "no such mailbox", False, None)]
    assert events.of("exhausted") == [("exhausted", tid, "no such mailbox", 1)]


async def test_final_failure_without_store_options_is_kept__ref_2_6(app: TaskQueue) -> None:
    """Reference: an id-less task out of retries was discarded: nothing was persisted."""

    @app.executor("q", "t")
    async def run(task: Task, actions: Actions) -> None:
        actions.fail(task, "bounced")

    [tid] = await app.add_tasks([make_task()])
    await app.run_until_idle()
    record = await app.get_task(tid)
    assert record is not None and record.status is TaskStatus.FAILED
    assert record.execution_stats["last_error"] == "bounced"


async def test_unknown_executor_row_is_terminal__ref_10_4_24(app: TaskQueue) -> None:
    """Reference: ignored tasks wrote no terminal projection, so the entity stayed `processing`."""
    [tid] = await app.add_tasks([make_task("nobody", entity=USER)])
    await app.run_until_idle()
    [row] = await app.entity_status(USER)
    assert (row.task_id, row.status) == (tid, "ignored")


async def test_late_writes_cannot_regress_a_terminal_row__ref_10_4_24(
    app: TaskQueue, clock: ManualClock
) -> None:
    """Reference: projections had no version; a late `scheduled` (re-add) overwrote a
    terminal row."""

    @app.executor("q", "t")
    async def run(task: Task, actions: Actions) -> None:
        actions.success(task, "first")

    await app.add_tasks([make_task(id="fixed-1", entity=USER)])
    await app.run_until_idle()
    [first] = await app.entity_status(USER)
    clock.advance(seconds=5)
    await app.add_tasks([make_task(id="fixed-1", entity=USER)])  # re-added by a producer
    [row] = await app.entity_status(USER)
    assert (row.status, row.result, row.updated_at) == ("executed", "first", first.updated_at)


async def test_entity_tasks_without_store_options_are_projected__ref_5(app: TaskQueue) -> None:
    """Reference: an immediate entity task had no id, so building its projection threw and the
    whole projection batch was dropped."""

    @app.executor("q", "t")
    async def run(task: Task, actions: Actions) -> None:
        actions.success(task)

    others = [Entity(id=f"o-{n}", type="order") for n in range(3)]
    ids = await app.add_tasks([make_task(entity=e) for e in others])
    await app.run_until_idle()
    for entity, tid in zip(others, ids, strict=True):
        assert [(r.task_id, r.status) for r in await app.entity_status(entity)] == [
            (tid, "executed")
        ]


async def test_add_tasks_returns_the_ids__ref_10_4_10(app: TaskQueue) -> None:
    """Reference: addTasks returned nothing; callers could not learn generated ids."""
    ids = await app.add_tasks([make_task(), make_task(force_store=True)])
    assert len(ids) == 2 and all(ids)
    assert (await app.get_task(ids[1])).id == ids[1]


async def test_add_tasks_is_all_or_nothing_across_queues__ref_10_4_10(app: TaskQueue) -> None:
    """Reference: an error in one queue group aborted the rest after earlier groups were
    already published (partial add, no rollback)."""

    class Strict(BaseModel):
        n: int

    app.executor("q2", "strict", payload_model=Strict)(lambda task, actions: None)
    with pytest.raises(TaskValidationError):
        await app.add_tasks(
            [make_task(queue_id="q1"), make_task("strict", "q2", payload={"n": "not a number"})]
        )
    assert app.transport.pending("q1") == app.transport.pending("q2") == 0


async def test_identical_tasks_do_not_collide__ref_10_4_34(app: TaskQueue) -> None:
    """Reference: id-less tasks with equal type, queue, created_at and payload shared one
    identity, so one was dropped by the lock filter or its actions overwritten."""
    seen: list[str] = []

    @app.executor("q", "t")
    async def run(task: Task, actions: Actions) -> None:
        seen.append(task.id or "")
        actions.success(task)

    created = datetime(2026, 1, 1, tzinfo=UTC)
    ids = await app.add_tasks([make_task(payload={"x": 1}, created_at=created) for _ in range(2)])
    await app.run_until_idle()
    assert len(set(ids)) == 2 and seen == ids


async def test_cancel_exists_and_is_announced__ref_1_2(
    app: TaskQueue, clock: ManualClock, events: EventRecorder
) -> None:
    """Reference: no cancel API, and onTaskCancelled was declared but never emitted."""
    [tid] = await app.add_tasks([make_task(execute_at=clock.now() + timedelta(seconds=1))])
    assert await app.cancel(tid) is True
    assert events.of("cancelled") == [("cancelled", tid)]
    assert (await app.get_task(tid)).status is TaskStatus.CANCELLED


async def test_partition_key_on_stored_paths__ref_1_4_D1(
    app: TaskQueue, clock: ManualClock
) -> None:
    """Reference: getPartitionKey was applied on the immediate path only (TODO D1)."""
    keys: dict[str, str | None] = {}

    @app.executor("q", "t", partition_key=lambda task: f"k-{task.payload}")
    async def run(task: Task, actions: Actions) -> None:
        keys[task.payload] = task.partition_key
        actions.success(task)

    ids = await app.add_tasks(
        [
            make_task(payload="stored", force_store=True),
            make_task(payload="future", execute_at=clock.now() + timedelta(minutes=3)),
        ]
    )
    assert [(await app.get_task(i)).partition_key for i in ids] == ["k-stored", "k-future"]
    clock.advance(minutes=3)
    await app.run_until_idle()
    assert keys == {"stored": "k-stored", "future": "k-future"}


async def test_oversized_result_is_kept__ref_2_8(clock: ManualClock) -> None:
    """Reference: a result over 256 KiB was dropped with a warning."""
    app = TaskQueue(clock=clock)

    @app.executor("q", "t")
    async def run(task: Task, actions: Actions) -> None:
        actions.success(task, "r" * (300 * 1024))

    [tid] = await app.add_tasks([make_task(force_store=True)])
    await app.run_until_idle()
    assert (await app.get_task(tid)).execution_result == "r" * (300 * 1024)


async def test_unserialisable_result_fails_the_task__ref_2_8(app: TaskQueue) -> None:
    """Reference: an unserialisable result was dropped and the task still 'succeeded'."""

    @app.executor("q", "t")
    async def run(task: Task, actions: Actions) -> None:
        actions.success(task, {"when": object()})

    [tid] = await app.add_tasks([make_task()])
    await app.run_until_idle()
    record = await app.get_task(tid)
    assert record is not None and record.status is TaskStatus.FAILED


async def test_expires_at_is_enforced__ref_1_1(app: TaskQueue, clock: ManualClock) -> None:
    """Reference: tq never checked expires_at (only some mq backends and a manual cleanup)."""
    ran: list[str] = []

    @app.executor("q", "t")
    async def run(task: Task, actions: Actions) -> None:
        ran.append(task.id or "")
        actions.success(task)

    [tid] = await app.add_tasks([make_task(expires_at=clock.now() + timedelta(seconds=1))])
    clock.advance(seconds=2)
    await app.run_until_idle()
    assert ran == []
    assert (await app.get_task(tid)).status is TaskStatus.EXPIRED


async def test_batch_children_with_a_parent_inherit_its_context__ref_7_8(app: TaskQueue) -> None:
    """Reference: children added through a multi executor's root actions got no log context."""
    contexts: list[dict[str, str]] = []

    @app.batch_executor("q", "b")
    async def run(tasks: list[Task], actions: Actions) -> None:
        for t in tasks:
            actions.add_tasks([make_task("child")], parent=t)
            actions.success(t)

    @app.executor("q", "child")
    async def child(task: Task, actions: Actions) -> None:
        contexts.append(task.log_context)
        actions.success(task)

    await app.add_tasks([make_task("b", metadata={"log_context": {"req": "r-5"}})])
    await app.run_until_idle()
    assert contexts == [{"req": "r-5"}]


async def test_batch_executor_tasks_get_per_task_events__ref_7_3(
    app: TaskQueue, events: EventRecorder
) -> None:
    """Reference: multi executors emitted no per-task started/completed/failed events."""

    @app.batch_executor("q", "b")
    async def run(tasks: list[Task], actions: Actions) -> None:
        for t in tasks:
            actions.success(t)

    ids = await app.add_tasks([make_task("b"), make_task("b")])
    await app.run_until_idle()
    assert [e[1] for e in events.of("started")] == ids
    assert [e[1] for e in events.of("completed")] == ids
