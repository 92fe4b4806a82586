"""Failures a user controls, on the DynamoDB stores (moto): a task failed for good with
``store_on_failure``, and the flow's own projection row kept as a flow row (``kind``)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.aws import REGION, unique
from tests.support.events import USER, make_task
from tq_aws import Actions, Entity, Join, PermanentFailure, Task, TaskQueue, TaskStatus
from tq_aws.backends.aws.clients import AwsSettings
from tq_aws.backends.aws.dynamodb import build_stores, ensure_table
from tq_aws.backends.aws.dynamodb.models import entity_pk, projection_sk
from tq_aws.core.outcomes import PERMANENT_KEY
from tq_aws.testing import ManualClock

ORDER = Entity(id="o-1", type="order")


@pytest.fixture
def dynamo(moto: None) -> tuple[TaskQueue, ManualClock, Any]:
    settings = AwsSettings(region=REGION, max_attempts=1)
    table = unique("tq-user-failures")
    ensure_table(table, settings)
    stores = build_stores(table, settings)
    clock = ManualClock()
    app = TaskQueue(
        clock=clock,
        task_store=stores.tasks,
        projection_store=stores.projections,
        flow_store=stores.flows,
    )
    return app, clock, stores


async def run_long(app: TaskQueue, clock: ManualClock) -> None:
    for _ in range(4):
        await app.run_until_idle()
        clock.advance(seconds=600)
    await app.run_until_idle()


async def test_permanent_failure_with_store_on_failure_is_stored_failed_at_once(
    dynamo: tuple[TaskQueue, ManualClock, Any],
) -> None:
    app, clock, _ = dynamo
    attempts: list[tuple[Any, int]] = []

    @app.executor("q", "t", retries=3, retry_after=1, store_on_failure=True)
    async def run(task: Task, actions: Actions) -> None:
        attempts.append((task.payload, task.retry_count))
        if task.payload == "stop":
            raise PermanentFailure("for good", meta={"why": "stop"})
        actions.fail(task, "again")

    stop, again = await app.add_tasks(
        [make_task(payload="stop", entity=USER), make_task(payload="again")]
    )
    await app.run_until_idle()
    # the ordinary failure is stored between attempts, as store_on_failure asks ...
    between = await app.get_task(again)
    assert between is not None and between.status is TaskStatus.SCHEDULED
    assert between.retry_count == 1
    # ... the permanent one is stored failed at once, and never comes back
    record = await app.get_task(stop)
    assert record is not None and record.status is TaskStatus.FAILED
    assert record.retry_count == 0
    assert record.execution_stats["last_error"] == "for good"
    assert record.execution_stats["why"] == "stop"
    assert record.execution_stats[PERMANENT_KEY] is True
    await run_long(app, clock)
    assert [n for p, n in attempts if p == "stop"] == [0]
    assert [n for p, n in attempts if p == "again"] == [0, 1, 2, 3]
    [row] = await app.entity_status(USER)
    assert (row.status, row.error, row.kind) == ("failed", "for good", "task")


async def test_the_flows_row_is_stored_as_a_flow_row(
    dynamo: tuple[TaskQueue, ManualClock, Any],
) -> None:
    app, clock, stores = dynamo
    flows: list[str] = []

    @app.executor("q", "start")
    async def start(task: Task, actions: Actions) -> None:
        steps = [Task(type="step", queue_id="q", payload=i) for i in range(2)]
        flows.append(actions.start_flow(steps, Join(queue_id="q", type="join"), entity=ORDER))
        actions.success(task)

    @app.executor("q", "step")
    async def step(task: Task, actions: Actions) -> None:
        actions.success(task, task.payload)

    @app.executor("q", "join")
    async def join(task: Task, actions: Actions) -> None:
        actions.success(task, "joined")

    await app.add_tasks([Task(type="start", queue_id="q", entity=ORDER)])
    await run_long(app, clock)
    [flow_id] = flows
    status = await app.flow_status(flow_id)
    assert status is not None

    kinds = {r.task_id: (r.kind, r.status) for r in await app.entity_status(ORDER)}
    assert kinds.pop(flow_id) == ("flow", "executed")
    assert kinds.pop(status.join_task_id) == ("task", "executed")
    assert set(kinds.values()) == {("task", "executed")}  # the starter

    # on the table: ``kind`` is an attribute of the item, beside the row's document
    model = stores.projections.models.projection
    item = model.get(entity_pk(ORDER.type, ORDER.id), projection_sk(flow_id))
    assert item.kind == "flow"
    assert '"kind"' not in item.doc
    join_item = model.get(entity_pk(ORDER.type, ORDER.id), projection_sk(status.join_task_id))
    assert join_item.kind == "task"


async def test_a_row_written_before_kind_reads_as_a_task_row(
    dynamo: tuple[TaskQueue, ManualClock, Any],
) -> None:
    app, _, stores = dynamo

    @app.executor("q", "t")
    async def run(task: Task, actions: Actions) -> None:
        actions.success(task)

    [tid] = await app.add_tasks([make_task(entity=USER)])
    await app.run_until_idle()
    model = stores.projections.models.projection
    item = model.get(entity_pk(USER.type, USER.id), projection_sk(tid))
    item.kind = None  # as an older release wrote it
    item.save()
    [row] = await app.entity_status(USER)
    assert (row.task_id, row.kind, row.status) == (tid, "task", "executed")
