"""``FlowResults``: a join executor parses ``task.payload["flow_results"]`` into a typed model
with ``steps``, ``succeeded`` and ``failed``; step statuses are ``success`` and ``fail``."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

import tq_aws
from tests.support.events import make_task
from tq_aws import Actions, FlowResults, FlowStepResult, Join, PermanentFailure, Task, TaskQueue
from tq_aws.errors import NotAJoinTaskError, TqError
from tq_aws.testing import ManualClock

JOIN = Join(queue_id="q", type="join")


def register(app: TaskQueue, **flow: Any) -> list[FlowResults]:
    """A starter making one flow of the payloads it is given, a step executor acting on each
    payload's ``do``, and a join executor parsing what it receives."""
    joined: list[FlowResults] = []

    @app.executor("q", "start")
    async def start(task: Task, actions: Actions) -> None:
        steps = [Task(type=p.pop("type", "step"), queue_id="q", payload=p) for p in task.payload]
        actions.start_flow(steps, JOIN, **flow)
        actions.success(task)

    @app.executor("q", "step", retries=1, retry_after=100)  # a retry outlasts a timeout
    async def step(task: Task, actions: Actions) -> None:
        do = task.payload["do"]
        if do == "ok":
            actions.success(task, {"n": task.payload["n"]})
        elif do == "fail":
            actions.fail(task, f"step {task.payload['n']} failed")
        elif do == "stop":
            raise PermanentFailure("stopped for good")
        # "hang": undecided, retried later

    @app.executor("q", "join")
    async def join(task: Task, actions: Actions) -> None:
        results = FlowResults.from_task(task)
        joined.append(results)
        actions.success(task, [s.result["n"] for s in results.succeeded])

    return joined


async def settle(app: TaskQueue, clock: ManualClock, rounds: int = 4) -> None:
    for _ in range(rounds):
        await app.run_until_idle()
        clock.advance(seconds=300)


def test_flow_results_are_exported() -> None:
    assert tq_aws.FlowResults is FlowResults and tq_aws.FlowStepResult is FlowStepResult
    assert issubclass(NotAJoinTaskError, TqError)


async def test_a_joined_flow_parses_into_steps_succeeded_and_failed(
    app: TaskQueue, clock: ManualClock
) -> None:
    joined = register(app)
    payloads = [
        {"do": "ok", "n": 0},
        {"do": "fail", "n": 1},
        {"do": "ok", "n": 2},
        {"do": "stop", "n": 3},
        {"type": "nobody-runs-this", "n": 4},
    ]
    await app.add_tasks([make_task(type="start", payload=payloads)])
    await settle(app, clock)

    [results] = joined
    assert isinstance(results, FlowResults) and results.state == "joined"
    assert (results.aborted, results.timed_out) == (False, False)
    assert [s.step_index for s in results.steps] == [0, 1, 2, 3, 4]
    assert [s.status for s in results.steps] == ["success", "fail", "success", "fail", "fail"]
    assert [(s.step_index, s.result) for s in results.succeeded] == [(0, {"n": 0}), (2, {"n": 2})]
    assert [(s.step_index, s.error) for s in results.failed] == [
        (1, "step 1 failed"),
        (3, "stopped for good"),
        (4, "unknown_executor"),
    ]
    first = results.step(0)
    assert first is not None and first.ok and first.error is None
    assert results.step(1) == FlowStepResult(step_index=1, status="fail", error="step 1 failed")
    assert results.step(9) is None
    status = await app.flow_status(results.flow_id)
    assert status is not None
    assert (status.succeeded, status.failed) == (len(results.succeeded), len(results.failed))


async def test_an_aborted_flow_says_so(app: TaskQueue, clock: ManualClock) -> None:
    joined = register(app, failure_policy="abort")
    payloads = [{"do": "stop", "n": 0}, {"do": "hang", "n": 1}]
    await app.add_tasks([make_task(type="start", payload=payloads)])
    await app.run_until_idle()

    [results] = joined
    assert (results.aborted, results.timed_out, results.state) == (True, False, "aborted")
    assert [s.step_index for s in results.failed] == [0]
    assert results.succeeded == [] and results.step(1) is None


async def test_a_timed_out_flow_has_the_steps_so_far(app: TaskQueue, clock: ManualClock) -> None:
    joined = register(app, timeout=30)
    payloads = [{"do": "ok", "n": 0}, {"do": "hang", "n": 1}]
    await app.add_tasks([make_task(type="start", payload=payloads)])
    await app.run_until_idle()
    assert joined == []
    clock.advance(seconds=31)
    await app.run_until_idle()

    [results] = joined
    assert (results.timed_out, results.state) == (True, "timed_out")
    assert [s.step_index for s in results.succeeded] == [0]
    assert results.failed == [] and results.step(1) is None


def test_from_payload_ignores_keys_it_does_not_know() -> None:
    """A join written by a newer producer (an extra key) still parses."""
    payload = {
        "flow_results": {
            "flow_id": "f-1",
            "steps": [{"step_index": 0, "status": "success", "result": 1, "extra": "x"}],
            "total_steps": 2,
        }
    }
    results = FlowResults.from_payload(payload)
    assert (results.flow_id, [s.result for s in results.succeeded]) == ("f-1", [1])


def test_a_task_that_is_not_a_join_is_refused_with_a_typed_error() -> None:
    task = Task(id="t-1", type="t", queue_id="q", payload={"order": 1})
    with pytest.raises(NotAJoinTaskError, match=r"t-1 \(q/t\).*flow_results"):
        FlowResults.from_task(task)
    with pytest.raises(NotAJoinTaskError):
        FlowResults.from_payload(None)
    with pytest.raises(ValidationError, match="status"):
        FlowResults.from_payload(
            {"flow_results": {"flow_id": "f", "steps": [{"step_index": 0, "status": "ok"}]}}
        )
