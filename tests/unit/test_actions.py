"""What an executor can do through ``actions``: decide, add children, log."""

from __future__ import annotations

import logging
import uuid

import pytest
from pydantic import BaseModel

from tests.support.events import EventRecorder, make_task
from tq_aws import Actions, Task, TaskQueue, TaskStatus
from tq_aws.core.actions import NO_DECISION
from tq_aws.testing import ManualClock

# -- decisions -----------------------------------------------------------------------------


async def test_success_records_the_result(app: TaskQueue) -> None:
    @app.executor("q", "t")
    async def run(task: Task, actions: Actions) -> None:
        actions.success(task, {"sum": 3})

    [tid] = await app.add_tasks([make_task(force_store=True)])
    await app.run_until_idle()
    record = await app.get_task(tid)
    assert record is not None
    assert (record.status, record.execution_result) == (TaskStatus.EXECUTED, {"sum": 3})
    assert app.stats.executed == 1


async def test_raising_executor_fails_with_message_and_stack(app: TaskQueue) -> None:
    @app.executor("q", "t")
    async def run(task: Task, actions: Actions) -> None:
        raise KeyError("missing-thing")

    [tid] = await app.add_tasks([make_task()])
    await app.run_until_idle()
    record = await app.get_task(tid)
    assert record is not None and record.status is TaskStatus.FAILED
    assert record.execution_stats["last_error"] == "'missing-thing'"
    stack = record.execution_stats["last_error_stack"]
    assert stack.startswith("Traceback") and "KeyError: 'missing-thing'" in stack
    assert "in run" in stack


async def test_exception_without_message_is_named_by_type(app: TaskQueue) -> None:
    @app.executor("q", "t")
    def run(task: Task, actions: Actions) -> None:
        raise TimeoutError()

    [tid] = await app.add_tasks([make_task()])
    await app.run_until_idle()
    record = await app.get_task(tid)
    assert record is not None and record.execution_stats["last_error"] == "TimeoutError"


async def test_returning_without_a_decision_fails(app: TaskQueue) -> None:
    @app.executor("q", "t")
    async def run(task: Task, actions: Actions) -> None:
        return None

    [tid] = await app.add_tasks([make_task()])
    await app.run_until_idle()
    record = await app.get_task(tid)
    assert record is not None and record.status is TaskStatus.FAILED
    assert record.execution_stats["last_error"] == (
        "executor returned without calling actions.success() or actions.fail()"
    )
    assert record.execution_stats["last_error"] == NO_DECISION
    assert "ignored_reason" not in record.execution_stats


async def test_first_decision_wins_and_later_ones_are_logged(
    app: TaskQueue, caplog: pytest.LogCaptureFixture
) -> None:
    @app.executor("q", "t")
    async def run(task: Task, actions: Actions) -> None:
        actions.success(task, "first")
        actions.fail(task, "second")
        actions.success(task, "third")

    [tid] = await app.add_tasks([make_task(force_store=True)])
    with caplog.at_level(logging.WARNING, logger="tq_aws"):
        await app.run_until_idle()
    record = await app.get_task(tid)
    assert record is not None
    assert (record.status, record.execution_result) == (TaskStatus.EXECUTED, "first")
    assert "last_error" not in record.execution_stats
    warnings = [r for r in caplog.records if "already decided" in r.getMessage()]
    assert len(warnings) == 2 and all(r.levelno == logging.WARNING for r in warnings)


async def test_fail_then_success_stays_failed(app: TaskQueue) -> None:
    @app.executor("q", "t")
    async def run(task: Task, actions: Actions) -> None:
        actions.fail(task, "nope")
        actions.success(task, "late")

    [tid] = await app.add_tasks([make_task(force_store=True)])
    await app.run_until_idle()
    record = await app.get_task(tid)
    assert record is not None
    assert (record.status, record.execution_result) == (TaskStatus.FAILED, None)
    assert record.execution_stats["last_error"] == "nope"


async def test_success_then_raise_keeps_the_success(app: TaskQueue) -> None:
    @app.executor("q", "t")
    async def run(task: Task, actions: Actions) -> None:
        actions.success(task, 1)
        raise RuntimeError("after the fact")

    [tid] = await app.add_tasks([make_task(force_store=True)])
    await app.run_until_idle()
    record = await app.get_task(tid)
    assert record is not None and record.status is TaskStatus.EXECUTED
    assert record.execution_result == 1 and "last_error" not in record.execution_stats


async def test_fail_with_string_sets_error_without_stack_and_merges_meta(app: TaskQueue) -> None:
    @app.executor("q", "t")
    async def run(task: Task, actions: Actions) -> None:
        actions.fail(task, "quota exceeded", {"http_status": 429, "provider": "smtp"})

    [tid] = await app.add_tasks([make_task()])
    await app.run_until_idle()
    stats = (await app.get_task(tid)).execution_stats
    assert stats["last_error"] == "quota exceeded"
    assert "last_error_stack" not in stats
    assert (stats["http_status"], stats["provider"]) == (429, "smtp")
    assert stats["failed_at"] == app.clock.now().isoformat()


async def test_fail_with_exception_object_records_its_stack(app: TaskQueue) -> None:
    @app.executor("q", "t")
    async def run(task: Task, actions: Actions) -> None:
        try:
            raise ConnectionError("refused")
        except ConnectionError as exc:
            actions.fail(task, exc, {"host": "db"})

    [tid] = await app.add_tasks([make_task()])
    await app.run_until_idle()
    stats = (await app.get_task(tid)).execution_stats
    assert stats["last_error"] == "refused" and stats["host"] == "db"
    assert "ConnectionError: refused" in stats["last_error_stack"]


async def test_deciding_a_task_outside_the_batch_fails_the_executor(app: TaskQueue) -> None:
    @app.executor("q", "t")
    async def run(task: Task, actions: Actions) -> None:
        actions.success(make_task(id="not-in-batch"))

    [tid] = await app.add_tasks([make_task()])
    await app.run_until_idle()
    record = await app.get_task(tid)
    assert record is not None and record.status is TaskStatus.FAILED
    assert "not part of the running batch" in record.execution_stats["last_error"]


# -- children ------------------------------------------------------------------------------


async def test_add_tasks_returns_child_ids_at_the_call_and_dispatches_after(
    app: TaskQueue,
) -> None:
    returned: list[str] = []
    pending_during: list[int] = []
    children_seen: list[tuple[str, object]] = []

    @app.executor("q", "parent")
    async def parent(task: Task, actions: Actions) -> None:
        returned.extend(actions.add_tasks([make_task("child", payload=n) for n in range(3)]))
        pending_during.append(app.transport.pending())
        actions.success(task)

    @app.executor("q", "child")
    async def child(task: Task, actions: Actions) -> None:
        children_seen.append((task.id, task.payload))
        actions.success(task)

    await app.add_tasks([make_task("parent")])
    await app.run_until_idle()
    assert len(returned) == 3 and all(uuid.UUID(i).version == 7 for i in returned)
    assert pending_during == [0]  # nothing was dispatched at the call
    assert children_seen == [(returned[0], 0), (returned[1], 1), (returned[2], 2)]


async def test_children_of_a_retried_attempt_are_not_dispatched(
    app: TaskQueue, clock: ManualClock
) -> None:
    added: list[list[str]] = []
    children_run: list[str] = []

    @app.executor("q", "parent", retries=2, retry_after=1)
    async def parent(task: Task, actions: Actions) -> None:
        added.append(actions.add_tasks([make_task("child")]))
        if task.retry_count < 2:
            actions.fail(task, "not yet")
        else:
            actions.success(task)

    @app.executor("q", "child")
    async def child(task: Task, actions: Actions) -> None:
        children_run.append(task.id)
        actions.success(task)

    await app.add_tasks([make_task("parent")])
    await app.run_until_idle()
    clock.advance(seconds=1)
    await app.run_until_idle()
    clock.advance(seconds=4)
    await app.run_until_idle()
    assert len(added) == 3
    assert children_run == added[2]


async def test_children_of_a_final_failure_are_dispatched(app: TaskQueue) -> None:
    children_run: list[str] = []

    @app.executor("q", "parent")
    async def parent(task: Task, actions: Actions) -> None:
        actions.add_tasks([make_task("cleanup")])
        raise RuntimeError("gave up")

    @app.executor("q", "cleanup")
    async def cleanup(task: Task, actions: Actions) -> None:
        children_run.append(task.type)
        actions.success(task)

    [pid] = await app.add_tasks([make_task("parent")])
    await app.run_until_idle()
    assert (await app.get_task(pid)).status is TaskStatus.FAILED
    assert children_run == ["cleanup"]


async def test_children_inherit_the_parents_log_context_and_their_own_keys_win(
    app: TaskQueue,
) -> None:
    contexts: list[dict[str, str]] = []

    @app.executor("q", "parent")
    async def parent(task: Task, actions: Actions) -> None:
        actions.add_tasks(
            [
                make_task("child"),
                make_task("child", metadata={"log_context": {"step": "two", "extra": "x"}}),
            ]
        )
        actions.success(task)

    @app.executor("q", "child")
    async def child(task: Task, actions: Actions) -> None:
        contexts.append(task.log_context)
        actions.success(task)

    await app.add_tasks(
        [make_task("parent", metadata={"log_context": {"request_id": "r-1", "step": "one"}})]
    )
    await app.run_until_idle()
    assert contexts == [
        {"request_id": "r-1", "step": "one"},
        {"request_id": "r-1", "step": "two", "extra": "x"},
    ]


class Email(BaseModel):
    to: str


async def test_invalid_child_fails_the_parent_attempt_and_adds_no_children(
    app: TaskQueue,
) -> None:
    children_run: list[object] = []

    @app.executor("q", "parent")
    async def parent(task: Task, actions: Actions) -> None:
        actions.add_tasks([make_task("send", payload={"to": "ok@x"})])
        actions.add_tasks([make_task("send", payload={"subject": "no recipient"})])
        actions.success(task)

    @app.executor("q", "send", payload_model=Email)
    async def send(task: Task, actions: Actions) -> None:
        children_run.append(task.payload)
        actions.success(task)

    [pid] = await app.add_tasks([make_task("parent")])
    await app.run_until_idle()
    record = await app.get_task(pid)
    assert record is not None and record.status is TaskStatus.FAILED
    assert "payload.to" in record.execution_stats["last_error"]
    assert "TaskValidationError" in record.execution_stats["last_error_stack"]
    # The parent failed for good, so its valid first child goes out; the invalid one never did.
    assert children_run == [{"to": "ok@x"}]


async def test_batch_executor_children_with_and_without_a_parent(
    app: TaskQueue, clock: ManualClock
) -> None:
    children_run: list[str] = []

    @app.batch_executor("q", "batch", retries=1, retry_after=10)
    async def batch(tasks: list[Task], actions: Actions) -> None:
        for t in tasks:
            actions.add_tasks([make_task("child", payload=f"of-{t.payload}")], parent=t)
        if tasks[0].retry_count == 0:
            actions.add_tasks([make_task("child", payload="batch-level")])
        actions.success(tasks[0])
        if len(tasks) > 1:
            actions.fail(tasks[1], "retry me")

    @app.executor("q", "child")
    async def child(task: Task, actions: Actions) -> None:
        children_run.append(task.payload)
        actions.success(task)

    await app.add_tasks([make_task("batch", payload="a"), make_task("batch", payload="b")])
    await app.run_until_idle()
    # "b" will be retried, so its child waits; "a" succeeded; batch-level children go out.
    assert sorted(children_run) == ["batch-level", "of-a"]
    clock.advance(seconds=10)
    await app.run_until_idle()
    assert sorted(children_run) == ["batch-level", "of-a", "of-b"]


async def test_children_are_counted_and_announced(app: TaskQueue, events: EventRecorder) -> None:
    @app.executor("q", "parent")
    async def parent(task: Task, actions: Actions) -> None:
        actions.add_tasks([make_task("child"), make_task("child")])
        actions.success(task)

    @app.executor("q", "child")
    async def child(task: Task, actions: Actions) -> None:
        actions.success(task)

    await app.add_tasks([make_task("parent")])
    await app.run_until_idle()
    assert app.stats.added == 3 and app.stats.executed == 3
    assert len(events.of("scheduled")) == 3


# -- log -----------------------------------------------------------------------------------


async def test_actions_log_is_a_logger_adapter(app: TaskQueue) -> None:
    seen: list[object] = []

    @app.executor("q", "t")
    async def run(task: Task, actions: Actions) -> None:
        seen.append(actions.log)
        seen.append(actions.log)
        actions.success(task)

    await app.add_tasks([make_task()])
    await app.run_until_idle()
    assert isinstance(seen[0], logging.LoggerAdapter)
    assert seen[0] is seen[1]
    assert seen[0].logger.name.startswith("tq_aws")
