"""Flows by example: fan out steps, fan in to exactly one join.

Policies, timeouts, nesting, every executor kind as the starter, projections, large results,
and the reference's flow bugs (tq-behaviour.md §10 items 17 to 23) as fixed behaviour.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest

from tests.support.events import EventRecorder
from tq_aws import Actions, Entity, Join, Task, TaskQueue, TaskStatus
from tq_aws.core.flows import TIMEOUT_TYPE, join_task_id, timeout_task_id
from tq_aws.engine.blobs import is_blob_ref
from tq_aws.errors import TaskValidationError
from tq_aws.testing import InjectedCrash, ManualClock, run_until_idle_through_crashes

SHOP = Entity(id="shop-1", type="shop")
JOIN = Join(queue_id="q", type="done")


@dataclass
class FlowEvents(EventRecorder):
    """Task events plus flow starts and closes."""

    started: list[tuple[str, int]] = field(default_factory=list)
    closed: list[tuple[str, str, int, int]] = field(default_factory=list)

    def on_flow_started(self, flow_id: str, total: int) -> None:
        self.started.append((flow_id, total))

    def on_flow_closed(self, flow_id: str, state: str, succeeded: int, failed: int) -> None:
        self.closed.append((flow_id, state, succeeded, failed))


@dataclass
class Joins:
    """What the join executor saw."""

    tasks: list[Task] = field(default_factory=list)

    def ids(self) -> set[str]:
        return {t.id or "" for t in self.tasks}

    def only(self) -> dict[str, Any]:
        """The flow results of the one join delivered (asserts there was exactly one)."""
        assert len(self.ids()) == 1, self.ids()
        results: dict[str, Any] = self.tasks[0].payload["flow_results"]
        return results


def register_join(app: TaskQueue, join: Join = JOIN, *, result: Any = None) -> Joins:
    joins = Joins()

    @app.executor(join.queue_id, join.type)
    async def done(task: Task, actions: Actions) -> None:
        joins.tasks.append(task)
        actions.success(task, result)

    return joins


@dataclass
class StepLog:
    """What the ``step`` executor saw: ``(i, attempt)`` per run, and the last task of each i."""

    runs: list[tuple[int, int]] = field(default_factory=list)
    tasks: dict[int, Task] = field(default_factory=dict)


def register_steps(app: TaskQueue, queue_id: str = "q") -> StepLog:
    """``step`` tasks: payload ``{"i", "fail_until"?, "fail"?}``; a step fails its attempts
    before ``fail_until`` (and every attempt with ``fail``), else returns ``{"i": i}``."""
    log = StepLog()

    @app.executor(queue_id, "step", retry_after=1)
    async def step(task: Task, actions: Actions) -> None:
        i = task.payload["i"]
        log.runs.append((i, task.retry_count))
        log.tasks[i] = task
        if task.payload.get("fail") or task.retry_count < task.payload.get("fail_until", 0):
            actions.fail(task, f"step {i} failed")
        else:
            actions.success(task, {"i": i})

    return log


def steps(*payloads: dict[str, Any], **fields: Any) -> list[Task]:
    """``step`` tasks on ``q``; a payload's ``retries`` key becomes the task's ``retries``."""
    out = []
    for payload in payloads:
        own = dict(fields)
        if "retries" in payload:
            own["retries"] = payload["retries"]
        out.append(Task(type="step", queue_id="q", payload=payload, **own))
    return out


def ok(i: int) -> dict[str, Any]:
    return {"step_index": i, "status": "success", "result": {"i": i}}


def failed(i: int, error: str | None = None) -> dict[str, Any]:
    return {"step_index": i, "status": "fail", "error": error or f"step {i} failed"}


@dataclass
class Starter:
    """A ``start`` executor that starts one flow with the given options."""

    flow_ids: list[str] = field(default_factory=list)


def register_starter(
    app: TaskQueue, make_steps: Callable[[], list[Task]], **options: Any
) -> Starter:
    starter = Starter()
    options.setdefault("join", JOIN)

    @app.executor("q", "start")
    async def start(task: Task, actions: Actions) -> None:
        starter.flow_ids.append(actions.start_flow(steps=make_steps(), **options))
        actions.success(task)

    return starter


def crash_once(
    port: object, name: str, when: Callable[..., bool] = lambda *a, **k: True
) -> list[int]:
    """Make ``port.name`` raise ``InjectedCrash`` (before writing) the first time ``when``
    holds for its arguments; returns a list that gets one entry per crash."""
    original: Callable[..., Awaitable[Any]] = getattr(port, name)
    crashes: list[int] = []

    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not crashes and when(*args, **kwargs):
            crashes.append(1)
            raise InjectedCrash(f"crash before {name}")
        return await original(*args, **kwargs)

    setattr(port, name, wrapper)
    return crashes


def has_type(type_: str, status: TaskStatus | None = None) -> Callable[..., bool]:
    """A ``crash_once`` condition: the call's task list holds a task of ``type_``."""

    def when(tasks: Sequence[Task], *args: Any, **kwargs: Any) -> bool:
        return any(t.type == type_ and (status is None or t.status is status) for t in tasks)

    return when


async def only_flow(app: TaskQueue, starter: Starter) -> str:
    assert len(set(starter.flow_ids)) == 1, starter.flow_ids
    return starter.flow_ids[0]


# -- the basics ----------------------------------------------------------------------------


async def test_a_flow_joins_once_with_every_result_in_step_order(
    app: TaskQueue, clock: ManualClock
) -> None:
    log = register_steps(app)
    joins = register_join(app, result={"seen": True})
    starter = register_starter(
        app,
        lambda: steps({"i": 0}, {"i": 1, "fail": True}, {"i": 2, "fail_until": 2, "retries": 2}),
    )
    await app.add_tasks([Task(type="start", queue_id="q")])
    await app.run_until_idle()
    assert joins.tasks == []  # step 2 retries at +1 and +5
    clock.advance(seconds=1)
    await app.run_until_idle()
    assert joins.tasks == []
    clock.advance(seconds=4)
    await app.run_until_idle()

    flow_id = await only_flow(app, starter)
    results = joins.only()
    assert results == {"flow_id": flow_id, "steps": [ok(0), failed(1), ok(2)]}
    assert sorted(log.runs) == [(0, 0), (1, 0), (2, 0), (2, 1), (2, 2)]
    join = await app.get_task(join_task_id(flow_id))
    assert join is not None and join.status is TaskStatus.EXECUTED
    assert join.execution_result == {"seen": True}
    assert (app.stats.flows_started, app.stats.flows_closed) == (1, 1)


async def test_step_retries_do_not_reach_the_barrier(app: TaskQueue, clock: ManualClock) -> None:
    register_steps(app)
    joins = register_join(app)
    starter = register_starter(app, lambda: steps({"i": 0, "fail_until": 1}, retries=1))
    await app.add_tasks([Task(type="start", queue_id="q")])
    await app.run_until_idle()
    flow_id = await only_flow(app, starter)
    status = await app.flow_status(flow_id)
    assert status is not None
    assert (status.state, status.succeeded, status.failed, status.pending) == ("open", 0, 0, 1)
    clock.advance(seconds=1)
    await app.run_until_idle()
    assert joins.only()["steps"] == [ok(0)]


async def test_flow_status_follows_the_flow(app: TaskQueue, clock: ManualClock) -> None:
    register_steps(app)
    register_join(app)
    starter = register_starter(
        app,
        lambda: steps({"i": 0}, {"i": 1, "fail_until": 1, "retries": 1}, {"i": 2, "fail": True}),
        timeout=30,
        entity=SHOP,
    )
    started = clock.now()
    [starter_id] = await app.add_tasks([Task(type="start", queue_id="q")])
    await app.run_until_idle()
    flow_id = await only_flow(app, starter)

    status = await app.flow_status(flow_id)
    assert status is not None
    assert status.flow_id == flow_id
    assert (status.state, status.total, status.succeeded, status.failed, status.pending) == (
        "open",
        3,
        1,
        1,
        1,
    )
    assert status.started_at == started
    assert status.finished_at is None
    assert status.deadline == started + timedelta(seconds=30)
    assert status.join_task_id == join_task_id(flow_id)
    assert status.join == JOIN
    assert status.failure_policy == "continue"
    assert status.entity == SHOP
    assert status.parent_task_id == starter_id

    clock.advance(seconds=1)
    await app.run_until_idle()
    status = await app.flow_status(flow_id)
    assert status is not None
    assert (status.state, status.succeeded, status.failed, status.pending) == ("joined", 2, 1, 0)
    assert status.finished_at == started + timedelta(seconds=1)
    assert await app.flow_status("no-such-flow") is None


async def test_flow_events_and_stats(app: TaskQueue) -> None:
    events = FlowEvents()
    app.add_listener(events)
    register_steps(app)
    register_join(app)
    starter = register_starter(app, lambda: steps({"i": 0}, {"i": 1, "fail": True}))
    await app.add_tasks([Task(type="start", queue_id="q")])
    await app.run_until_idle()
    flow_id = await only_flow(app, starter)
    assert events.started == [(flow_id, 2)]
    assert events.closed == [(flow_id, "joined", 1, 1)]
    assert (app.stats.flows_started, app.stats.flows_closed) == (1, 1)


async def test_framework_data_lives_in_metadata_never_in_the_payload(app: TaskQueue) -> None:
    seen: list[Task] = []

    @app.executor("q", "step")
    async def step(task: Task, actions: Actions) -> None:
        seen.append(task)
        actions.success(task)

    joins = register_join(app)
    starter = register_starter(
        app,
        lambda: [
            Task(type="step", queue_id="q", payload={"sku": "tea"}),
            Task(type="step", queue_id="q", payload={"sku": "pen"}),
        ],
    )
    await app.add_tasks([Task(type="start", queue_id="q")])
    await app.run_until_idle()
    flow_id = await only_flow(app, starter)
    assert sorted(t.payload["sku"] for t in seen) == ["pen", "tea"]
    for task in seen:
        assert set(task.payload) == {"sku"}
        meta = task.metadata["flow_meta"]
        assert (meta["flow_id"], meta["total_steps"]) == (flow_id, 2)
    assert sorted(t.metadata["flow_meta"]["step_index"] for t in seen) == [0, 1]
    [join] = joins.tasks
    assert set(join.payload) == {"flow_results"}
    assert join.metadata["flow_meta"] == {"flow_id": flow_id, "is_join": True}


async def test_first_terminal_outcome_of_a_step_wins(app: TaskQueue, clock: ManualClock) -> None:
    """A step delivered twice that ends differently the second time: the join has the first."""
    calls: list[int] = []

    @app.executor("q", "flaky")
    async def flaky(task: Task, actions: Actions) -> None:
        calls.append(len(calls))
        if len(calls) == 1:
            await app.transport.publish([task])  # the same record, delivered again
            actions.success(task, {"run": 1})
        else:
            actions.fail(task, "second run")

    joins = register_join(app)
    register_steps(app)
    later = clock.now() + timedelta(seconds=10)
    register_starter(
        app,
        lambda: [
            Task(type="flaky", queue_id="q", payload={}),
            Task(type="step", queue_id="q", payload={"i": 1}, execute_at=later),
        ],
    )
    await app.add_tasks([Task(type="start", queue_id="q")])
    await app.run_until_idle()
    assert calls == [0, 1]
    clock.set(later)
    await app.run_until_idle()
    assert joins.only()["steps"] == [
        {"step_index": 0, "status": "success", "result": {"run": 1}},
        ok(1),
    ]
    assert app.stats.flow_step_duplicates == 1


async def test_an_empty_flow_is_refused(app: TaskQueue) -> None:
    errors: list[BaseException] = []

    @app.executor("q", "start")
    async def start(task: Task, actions: Actions) -> None:
        try:
            actions.start_flow(steps=[], join=JOIN)
        except TaskValidationError as exc:
            errors.append(exc)
        actions.success(task)

    await app.add_tasks([Task(type="start", queue_id="q")])
    await app.run_until_idle()
    [error] = errors
    assert isinstance(error, TaskValidationError) and error.field == "steps"
    assert app.stats.flows_started == 0


@pytest.mark.parametrize(
    ("options", "field_at_fault"),
    [
        ({"failure_policy": "retry"}, "failure_policy"),
        ({"tolerated_failures": -1}, "tolerated_failures"),
        ({"tolerated_failure_percentage": 101}, "tolerated_failure_percentage"),
        ({"tolerated_failures": 1, "tolerated_failure_percentage": 10}, "tolerated_failures"),
        ({"timeout": 0}, "timeout"),
        ({"join": ("q", "done")}, "join"),
    ],
)
async def test_bad_flow_options_are_refused(
    app: TaskQueue, options: dict[str, Any], field_at_fault: str
) -> None:
    errors: list[TaskValidationError] = []

    @app.executor("q", "start")
    async def start(task: Task, actions: Actions) -> None:
        try:
            actions.start_flow(steps=steps({"i": 0}), **{"join": JOIN, **options})
        except TaskValidationError as exc:
            errors.append(exc)
        actions.success(task)

    await app.add_tasks([Task(type="start", queue_id="q")])
    await app.run_until_idle()
    assert [e.field for e in errors] == [field_at_fault]
    assert app.stats.flows_started == 0


# -- failure policies ----------------------------------------------------------------------


async def test_continue_gives_the_join_every_result_failures_included(app: TaskQueue) -> None:
    register_steps(app)
    joins = register_join(app)
    register_starter(app, lambda: steps({"i": 0, "fail": True}, {"i": 1}, {"i": 2, "fail": True}))
    await app.add_tasks([Task(type="start", queue_id="q")])
    await app.run_until_idle()
    results = joins.only()
    assert results["steps"] == [failed(0), ok(1), failed(2)]
    assert "aborted" not in results


async def test_abort_joins_at_the_first_failure_with_the_failing_step__ref_10_17(
    app: TaskQueue, clock: ManualClock
) -> None:
    """Reference: the abort was marked before the failing step was recorded, so the aborted
    join's results lacked the very failure that caused it (and same-batch successes)."""
    register_steps(app)
    joins = register_join(app)
    starter = register_starter(
        app,
        lambda: steps({"i": 0}, {"i": 1, "fail": True}, {"i": 2, "fail_until": 1, "retries": 1}),
        failure_policy="abort",
        entity=SHOP,
    )
    await app.add_tasks([Task(type="start", queue_id="q")])
    await app.run_until_idle()  # step 2 is still waiting for its retry
    flow_id = await only_flow(app, starter)
    results = joins.only()
    assert results == {"flow_id": flow_id, "steps": [ok(0), failed(1)], "aborted": True}
    status = await app.flow_status(flow_id)
    assert status is not None
    assert (status.state, status.succeeded, status.failed, status.pending) == ("aborted", 1, 1, 1)
    assert status.finished_at == clock.now()
    [row] = [r for r in await app.entity_status(SHOP) if r.task_id == flow_id]
    assert (row.status, row.error) == ("failed", "flow_aborted")


async def test_no_second_join_after_an_abort__ref_10_18(app: TaskQueue, clock: ManualClock) -> None:
    """Reference: a late duplicate of a failed step after the flow ended marked it aborted
    again and dispatched a second join."""
    log = register_steps(app)
    joins = register_join(app)
    starter = register_starter(
        app,
        lambda: steps(
            {"i": 0, "fail": True},
            {"i": 1, "fail_until": 1, "retries": 1},
            {"i": 2, "fail": True, "retries": 1},
        ),
        failure_policy="abort",
    )
    await app.add_tasks([Task(type="start", queue_id="q")])
    await app.run_until_idle()
    flow_id = await only_flow(app, starter)
    first = joins.only()
    assert first["aborted"] is True and first["steps"] == [failed(0)]

    clock.advance(seconds=1)  # step 1 succeeds, step 2 fails for good: both too late
    await app.run_until_idle()
    # and the failed step's record is delivered once more after all that
    await app.transport.publish([log.tasks[0]])
    await app.run_until_idle()
    assert log.runs.count((0, 0)) == 2

    assert joins.ids() == {join_task_id(flow_id)} and len(joins.tasks) == 1
    status = await app.flow_status(flow_id)
    assert status is not None
    assert (status.state, status.succeeded, status.failed) == ("aborted", 0, 1)


async def test_a_late_failure_after_a_join_changes_nothing__ref_10_18(
    app: TaskQueue, clock: ManualClock
) -> None:
    """Reference: under ``abort``, a failing duplicate of a step after the flow completed
    turned the complete barrier into an aborted one and dispatched a second join."""
    runs: list[str] = []
    tasks: list[Task] = []

    @app.executor("q", "flaky")
    async def flaky(task: Task, actions: Actions) -> None:
        runs.append(task.id or "")
        tasks.append(task)
        if len(runs) == 1:
            actions.success(task, {"run": 1})
        else:
            actions.fail(task, "second run")

    joins = register_join(app)
    starter = register_starter(
        app, lambda: [Task(type="flaky", queue_id="q", payload={})], failure_policy="abort"
    )
    await app.add_tasks([Task(type="start", queue_id="q")])
    await app.run_until_idle()
    flow_id = await only_flow(app, starter)
    assert joins.only()["steps"] == [{"step_index": 0, "status": "success", "result": {"run": 1}}]

    # the step's record is delivered again after the join
    await app.transport.publish([tasks[0]])
    await app.run_until_idle()
    assert len(runs) == 2
    assert len(joins.tasks) == 1
    status = await app.flow_status(flow_id)
    assert status is not None and status.state == "joined"


@pytest.mark.parametrize(
    ("tolerance", "fails", "state", "joined_steps"),
    [
        ({"tolerated_failures": 1}, [1], "joined", 4),
        ({"tolerated_failures": 1}, [0, 2], "aborted", 3),
        ({"tolerated_failures": 0}, [3], "aborted", 4),
        ({"tolerated_failure_percentage": 25}, [1], "joined", 4),
        ({"tolerated_failure_percentage": 25}, [1, 2], "aborted", 3),
        ({"tolerated_failure_percentage": 50}, [0, 1], "joined", 4),
    ],
)
async def test_tolerance_aborts_once_more_than_it_failed(
    app: TaskQueue,
    tolerance: dict[str, Any],
    fails: list[int],
    state: str,
    joined_steps: int,
) -> None:
    register_steps(app)
    joins = register_join(app)
    starter = register_starter(
        app,
        lambda: steps(*({"i": i, "fail": i in fails} for i in range(4))),
        **tolerance,
    )
    app.batch_size = 1  # steps end one by one, in step order
    await app.add_tasks([Task(type="start", queue_id="q")])
    await app.run_until_idle()
    results = joins.only()
    assert len(results["steps"]) == joined_steps
    assert results.get("aborted", False) is (state == "aborted")
    status = await app.flow_status(await only_flow(app, starter))
    assert status is not None and status.state == state


async def test_tolerance_overrides_the_abort_policy(app: TaskQueue) -> None:
    register_steps(app)
    joins = register_join(app)
    register_starter(
        app,
        lambda: steps({"i": 0, "fail": True}, {"i": 1}),
        failure_policy="abort",
        tolerated_failures=1,
    )
    await app.add_tasks([Task(type="start", queue_id="q")])
    await app.run_until_idle()
    results = joins.only()
    assert results["steps"] == [failed(0), ok(1)] and "aborted" not in results


async def test_a_step_without_an_executor_counts_as_a_failure(app: TaskQueue) -> None:
    register_steps(app)
    joins = register_join(app)
    register_starter(
        app,
        lambda: [
            Task(type="step", queue_id="q", payload={"i": 0}),
            Task(type="nobody", queue_id="q", payload={}),
        ],
    )
    await app.add_tasks([Task(type="start", queue_id="q")])
    await app.run_until_idle()
    assert joins.only()["steps"] == [ok(0), failed(1, "unknown_executor")]


async def test_a_step_without_an_executor_aborts_an_abort_flow(app: TaskQueue) -> None:
    joins = register_join(app)
    register_starter(
        app, lambda: [Task(type="nobody", queue_id="q", payload={})], failure_policy="abort"
    )
    await app.add_tasks([Task(type="start", queue_id="q")])
    await app.run_until_idle()
    assert joins.only()["steps"] == [failed(0, "unknown_executor")]
    assert joins.only()["aborted"] is True


# -- timeouts ------------------------------------------------------------------------------


async def test_timeout_joins_with_partial_results_without_any_user_executor__ref_10_20(
    app: TaskQueue, clock: ManualClock
) -> None:
    """Reference: the deadline needed a user-registered ``_flow.timeout`` executor, and short
    timeouts fired at once on transports that ignore ``execute_at``."""
    log = register_steps(app)
    joins = register_join(app)
    starter = register_starter(
        app,
        lambda: steps({"i": 0}, {"i": 1, "fail_until": 2}, retries=2),
        timeout=3,
        entity=SHOP,
    )
    started = clock.now()
    await app.add_tasks([Task(type="start", queue_id="q")])
    await app.run_until_idle()
    flow_id = await only_flow(app, starter)
    assert app.registry.get("q", TIMEOUT_TYPE) is None
    clock.advance(seconds=1)  # step 1's first retry fails again; the next one is at +5
    await app.run_until_idle()
    assert joins.tasks == []
    clock.advance(seconds=1.999)
    await app.run_until_idle()
    assert joins.tasks == []

    clock.set(started + timedelta(seconds=3))
    await app.run_until_idle()
    flow_results = joins.only()
    assert flow_results == {"flow_id": flow_id, "steps": [ok(0)], "timed_out": True}
    status = await app.flow_status(flow_id)
    assert status is not None
    assert (status.state, status.succeeded, status.failed, status.pending) == (
        "timed_out",
        1,
        0,
        1,
    )
    assert status.finished_at == started + timedelta(seconds=3)
    assert app.stats.ignored == 0
    [row] = [r for r in await app.entity_status(SHOP) if r.task_id == flow_id]
    assert (row.status, row.error) == ("failed", "flow_timeout")

    clock.advance(seconds=2)  # step 1 succeeds after the deadline: no second join
    await app.run_until_idle()
    assert (1, 2) in log.runs
    assert len(joins.tasks) == 1
    status = await app.flow_status(flow_id)
    assert status is not None and status.state == "timed_out"


async def test_the_deadline_is_cancelled_when_the_flow_ends(
    app: TaskQueue, clock: ManualClock
) -> None:
    register_steps(app)
    joins = register_join(app)
    starter = register_starter(app, lambda: steps({"i": 0, "fail_until": 1}, retries=1), timeout=60)
    await app.add_tasks([Task(type="start", queue_id="q")])
    await app.run_until_idle()
    flow_id = await only_flow(app, starter)
    sentinel = f"{timeout_task_id(flow_id)}.a0"
    assert sentinel in app.scheduler.pending_names()  # type: ignore[attr-defined]
    clock.advance(seconds=1)
    await app.run_until_idle()
    assert joins.only()["steps"] == [ok(0)]
    assert sentinel not in app.scheduler.pending_names()  # type: ignore[attr-defined]
    assert app.next_due() is None


# -- who starts flows ----------------------------------------------------------------------


async def test_a_join_can_start_a_nested_flow(app: TaskQueue) -> None:
    register_steps(app)
    inner = Join(queue_id="q", type="inner.done")
    inner_joins = register_join(app, inner)
    outer_flows: list[str] = []
    inner_flows: list[str] = []

    @app.executor("q", "outer.done")
    async def outer_done(task: Task, actions: Actions) -> None:
        outer_flows.append(task.payload["flow_results"]["flow_id"])
        n = len(task.payload["flow_results"]["steps"])
        inner_flows.append(
            actions.start_flow(steps=steps(*({"i": 10 + i} for i in range(n))), join=inner)
        )
        actions.success(task)

    register_starter(
        app,
        lambda: steps({"i": 0}, {"i": 1}),
        join=Join(queue_id="q", type="outer.done"),
    )
    await app.add_tasks(
        [Task(type="start", queue_id="q", metadata={"log_context": {"request_id": "r-1"}})]
    )
    await app.run_until_idle()

    [outer_id], [inner_id] = outer_flows, inner_flows
    assert inner_id != outer_id
    results = inner_joins.only()
    assert results == {
        "flow_id": inner_id,
        "steps": [
            {"step_index": 0, "status": "success", "result": {"i": 10}},
            {"step_index": 1, "status": "success", "result": {"i": 11}},
        ],
    }
    status = await app.flow_status(inner_id)
    assert status is not None
    assert status.parent_task_id == join_task_id(outer_id)
    assert inner_joins.tasks[0].log_context == {"request_id": "r-1"}
    assert (app.stats.flows_started, app.stats.flows_closed) == (2, 2)


async def test_two_flows_in_one_batch_do_not_mix(app: TaskQueue) -> None:
    register_steps(app)
    joins = register_join(app)
    flow_ids: list[str] = []

    @app.executor("q", "start")
    async def start(task: Task, actions: Actions) -> None:
        for base, fail in ((0, False), (100, True)):
            flow_ids.append(
                actions.start_flow(
                    steps=steps(*({"i": base + i, "fail": fail and i == 1} for i in range(3))),
                    join=JOIN,
                    failure_policy="abort",
                )
            )
        actions.success(task)

    await app.add_tasks([Task(type="start", queue_id="q")])
    batches = await app.run_until_idle()
    assert len(flow_ids) == 2 and len(set(flow_ids)) == 2
    by_flow = {t.payload["flow_results"]["flow_id"]: t.payload["flow_results"] for t in joins.tasks}
    assert len(joins.tasks) == 2 and set(by_flow) == set(flow_ids)
    assert batches <= 3  # the six steps ran in one batch
    first, second = (by_flow[f] for f in flow_ids)
    assert first == {
        "flow_id": flow_ids[0],
        "steps": [{"step_index": i, "status": "success", "result": {"i": i}} for i in range(3)],
    }
    assert second["aborted"] is True
    assert {s["step_index"] for s in second["steps"]} == {0, 1, 2}
    assert second["steps"][1] == failed(1, "step 101 failed")
    assert [s.get("result") for s in second["steps"] if s["status"] == "success"] == [
        {"i": 100},
        {"i": 102},
    ]


@pytest.mark.parametrize("with_parent", [True, False])
async def test_a_batch_executor_starts_flows(app: TaskQueue, with_parent: bool) -> None:
    register_steps(app)
    joins = register_join(app)
    flows: dict[str, str] = {}

    @app.batch_executor("q", "start")
    async def start(tasks: list[Task], actions: Actions) -> None:
        for task in tasks:
            flows[task.id or ""] = actions.start_flow(
                steps=steps({"i": task.payload["n"]}),
                join=JOIN,
                parent=task if with_parent else None,
            )
            actions.success(task)

    ids = await app.add_tasks(
        [
            Task(
                type="start",
                queue_id="q",
                payload={"n": n},
                metadata={"log_context": {"order": f"o-{n}"}},
            )
            for n in (1, 2)
        ]
    )
    await app.run_until_idle()
    assert set(flows) == set(ids)
    assert {t.payload["flow_results"]["flow_id"] for t in joins.tasks} == set(flows.values())
    assert len(joins.tasks) == 2
    for n, task_id in zip((1, 2), ids, strict=True):
        flow_id = flows[task_id]
        status = await app.flow_status(flow_id)
        assert status is not None and status.state == "joined"
        assert status.parent_task_id == (task_id if with_parent else None)
        [join] = [j for j in joins.tasks if j.payload["flow_results"]["flow_id"] == flow_id]
        assert join.payload["flow_results"]["steps"] == [
            {"step_index": 0, "status": "success", "result": {"i": n}}
        ]
        assert join.log_context == ({"order": f"o-{n}"} if with_parent else {})


async def test_a_batch_executor_flow_with_a_parent_starts_once_after_a_crash(
    app: TaskQueue,
) -> None:
    register_steps(app)
    joins = register_join(app)
    flow_ids: list[str] = []

    @app.batch_executor("q", "start")
    async def start(tasks: list[Task], actions: Actions) -> None:
        for task in tasks:
            flow_ids.append(actions.start_flow(steps=steps({"i": 0}), join=JOIN, parent=task))
            actions.success(task)

    crashes = crash_once(app.task_store, "put", has_type("start", TaskStatus.EXECUTED))
    await app.add_tasks([Task(type="start", queue_id="q", force_store=True)])
    await run_until_idle_through_crashes(app)
    assert crashes == [1]
    assert len(flow_ids) == 2 and len(set(flow_ids)) == 1
    assert joins.ids() == {join_task_id(flow_ids[0])} and len(joins.tasks) == 1
    assert app.stats.flows_started == 1


async def test_a_batch_executor_flow_without_a_parent_starts_once_after_a_crash(
    app: TaskQueue,
) -> None:
    register_steps(app)
    joins = register_join(app)
    flow_ids: list[str] = []

    @app.batch_executor("q", "start")
    async def start(tasks: list[Task], actions: Actions) -> None:
        flow_ids.append(actions.start_flow(steps=steps({"i": 0}), join=JOIN))
        for task in tasks:
            actions.success(task)

    crashes = crash_once(app.task_store, "put", has_type("start", TaskStatus.EXECUTED))
    await app.add_tasks([Task(type="start", queue_id="q", force_store=True)])
    await run_until_idle_through_crashes(app)
    assert crashes == [1]
    assert len(set(flow_ids)) == 1, flow_ids
    assert len(joins.tasks) == 1
    assert app.stats.flows_started == 1


async def test_a_parallel_executor_starts_flows(app: TaskQueue) -> None:
    register_steps(app)
    joins = register_join(app)
    flows: dict[str, str] = {}

    @app.executor("q", "start", parallel=True, chunk_size=3)
    async def start(task: Task, actions: Actions) -> None:
        await asyncio.sleep(0)  # let the chunk's calls interleave
        flows[task.id or ""] = actions.start_flow(steps=steps({"i": task.payload["n"]}), join=JOIN)
        actions.success(task)

    ids = await app.add_tasks(
        [Task(type="start", queue_id="q", payload={"n": n}) for n in range(5)]
    )
    await app.run_until_idle()
    assert set(flows) == set(ids) and len(set(flows.values())) == 5
    by_flow = {t.payload["flow_results"]["flow_id"]: t.payload["flow_results"] for t in joins.tasks}
    assert len(joins.tasks) == 5 and set(by_flow) == set(flows.values())
    for n, task_id in enumerate(ids):
        assert by_flow[flows[task_id]]["steps"] == [
            {"step_index": 0, "status": "success", "result": {"i": n}}
        ]
        status = await app.flow_status(flows[task_id])
        assert status is not None and status.parent_task_id == task_id


async def test_only_the_final_attempts_flow_starts(app: TaskQueue, clock: ManualClock) -> None:
    log = register_steps(app)
    joins = register_join(app)
    flow_ids: list[str] = []

    @app.executor("q", "start", retries=1, retry_after=1)
    async def start(task: Task, actions: Actions) -> None:
        flow_ids.append(actions.start_flow(steps=steps({"i": task.retry_count}), join=JOIN))
        if task.retry_count == 0:
            actions.fail(task, "not yet")
        else:
            actions.success(task)

    await app.add_tasks([Task(type="start", queue_id="q")])
    await app.run_until_idle()
    assert len(flow_ids) == 1 and log.runs == [] and joins.tasks == []
    assert await app.flow_status(flow_ids[0]) is None
    clock.advance(seconds=1)
    await app.run_until_idle()

    first, second = flow_ids
    assert first != second
    assert await app.flow_status(first) is None
    assert log.runs == [(1, 0)]
    assert joins.only()["flow_id"] == second
    assert app.stats.flows_started == 1


async def test_a_final_failure_still_starts_its_flow(app: TaskQueue) -> None:
    """Like children, a flow starts when its owner's attempt ends for good, failed or not."""
    log = register_steps(app)
    joins = register_join(app)
    flow_ids: list[str] = []

    @app.executor("q", "start")
    async def start(task: Task, actions: Actions) -> None:
        flow_ids.append(actions.start_flow(steps=steps({"i": 0}), join=JOIN))
        actions.fail(task, "gave up")

    await app.add_tasks([Task(type="start", queue_id="q")])
    await app.run_until_idle()
    assert log.runs == [(0, 0)]
    assert joins.only()["flow_id"] == flow_ids[0]


# -- exactly one join ----------------------------------------------------------------------


async def test_flow_and_join_ids_are_deterministic() -> None:
    """The same starter task gives the same flow id and the same join id, wherever it runs."""
    seen = []
    for _ in range(2):
        app = TaskQueue(clock=ManualClock(), worker_id="w-1")
        register_steps(app)
        joins = register_join(app)
        starter = register_starter(app, lambda: steps({"i": 0}))
        await app.add_tasks(
            [Task(id="0190a000-0000-7000-8000-000000000001", type="start", queue_id="q")]
        )
        await app.run_until_idle()
        flow_id = await only_flow(app, starter)
        status = await app.flow_status(flow_id)
        assert status is not None
        assert joins.ids() == {status.join_task_id}
        seen.append((flow_id, status.join_task_id))
    assert seen[0] == seen[1]
    assert seen[0][0] != seen[0][1]


@pytest.mark.parametrize(
    ("port", "method", "when"),
    [
        ("flow_store", "close", lambda *a, **k: True),
        ("task_store", "create", has_type("done")),
        ("transport", "publish", has_type("done")),
        ("scheduler", "cancel", lambda *a, **k: True),
        ("flow_store", "release_results", lambda *a, **k: True),
        ("task_store", "put", has_type("done", TaskStatus.EXECUTED)),
    ],
)
async def test_a_crash_while_joining_redelivers_to_the_same_single_join(
    app: TaskQueue, port: str, method: str, when: Callable[..., bool]
) -> None:
    register_steps(app)
    joins = register_join(app)
    starter = register_starter(app, lambda: steps({"i": 0}, {"i": 1}), timeout=60)
    crashes = crash_once(getattr(app, port), method, when)
    await app.add_tasks([Task(type="start", queue_id="q")])
    assert await run_until_idle_through_crashes(app) == 1
    assert crashes == [1]
    flow_id = await only_flow(app, starter)
    assert joins.only() == {"flow_id": flow_id, "steps": [ok(0), ok(1)]}
    record = await app.get_task(join_task_id(flow_id))
    assert record is not None and record.status is TaskStatus.EXECUTED


async def test_a_crash_after_the_close_is_mended_by_the_redelivered_step(
    app: TaskQueue, caplog: pytest.LogCaptureFixture
) -> None:
    """The closing step's batch dies between the close and the join's dispatch; its
    redelivery finds the flow closed without a join and dispatches the same join."""
    register_steps(app)
    joins = register_join(app)
    starter = register_starter(app, lambda: steps({"i": 0}, {"i": 1, "fail": True}))
    crash_once(app.task_store, "create", has_type("done"))
    await app.add_tasks([Task(type="start", queue_id="q")])
    await run_until_idle_through_crashes(app)
    flow_id = await only_flow(app, starter)
    assert joins.only() == {"flow_id": flow_id, "steps": [ok(0), failed(1)]}
    assert f"flow {flow_id} closed without its join" in caplog.text


async def test_a_crash_after_the_join_is_created_still_disarms_the_deadline(
    app: TaskQueue,
) -> None:
    register_steps(app)
    register_join(app)
    starter = register_starter(app, lambda: steps({"i": 0}), timeout=60)
    crash_once(app.transport, "publish", has_type("done"))
    await app.add_tasks([Task(type="start", queue_id="q")])
    await run_until_idle_through_crashes(app)
    await only_flow(app, starter)
    assert app.scheduler.pending_names() == []  # type: ignore[attr-defined]


async def test_a_crash_after_the_join_is_created_still_marks_the_flow_row_aborted(
    app: TaskQueue,
) -> None:
    register_steps(app)
    register_join(app)
    starter = register_starter(
        app, lambda: steps({"i": 0, "fail": True}), failure_policy="abort", entity=SHOP
    )
    crash_once(app.transport, "publish", has_type("done"))
    await app.add_tasks([Task(type="start", queue_id="q")])
    await run_until_idle_through_crashes(app)
    flow_id = await only_flow(app, starter)
    [row] = [r for r in await app.entity_status(SHOP) if r.task_id == flow_id]
    assert (row.status, row.error) == ("failed", "flow_aborted")


async def test_a_crash_after_the_join_is_created_still_releases_the_results(
    app: TaskQueue,
) -> None:
    events = FlowEvents()
    app.add_listener(events)
    register_steps(app)
    register_join(app)
    starter = register_starter(app, lambda: steps({"i": 0}, {"i": 1}))
    crash_once(app.transport, "publish", has_type("done"))
    await app.add_tasks([Task(type="start", queue_id="q")])
    await run_until_idle_through_crashes(app)
    flow_id = await only_flow(app, starter)
    assert app.flow_store.step_count(flow_id) == 0  # type: ignore[attr-defined]
    assert events.closed == [(flow_id, "joined", 2, 0)]


async def test_a_redelivered_starter_does_not_rearm_a_closed_flow(app: TaskQueue) -> None:
    log = register_steps(app, "b")
    joins = register_join(app, Join(queue_id="b", type="done"))
    flow_ids: list[str] = []

    @app.executor("a", "start")
    async def start(task: Task, actions: Actions) -> None:
        flow_ids.append(
            actions.start_flow(
                steps=[Task(type="step", queue_id="b", payload={"i": 0})],
                join=Join(queue_id="b", type="done"),
                timeout=60,
            )
        )
        actions.success(task)

    # the starter's batch dies after the flow started; queue ``b`` is served before the
    # redelivery, so the flow joins first
    crash_once(app.task_store, "put", has_type("start", TaskStatus.EXECUTED))
    await app.add_tasks([Task(type="start", queue_id="a", force_store=True)])
    await run_until_idle_through_crashes(app)
    assert len(flow_ids) == 2 and len(set(flow_ids)) == 1
    assert len(joins.tasks) == 1
    assert app.scheduler.pending_names() == []  # type: ignore[attr-defined]
    assert log.runs == [(0, 0)]


async def test_a_flow_closes_once_when_a_duplicate_races_the_closing_worker(
    app: TaskQueue,
) -> None:
    events = FlowEvents()
    app.add_listener(events)
    app.batch_size = 1
    runs: list[int] = []

    @app.executor("q", "step")
    async def step(task: Task, actions: Actions) -> None:
        runs.append(len(runs))
        if len(runs) == 1:
            await app.transport.publish([task])  # the same record again, for the second worker
        actions.success(task)

    joins = register_join(app)
    starter = register_starter(app, lambda: [Task(type="step", queue_id="q", payload={})])

    # the first worker stops just before it creates the join record
    create = app.task_store.create
    at_create = asyncio.Event()
    go_on = asyncio.Event()

    async def slow_create(tasks: Sequence[Task]) -> list[bool]:
        if any(t.type == "done" for t in tasks) and not at_create.is_set():
            at_create.set()
            await go_on.wait()
        return await create(tasks)

    app.task_store.create = slow_create  # type: ignore[method-assign]
    await app.add_tasks([Task(type="start", queue_id="q")])
    first = asyncio.ensure_future(app.run_until_idle())
    await at_create.wait()
    await app.run_until_idle()  # the second worker: the duplicate step, and the join
    go_on.set()
    await first

    flow_id = await only_flow(app, starter)
    assert runs == [0, 1]
    assert joins.ids() == {join_task_id(flow_id)} and len(joins.tasks) == 1
    assert events.closed == [(flow_id, "joined", 1, 0)]
    assert app.stats.flows_closed == 1


# -- what a join carries -------------------------------------------------------------------


async def test_the_join_carries_the_parents_log_context__ref_10_21(app: TaskQueue) -> None:
    """Reference: the join task dropped ``log_context``, so correlation keys were lost."""
    seen: list[Task] = []

    @app.executor("q", "step")
    async def step(task: Task, actions: Actions) -> None:
        seen.append(task)
        actions.success(task)

    joins = register_join(app)
    register_starter(
        app,
        lambda: [
            Task(type="step", queue_id="q", payload={}),
            Task(
                type="step",
                queue_id="q",
                payload={},
                metadata={"log_context": {"step": "own", "request_id": "mine"}},
            ),
        ],
    )
    await app.add_tasks(
        [
            Task(
                type="start",
                queue_id="q",
                metadata={"log_context": {"request_id": "r-1", "tenant": "t-9"}},
            )
        ]
    )
    await app.run_until_idle()
    [join] = joins.tasks
    assert join.log_context == {"request_id": "r-1", "tenant": "t-9"}
    contexts = sorted((t.log_context for t in seen), key=len)
    assert contexts == [
        {"request_id": "r-1", "tenant": "t-9"},
        {"request_id": "mine", "tenant": "t-9", "step": "own"},
    ]


async def test_steps_with_force_store_are_stored_and_joined(app: TaskQueue) -> None:
    log = register_steps(app)
    joins = register_join(app)
    register_starter(app, lambda: steps({"i": 0}, {"i": 1, "fail": True}, force_store=True))
    await app.add_tasks([Task(type="start", queue_id="q")])
    await app.run_until_idle()
    assert joins.only()["steps"] == [ok(0), failed(1)]
    assert all(t.stored for t in log.tasks.values())
    first = await app.get_task(log.tasks[0].id or "")
    second = await app.get_task(log.tasks[1].id or "")
    assert first is not None and second is not None
    assert (first.status, first.execution_result) == (TaskStatus.EXECUTED, {"i": 0})
    assert (second.status, second.execution_stats["last_error"]) == (
        TaskStatus.FAILED,
        "step 1 failed",
    )


async def test_large_step_results_reach_the_join_resolved(clock: ManualClock) -> None:
    """Results over the limit go to the blob store; the join gets the values themselves."""
    app = TaskQueue(clock=clock, result_limit=100, worker_id="w-1")
    big = {"rows": ["x" * 50] * 10}
    stored_step: list[str] = []

    @app.executor("q", "step")
    async def step(task: Task, actions: Actions) -> None:
        if task.stored:
            stored_step.append(task.id or "")
        actions.success(task, big if task.payload["big"] else {"small": True})

    joins = register_join(app)
    starter = register_starter(
        app,
        lambda: [
            Task(type="step", queue_id="q", payload={"big": True}, force_store=True),
            Task(type="step", queue_id="q", payload={"big": False}),
            Task(type="step", queue_id="q", payload={"big": True}),
        ],
    )
    await app.add_tasks([Task(type="start", queue_id="q")])
    await app.run_until_idle()
    flow_id = await only_flow(app, starter)
    assert [s["result"] for s in joins.only()["steps"]] == [big, {"small": True}, big]
    [step_id] = stored_step
    raw = await app.task_store.get(step_id)
    assert raw is not None and is_blob_ref(raw.execution_result)
    stored_join = await app.task_store.get(join_task_id(flow_id))
    assert stored_join is not None
    assert [s["result"] for s in stored_join.payload["flow_results"]["steps"]] == [
        big,
        {"small": True},
        big,
    ]


async def test_the_memory_flow_store_releases_step_results_after_the_join(
    app: TaskQueue, clock: ManualClock
) -> None:
    register_steps(app)
    joins = register_join(app)
    starter = register_starter(app, lambda: steps({"i": 0}, {"i": 1, "fail_until": 1}, retries=1))
    await app.add_tasks([Task(type="start", queue_id="q")])
    await app.run_until_idle()
    flow_id = await only_flow(app, starter)
    assert app.flow_store.step_count(flow_id) == 1  # type: ignore[attr-defined]
    clock.advance(seconds=1)
    await app.run_until_idle()
    assert len(joins.tasks) == 1
    assert app.flow_store.step_count(flow_id) == 0  # type: ignore[attr-defined]


# -- the flow's own projection row ---------------------------------------------------------


async def test_the_flow_row_is_processing_then_takes_the_joins_outcome(
    app: TaskQueue, clock: ManualClock
) -> None:
    register_steps(app)
    register_join(app, result={"total": 2})
    starter = register_starter(
        app, lambda: steps({"i": 0}, {"i": 1, "fail_until": 1}, retries=1), entity=SHOP
    )
    started = clock.now()
    await app.add_tasks([Task(type="start", queue_id="q")])
    await app.run_until_idle()
    flow_id = await only_flow(app, starter)
    [row] = [r for r in await app.entity_status(SHOP) if r.task_id == flow_id]
    assert (row.status, row.task_type, row.queue_id) == ("processing", "done", "q")
    assert row.created_at == started

    clock.advance(seconds=1)
    await app.run_until_idle()
    [row] = [r for r in await app.entity_status(SHOP) if r.task_id == flow_id]
    assert (row.status, row.error, row.result) == ("executed", None, {"total": 2})
    assert row.updated_at == started + timedelta(seconds=1)


async def test_the_flow_row_fails_with_the_joins_error(app: TaskQueue) -> None:
    register_steps(app)

    @app.executor("q", "done")
    async def done(task: Task, actions: Actions) -> None:
        actions.fail(task, "report failed")

    starter = register_starter(app, lambda: steps({"i": 0}), entity=SHOP)
    await app.add_tasks([Task(type="start", queue_id="q")])
    await app.run_until_idle()
    flow_id = await only_flow(app, starter)
    [row] = [r for r in await app.entity_status(SHOP) if r.task_id == flow_id]
    assert (row.status, row.error) == ("failed", "report failed")


async def test_an_aborted_flow_row_stays_aborted_after_its_join_runs(app: TaskQueue) -> None:
    register_steps(app)
    joins = register_join(app)
    starter = register_starter(
        app, lambda: steps({"i": 0, "fail": True}), failure_policy="abort", entity=SHOP
    )
    await app.add_tasks([Task(type="start", queue_id="q")])
    await app.run_until_idle()
    flow_id = await only_flow(app, starter)
    assert len(joins.tasks) == 1
    rows = await app.entity_status(SHOP)
    [row] = [r for r in rows if r.task_id == flow_id]
    assert (row.status, row.error) == ("failed", "flow_aborted")
    [join_row] = [r for r in rows if r.task_id == join_task_id(flow_id)]
    assert join_row.status == "executed"


async def test_a_flow_without_an_entity_writes_no_flow_row(app: TaskQueue) -> None:
    register_steps(app)
    register_join(app)
    starter = register_starter(app, lambda: steps({"i": 0}))
    calls_before = app.projection_store.calls  # type: ignore[attr-defined]
    await app.add_tasks([Task(type="start", queue_id="q")])
    await app.run_until_idle()
    await only_flow(app, starter)
    assert app.projection_store.calls == calls_before  # type: ignore[attr-defined]
