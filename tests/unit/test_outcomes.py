"""The pure plan of a batch's writes (``tq_aws.core.outcomes``): what each outcome means and
which records, schedules, rows, flow reports and children it implies. No port is involved."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tq_aws.core.actions import Decision
from tq_aws.core.executors import ExecutorKind, ExecutorSpec
from tq_aws.core.flows import FLOW_META, FlowRecord, FlowStart, Join, StepResult
from tq_aws.core.outcomes import (
    BatchWrites,
    JoinReport,
    flow_reports,
    plan_writes,
    step_result,
    terminal_row,
)
from tq_aws.core.runner import BatchOutcome, TaskOutcome
from tq_aws.core.task import Entity, Task, TaskStatus

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
LIMIT = 1000
SUCCESS = Decision(kind="success")
USER = Entity(id="u1", type="user")


def spec(**options: Any) -> ExecutorSpec:
    return ExecutorSpec(
        queue_id="q", type="t", fn=lambda task, actions: None, kind=ExecutorKind.SINGLE,
        is_async=False, **options,
    )  # fmt: skip


def task(tid: str = "t1", **fields: Any) -> Task:
    return Task(id=tid, type="t", queue_id="q", created_at=NOW - timedelta(minutes=1), **fields)


def fail(error: str = "boom", **fields: Any) -> Decision:
    return Decision(kind="fail", error=error, **fields)


def outcome(
    t: Task,
    decision: Decision | None = SUCCESS,
    executor: ExecutorSpec | None = None,
    **fields: Any,
) -> TaskOutcome:
    return TaskOutcome(t, executor if executor is not None else spec(), decision, **fields)


def plan(
    *outcomes: TaskOutcome,
    expired: Sequence[Task] = (),
    pending: Sequence[Task] = (),
    events: bool = False,
    batch_children: Sequence[Task] = (),
) -> BatchWrites:
    return plan_writes(
        BatchOutcome(list(outcomes), list(batch_children)),
        expired,
        pending,
        now=NOW,
        result_limit=LIMIT,
        events=events,
    )


def step(index: int, tid: str = "s1", **fields: Any) -> Task:
    return task(tid, metadata={FLOW_META: {"flow_id": "f1", "step_index": index}}, **fields)


def flow_start(tid: str) -> FlowStart:
    record = FlowRecord(
        flow_id=f"flow-of-{tid}", total=1, join=Join(queue_id="q", type="join"),
        failure_policy="continue", tolerated_failures=None, tolerated_failure_percentage=None,
        started_at=NOW,
    )  # fmt: skip
    return FlowStart(record, [task(f"{tid}-step")])


# -- successes --------------------------------------------------------------------------------


def test_a_success_of_a_plain_task_writes_nothing() -> None:
    writes = plan(outcome(task("a")), outcome(task("b")))
    assert writes.nothing
    assert writes.plain_successes == 2 and writes.succeeded == 2 and writes.failed == 0
    assert writes.successes == [] and writes.stored() == [] and writes.projection_rows() == []


def test_a_stored_success_is_stored_executed_with_its_result() -> None:
    t = task(stored=True)
    writes = plan(outcome(t, Decision(kind="success", result={"n": 1}, result_size=7)))
    assert not writes.nothing
    [done] = writes.stored()
    assert done.id == "t1" and done.status is TaskStatus.EXECUTED
    assert done.execution_result == {"n": 1} and done.updated_at == NOW
    assert t.status is TaskStatus.SCHEDULED  # the delivered task is not changed
    assert writes.inline == {"t1": {"n": 1}}


def test_an_entity_success_is_projected_executed_and_not_stored() -> None:
    writes = plan(outcome(task(entity=USER), Decision(kind="success", result=5, result_size=1)))
    assert writes.stored() == []
    [(row_task, status, error, result)] = writes.projection_rows()
    assert (row_task.id, status, error, result) == ("t1", "executed", None, 5)


def test_with_listeners_every_success_gets_its_copy_but_nothing_is_stored() -> None:
    writes = plan(outcome(task()), events=True)
    assert not writes.nothing and writes.plain_successes == 0
    assert [t.status for t in writes.successes] == [TaskStatus.EXECUTED]
    assert writes.stored() == [] and writes.projection_rows() == []


def test_a_result_over_the_limit_is_offloaded_and_its_marker_written_everywhere() -> None:
    big = Decision(kind="success", result="x" * 2000, result_size=LIMIT + 1)
    small = Decision(kind="success", result="y", result_size=LIMIT)
    writes = plan(
        outcome(step(0, "big", stored=True, entity=USER), big),
        outcome(task("small", stored=True), small),
    )
    [item] = writes.offloads
    assert (item.index, item.key, item.size) == (0, "results/big", LIMIT + 1)
    assert item.value == "x" * 2000
    writes.set_result(item.index, {"marker": "ref"})
    assert [t.execution_result for t in writes.stored()] == [{"marker": "ref"}, "y"]
    assert writes.projection_rows()[0][3] == {"marker": "ref"}
    assert flow_reports(writes.finished()).steps[0][1].result == {"marker": "ref"}
    assert writes.inline["big"] == "x" * 2000  # listeners see the value itself


# -- retries and final failures ---------------------------------------------------------------


@pytest.mark.parametrize(("retries_made", "delay"), [(0, 3.0), (1, 12.0), (2, 27.0)])
def test_a_retry_with_store_on_failure_is_stored_and_scheduled_at_the_backoff(
    retries_made: int, delay: float
) -> None:
    t = task(execution_stats={"retry_count": retries_made})
    executor = spec(retries=5, retry_after=3.0, store_on_failure=True)
    writes = plan(outcome(t, fail("boom"), executor))
    [retry] = writes.retries
    assert retry.at == NOW + timedelta(seconds=delay)  # retry_after * (n + 1) ** 2
    assert retry.task.stored and retry.task.status is TaskStatus.SCHEDULED
    assert retry.task.retry_count == retries_made + 1
    assert retry.task.execute_at == retry.at
    assert retry.task.execution_stats["last_error"] == "boom"
    assert writes.stored() == [retry.task]
    assert [f.id for f in writes.retried] == ["t1"] and writes.failed == 1
    assert writes.finals == [] and writes.projection_rows() == []


def test_a_retry_of_an_unstored_task_travels_by_the_scheduler_only() -> None:
    writes = plan(outcome(task(), fail(), spec(retries=1)))
    [retry] = writes.retries
    assert not retry.task.stored
    assert writes.stored() == []


def test_a_retry_of_a_stored_task_is_stored() -> None:
    writes = plan(outcome(task(stored=True), fail(), spec(retries=1)))
    assert [t.stored for t in writes.stored()] == [True]
    assert writes.stored()[0].status is TaskStatus.SCHEDULED


def test_the_tasks_own_retries_and_retry_after_win_over_the_executors() -> None:
    writes = plan(outcome(task(retries=1, retry_after=10.0), fail(), spec(retries=0)))
    [retry] = writes.retries
    assert retry.at == NOW + timedelta(seconds=10)


def test_a_final_failure_is_stored_and_projected_failed() -> None:
    t = task(entity=USER, execution_stats={"retry_count": 2})
    writes = plan(outcome(t, fail("bad input", stack="Traceback ..."), spec(retries=2)))
    assert writes.retries == []
    [final] = writes.finals
    assert final.status is TaskStatus.FAILED and final.updated_at == NOW
    assert final.execution_stats["last_error"] == "bad input"
    assert final.execution_stats["last_error_stack"] == "Traceback ..."
    assert final.execution_stats["failed_at"] == NOW.isoformat()
    assert writes.stored() == [final]
    [(_, status, error, _)] = writes.projection_rows()
    assert (status, error) == ("failed", "bad input")
    assert writes.failed == 1 and writes.succeeded == 0


def test_a_new_error_drops_the_stack_of_the_previous_attempt() -> None:
    t = task(execution_stats={"last_error": "old", "last_error_stack": "old stack"})
    [final] = plan(outcome(t, fail("new"))).finals
    assert final.execution_stats["last_error"] == "new"
    assert "last_error_stack" not in final.execution_stats


def test_an_executor_cannot_move_the_retry_counter_with_its_meta() -> None:
    decision = fail("x", meta={"retry_count": 99, "hint": "h"})
    [retry] = plan(outcome(task(), decision, spec(retries=3))).retries
    assert retry.task.retry_count == 1
    assert retry.task.execution_stats["hint"] == "h"


def test_without_an_executor_a_failure_is_final() -> None:
    writes = plan(TaskOutcome(task(), None, fail()))
    assert len(writes.finals) == 1 and writes.retries == []


# -- children and flows ------------------------------------------------------------------------


def test_children_of_a_retried_attempt_are_not_dispatched() -> None:
    child = task("child")
    writes = plan(
        outcome(task(), fail(), spec(retries=1), children=[child], flows=[flow_start("t1")])
    )
    assert len(writes.retries) == 1
    assert writes.children == [] and writes.starts == []


def test_children_and_flows_of_finished_attempts_are_dispatched() -> None:
    kept = [task("c1"), task("c2"), task("c3")]
    starts = [flow_start("ok"), flow_start("final")]
    writes = plan(
        outcome(task("ok"), children=[kept[0]], flows=[starts[0]]),
        outcome(task("final"), fail(), children=[kept[1]], flows=[starts[1]]),
        batch_children=[kept[2]],
    )
    assert [c.id for c in writes.children] == ["c3", "c1", "c2"]
    assert writes.starts == starts


@pytest.mark.parametrize("made", ["children", "flows"])
def test_a_plain_batch_that_made_children_or_flows_has_writes(made: str) -> None:
    fields: dict[str, Any] = (
        {"children": [task("c")]} if made == "children" else {"flows": [flow_start("p")]}
    )
    writes = plan(outcome(task("p"), **fields))
    assert not writes.nothing and writes.plain_successes == 1
    assert len(writes.children) + len(writes.starts) == 1


def test_flow_steps_report_their_final_outcomes() -> None:
    writes = plan(
        outcome(step(0, "s0"), Decision(kind="success", result="r0", result_size=4)),
        outcome(step(1, "s1"), fail("step broke")),
        outcome(step(2, "s2"), fail("again"), spec(retries=1)),  # retried: no report yet
    )
    reports = flow_reports(writes.finished())
    assert [(t.id, r) for t, r in reports.steps] == [
        ("s0", StepResult(0, "success", "r0")),
        ("s1", StepResult(1, "fail", error="step broke")),
    ]
    assert reports.joins == []


def test_ignored_and_expired_steps_report_a_failure() -> None:
    expired = step(1, "s1", expires_at=NOW)
    writes = plan(
        outcome(step(0, "s0"), None, ignored_reason="unknown_executor"), expired=[expired]
    )
    results = [r for _, r in flow_reports(writes.finished()).steps]
    assert results == [
        StepResult(0, "fail", error="unknown_executor"),
        StepResult(1, "fail", error="expired"),
    ]


def test_a_finished_join_reports_onto_its_flow() -> None:
    meta = {FLOW_META: {"flow_id": "f1", "is_join": True}}
    writes = plan(
        outcome(task("j1", metadata=meta)),
        outcome(task("j2", metadata=meta), fail("join broke")),
    )
    reports = flow_reports(writes.finished())
    assert [(r.task.id, r.status, r.error) for r in reports.joins] == [
        ("j1", "executed", None),
        ("j2", "failed", "join broke"),
    ]
    assert isinstance(reports.joins[0], JoinReport) and reports.steps == []


def test_tasks_outside_flows_report_nothing() -> None:
    writes = plan(outcome(task(stored=True)))
    reports = flow_reports(writes.finished())
    assert reports.joins == [] and reports.steps == []
    assert step_result(writes.successes[0]) is None


# -- ignored, expired, handed off, processing --------------------------------------------------


def test_an_ignored_task_is_stored_and_projected_with_its_reason() -> None:
    writes = plan(outcome(task(entity=USER), None, ignored_reason="unknown_executor"))
    [ignored] = writes.ignored
    assert ignored.status is TaskStatus.IGNORED
    assert ignored.execution_stats["ignored_reason"] == "unknown_executor"
    assert ignored.execution_stats["ignored_at"] == NOW.isoformat()
    assert writes.stored() == [ignored]
    [(_, status, error, _)] = writes.projection_rows()
    assert (status, error) == ("ignored", "unknown_executor")
    assert writes.succeeded == 0 and writes.failed == 0


def test_an_expired_task_is_stored_and_projected_expired() -> None:
    t = task(entity=USER, expires_at=NOW - timedelta(seconds=1))
    writes = plan(expired=[t])
    assert not writes.nothing
    [done] = writes.expired
    assert done.status is TaskStatus.EXPIRED and done.updated_at == NOW
    assert writes.stored() == [done]
    [(_, status, error, _)] = writes.projection_rows()
    assert (status, error) == ("expired", "expired")


def test_a_handed_off_task_is_stored_processing_and_not_counted() -> None:
    writes = plan(outcome(task(), None, handed_off=True))
    [copy] = writes.handoffs
    assert copy.stored and copy.status is TaskStatus.PROCESSING
    assert copy.processing_started_at == NOW
    assert writes.stored() == [copy]
    assert writes.succeeded == 0 and writes.failed == 0 and writes.finished() == []


def test_within_the_grace_only_retrying_first_attempts_show_processing() -> None:
    retrying, done = task("r", entity=USER), task("d", entity=USER)
    writes = plan(
        outcome(retrying, fail(), spec(retries=1)),
        outcome(done),
        pending=[retrying, done],
    )
    rows = [(t.id, status) for t, status, _, _ in writes.projection_rows()]
    assert rows == [("r", "processing"), ("d", "executed")]


def test_the_stored_records_of_a_batch_go_in_one_list() -> None:
    writes = plan(
        outcome(task("ok", stored=True)),
        outcome(task("h"), None, handed_off=True),
        outcome(task("r", stored=True), fail(), spec(retries=1)),
        outcome(task("f"), fail()),
        outcome(task("i"), None, ignored_reason="unknown_executor"),
        expired=[task("e")],
    )
    assert [t.id for t in writes.stored()] == ["ok", "e", "h", "r", "f", "i"]


@pytest.mark.parametrize(
    ("status", "stats", "row"),
    [
        (TaskStatus.EXECUTED, {}, ("executed", None, "result")),
        (TaskStatus.IGNORED, {"ignored_reason": "why"}, ("ignored", "why", None)),
        (TaskStatus.EXPIRED, {}, ("expired", "expired", None)),
        (TaskStatus.CANCELLED, {}, ("cancelled", None, None)),
        (TaskStatus.FAILED, {"last_error": "e"}, ("failed", "e", None)),
        (TaskStatus.FAILED, {}, ("failed", "task failed", None)),
    ],
)
def test_terminal_rows(status: TaskStatus, stats: dict[str, Any], row: tuple[Any, ...]) -> None:
    t = task(status=status, execution_stats=stats, execution_result="result")
    assert terminal_row(t)[1:] == row
