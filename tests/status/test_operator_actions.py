"""Operator actions on the app (the status page and the CLI call these): retry a failed task,
retry failed tasks in bulk, redrive poison records, cancel; each safe to send twice, each
logged with who asked."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest

from tq_aws import Actions, Entity, Task, TaskQueue, TaskStatus
from tq_aws.core.codec import encode_task
from tq_aws.core.poison import PoisonRecord
from tq_aws.testing import ManualClock

USER = Entity(id="u-1", type="user")


@pytest.fixture
def runs(app: TaskQueue) -> list[tuple[str, int]]:
    """``q/flaky`` fails while its payload's ``fail_until`` is above the attempt, and records
    (task id, attempt) of every run; ``q/ok`` succeeds."""
    seen: list[tuple[str, int]] = []

    @app.executor("q", "flaky")
    async def flaky(task: Task, actions: Actions) -> None:
        seen.append((task.id or "", task.retry_count))
        if task.retry_count < task.payload.get("fail_until", 1):
            raise RuntimeError(f"boom at attempt {task.retry_count}")
        actions.success(task, {"attempt": task.retry_count})

    @app.executor("q", "ok")
    async def ok(task: Task, actions: Actions) -> None:
        seen.append((task.id or "", task.retry_count))
        actions.success(task, "done")

    return seen


async def failed_task(app: TaskQueue, fail_until: int = 1, **kw: object) -> str:
    [tid] = await app.add_tasks(
        [Task(type="flaky", queue_id="q", payload={"fail_until": fail_until}, entity=USER, **kw)]
    )
    await app.run_until_idle()
    stored = await app.get_task(tid)
    assert stored is not None and stored.status is TaskStatus.FAILED
    return tid


async def test_a_retry_runs_the_failed_task_once_as_its_next_attempt(
    app: TaskQueue, runs: list[tuple[str, int]], clock: ManualClock
) -> None:
    tid = await failed_task(app)
    [row] = await app.entity_status(USER)
    assert (row.status, row.error) == ("failed", "boom at attempt 0")
    clock.advance(minutes=5)
    assert await app.retry_task(tid, actor="ops@example") is True
    assert await app.retry_task(tid, actor="ops@example") is False  # a double click
    [row] = await app.entity_status(USER)
    assert (row.status, row.generation) == ("scheduled", 1)  # the retry supersedes the failure
    await app.run_until_idle()
    assert await app.retry_task(tid) is False  # and after it ran
    await app.run_until_idle()
    assert runs == [(tid, 0), (tid, 1)]
    stored = await app.get_task(tid)
    assert stored is not None
    assert (stored.status, stored.execution_result) == (TaskStatus.EXECUTED, {"attempt": 1})
    assert stored.metadata["operator_retry"]["by"] == "ops@example"
    assert stored.metadata["operator_retry"]["error"] == "boom at attempt 0"
    assert "last_error" not in stored.execution_stats
    [row] = await app.entity_status(USER)
    assert (row.status, row.generation, row.error) == ("executed", 1, None)


async def test_a_replayed_retry_of_an_attempt_that_failed_again_starts_nothing(
    app: TaskQueue, runs: list[tuple[str, int]]
) -> None:
    tid = await failed_task(app, fail_until=5)
    assert await app.retry_task(tid, failed_attempt=0) is True
    await app.run_until_idle()  # attempt 1 fails too
    assert (await app.get_task(tid)).status is TaskStatus.FAILED  # type: ignore[union-attr]
    assert await app.retry_task(tid, failed_attempt=0) is False  # the same request again
    assert await app.retry_task(tid, failed_attempt=1) is True  # the page showing attempt 1
    await app.run_until_idle()
    assert runs == [(tid, 0), (tid, 1), (tid, 2)]
    [row] = await app.entity_status(USER)
    assert (row.status, row.generation) == ("failed", 2)


async def test_only_failed_stored_tasks_are_retried(
    app: TaskQueue, runs: list[tuple[str, int]], clock: ManualClock
) -> None:
    assert await app.retry_task("no-such-task") is False
    [done] = await app.add_tasks([Task(type="ok", queue_id="q", force_store=True)])
    [later] = await app.add_tasks(
        [Task(type="ok", queue_id="q", execute_at=clock.now() + timedelta(hours=1))]
    )
    await app.run_until_idle()
    assert await app.retry_task(done) is False  # executed
    assert await app.retry_task(later) is False  # scheduled
    assert runs == [(done, 0)]


async def test_retry_failed_retries_the_failed_tasks_a_filter_names(
    app: TaskQueue, runs: list[tuple[str, int]], clock: ManualClock
) -> None:
    first = [await failed_task(app) for _ in range(3)]
    clock.advance(minutes=10)
    later = [await failed_task(app) for _ in range(2)]
    assert await app.retry_failed(since=clock.now(), actor="ops") == 2
    assert await app.retry_failed(task_type="other") == 0
    assert await app.retry_failed(queue_id="q", actor="ops") == 3  # the first three, once
    assert await app.retry_failed(actor="ops") == 0  # nothing failed is left
    await app.run_until_idle()
    for tid in first + later:
        assert (await app.get_task(tid)).status is TaskStatus.EXECUTED  # type: ignore[union-attr]
    assert sorted(runs) == sorted([(t, 0) for t in first + later] + [(t, 1) for t in first + later])


async def test_redrive_adds_the_tasks_of_records_that_decode_now_once(
    app: TaskQueue, runs: list[tuple[str, int]], clock: ManualClock
) -> None:
    # what an earlier release could not read (a newer codec version), and plain garbage
    readable = Task(id="t-late", type="ok", queue_id="q", payload={"n": 1})
    records = [
        PoisonRecord(
            queue_id="tq-tasks",
            position="tq-tasks/shardId-000000000000/49590338271490256608559692538361571095921575989136588898",
            reason="unknown_version",
            error="record version 9 is not known",
            data=encode_task(readable),
            seen_at=clock.now(),
        ),
        PoisonRecord(
            queue_id="tq-tasks",
            position="tq-tasks/shardId-000000000000/49590338271490256608559692538361571095921575989136588899",
            reason="malformed",
            error="not JSON",
            data=b"\xff not a task",
            seen_at=clock.now(),
        ),
    ]
    await app.poison_store.record(records)
    assert await app.redrive_poison(reason="malformed") == 0  # still does not decode
    assert await app.redrive_poison([records[0].key], actor="ops") == 1
    assert await app.redrive_poison([records[0].key], actor="ops") == 0  # sent twice
    assert await app.redrive_poison(actor="ops") == 0  # by filter: nothing new
    await app.run_until_idle()
    assert runs == [("t-late", 0)]
    assert (await app.get_task("t-late")).status is TaskStatus.EXECUTED  # type: ignore[union-attr]
    assert len(await app.poison_records()) == 2  # the records stay for the record


async def test_every_action_is_logged_with_who_what_and_when(
    app: TaskQueue,
    runs: list[tuple[str, int]],
    clock: ManualClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    tid = await failed_task(app)
    [later] = await app.add_tasks(
        [Task(type="ok", queue_id="q", execute_at=clock.now() + timedelta(hours=1))]
    )
    caplog.set_level(logging.INFO, logger="tq_aws.engine.operator")
    await app.retry_task(tid, actor="alice")
    await app.retry_task(tid, actor="bob")
    await app.cancel(later, actor="carol")
    await app.redrive_poison(actor="dave")
    await app.retry_failed(actor="erin")
    logged = [
        (r.operator_actor, r.operator_action, r.operator_target, r.operator_outcome)  # type: ignore[attr-defined]
        for r in caplog.records
        if r.name == "tq_aws.engine.operator"
    ]
    assert logged == [
        ("alice", "retry", tid, "attempt 1 started"),
        ("bob", "retry", tid, "refused: scheduled"),
        ("carol", "cancel", later, "cancelled"),
        ("erin", "retry_failed", "task_type=None queue_id=None since=None", "0 started"),
    ]
    at = {r.operator_at for r in caplog.records if r.name == "tq_aws.engine.operator"}  # type: ignore[attr-defined]
    assert at == {clock.now().strftime("%Y-%m-%dT%H:%M:%S.%fZ")}


async def test_a_retried_join_moves_its_flows_row_on(app: TaskQueue) -> None:
    from tq_aws import Join

    joins: list[int] = []

    @app.executor("f", "start")
    async def start(task: Task, actions: Actions) -> None:
        steps = [Task(type="step", queue_id="f")]
        actions.start_flow(steps, Join(queue_id="f", type="join"), entity=USER)
        actions.success(task, None)

    @app.executor("f", "step")
    async def step(task: Task, actions: Actions) -> None:
        actions.success(task, 1)

    @app.executor("f", "join")
    async def join(task: Task, actions: Actions) -> None:
        joins.append(task.retry_count)
        if len(joins) == 1:
            raise RuntimeError("warehouse offline")
        actions.success(task, "shipped")

    await app.add_tasks([Task(type="start", queue_id="f")])
    await app.run_until_idle()
    [flow_row] = [r for r in await app.entity_status(USER) if r.kind == "flow"]
    assert (flow_row.status, flow_row.error) == ("failed", "warehouse offline")
    status = await app.flow_status(flow_row.task_id)
    assert status is not None
    assert await app.retry_task(status.join_task_id) is True
    await app.run_until_idle()
    assert joins == [0, 1]
    [flow_row] = [r for r in await app.entity_status(USER) if r.kind == "flow"]
    assert (flow_row.status, flow_row.result, flow_row.generation) == ("executed", "shipped", 1)
