"""The flow's own projection row says it is a flow (``kind="flow"``); every task's row says
``kind="task"``, the join's included."""

from __future__ import annotations

from tq_aws import Actions, Entity, Join, ProjectionRow, Task, TaskQueue
from tq_aws.core.projections import RANKS
from tq_aws.testing import DEFAULT_START, ManualClock

ORDER = Entity(id="o-1", type="order")


def register_flow(app: TaskQueue, flows: list[str], *, fail_step: bool = False) -> None:
    @app.executor("q", "start")
    async def start(task: Task, actions: Actions) -> None:
        steps = [Task(type="step", queue_id="q", payload=i, entity=ORDER) for i in range(2)]
        flows.append(actions.start_flow(steps, Join(queue_id="q", type="join"), entity=ORDER))
        actions.success(task)

    @app.executor("q", "step")
    async def step(task: Task, actions: Actions) -> None:
        actions.success(task, task.payload)

    @app.executor("q", "join")
    async def join(task: Task, actions: Actions) -> None:
        if fail_step:
            actions.fail(task, "join broke")
        else:
            actions.success(task, "joined")


def test_a_row_is_a_task_row_unless_told() -> None:
    row = ProjectionRow(
        entity_id="u",
        entity_type="user",
        task_id="t",
        task_type="send",
        queue_id="q",
        status="executed",
        rank=RANKS["executed"],
        version=1,
        created_at=DEFAULT_START,
        updated_at=DEFAULT_START,
    )
    assert row.kind == "task"
    assert row.model_copy(update={"kind": "flow"}).kind == "flow"


async def test_the_flows_row_is_a_flow_row_and_the_joins_is_a_task_row(
    app: TaskQueue, clock: ManualClock
) -> None:
    flows: list[str] = []
    register_flow(app, flows)
    [starter] = await app.add_tasks([Task(type="start", queue_id="q", entity=ORDER)])
    await app.run_until_idle()
    [flow_id] = flows
    status = await app.flow_status(flow_id)
    assert status is not None

    rows = {r.task_id: r for r in await app.entity_status(ORDER)}
    flow_row = rows.pop(flow_id)
    assert (flow_row.kind, flow_row.status, flow_row.result) == ("flow", "executed", "joined")
    join_row = rows[status.join_task_id]
    assert (join_row.kind, join_row.status) == ("task", "executed")
    assert {r.kind for r in rows.values()} == {"task"}
    assert len(rows) == 4 and starter in rows  # the starter, two steps and the join


async def test_the_flows_row_is_a_flow_row_while_open_and_when_failed(
    app: TaskQueue, clock: ManualClock
) -> None:
    flows: list[str] = []
    seen: list[ProjectionRow] = []
    register_flow(app, flows, fail_step=True)

    @app.executor("q", "probe")
    async def probe(task: Task, actions: Actions) -> None:
        seen.extend(r for r in await app.entity_status(ORDER) if r.task_id in flows)
        actions.success(task)

    app.batch_size = 1
    await app.add_tasks([Task(type="start", queue_id="q"), Task(type="probe", queue_id="q")])
    await app.run_until_idle()
    [open_row] = seen
    assert (open_row.kind, open_row.status) == ("flow", "processing")
    [flow_row] = [r for r in await app.entity_status(ORDER) if r.task_id == flows[0]]
    assert (flow_row.kind, flow_row.status, flow_row.error) == ("flow", "failed", "join broke")
