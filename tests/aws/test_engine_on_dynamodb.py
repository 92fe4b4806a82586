"""The engine on the DynamoDB stores (moto): the same scenario gives the same outcomes as on the
memory stores. Transport and scheduler stay in memory; only the three stores change."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from tests.support.aws import REGION, unique
from tq_aws import Actions, Entity, Task, TaskQueue
from tq_aws.backends.aws.clients import AwsSettings
from tq_aws.backends.aws.dynamodb import build_stores, ensure_table
from tq_aws.backends.memory import MemoryBlobStore
from tq_aws.core.flows import Join
from tq_aws.testing import ManualClock

USER = Entity(id="u-1", type="user")
ORDER = Entity(id="o-1", type="order")


async def scenario(app: TaskQueue, clock: ManualClock) -> dict[str, Any]:
    """Tasks with retries, entities, a cancel, a large result and a flow of three steps (one
    failing); returns what a user can observe, keyed by name rather than by generated id."""
    attempts: list[int] = []
    joined: list[Any] = []
    flows: list[str] = []

    @app.executor("q", "ok")
    async def ok(task: Task, actions: Actions) -> None:
        actions.success(task, {"echo": task.payload})

    @app.executor("q", "flaky", retries=2, retry_after=1, store_on_failure=True)
    async def flaky(task: Task, actions: Actions) -> None:
        attempts.append(task.retry_count)
        if task.retry_count < 2:
            actions.fail(task, f"attempt {task.retry_count} failed")
        else:
            actions.success(task, "third time")

    @app.executor("q", "never")
    async def never(task: Task, actions: Actions) -> None:
        raise AssertionError("a cancelled task ran")

    @app.executor("q", "fan")
    async def fan(task: Task, actions: Actions) -> None:
        steps = [Task(type="step", queue_id="q", payload={"i": i}) for i in range(3)]
        flows.append(actions.start_flow(steps, Join(queue_id="q", type="join"), entity=ORDER))
        actions.success(task)

    @app.executor("q", "step")
    async def step(task: Task, actions: Actions) -> None:
        i = task.payload["i"]
        if i == 1:
            actions.fail(task, "step 1 broke")
        else:
            actions.success(task, {"i": i, "big": "x" * 6000 if i == 2 else ""})

    @app.executor("q", "join")
    async def join(task: Task, actions: Actions) -> None:
        results = task.payload["flow_results"]
        joined.append(results)
        actions.success(task, len(results["steps"]))

    ids = dict(
        zip(
            ["ok", "flaky", "later", "fan"],
            await app.add_tasks(
                [
                    Task(type="ok", queue_id="q", payload="hi", entity=USER, force_store=True),
                    Task(type="flaky", queue_id="q", entity=USER),
                    Task(
                        type="never",
                        queue_id="q",
                        execute_at=clock.now() + timedelta(hours=1),
                        entity=USER,
                    ),
                    Task(type="fan", queue_id="q", entity=ORDER),
                ]
            ),
            strict=True,
        )
    )
    cancelled = [await app.cancel(ids["later"]), await app.cancel(ids["later"])]
    for _ in range(4):
        await app.run_until_idle()
        clock.advance(seconds=60)
    clock.advance(hours=2)  # past the cancelled task's time
    await app.run_until_idle()

    tasks = {}
    for name, tid in ids.items():
        stored = await app.get_task(tid)
        tasks[name] = None if stored is None else (stored.status.value, stored.retry_count)
    flaky_task = await app.get_task(ids["flaky"])
    assert flaky_task is not None
    [flow_id] = flows
    status = await app.flow_status(flow_id)
    assert status is not None
    [results] = joined
    return {
        "cancelled": cancelled,
        "attempts": attempts,
        "tasks": tasks,
        "flaky_result": flaky_task.execution_result,
        "user_rows": sorted(
            (name, r.status, r.error)
            for r in await app.entity_status(USER)
            for name, tid in ids.items()
            if r.task_id == tid
        ),
        "order_rows": sorted(  # the flow's own row and its tasks' rows
            ("flow" if r.task_id == flow_id else r.task_type, r.status)
            for r in await app.entity_status(ORDER)
        ),
        "flow": (status.state, status.total, status.succeeded, status.failed, status.pending),
        "join_steps": [
            (s["step_index"], s["status"], s.get("result"), s.get("error"))
            for s in results["steps"]
        ],
        "join_task": tasks_status(await app.get_task(status.join_task_id)),
    }


def tasks_status(task: Task | None) -> tuple[str, Any] | None:
    return None if task is None else (task.status.value, task.execution_result)


EXPECTED = {
    "cancelled": [True, False],
    "attempts": [0, 1, 2],
    "tasks": {
        "ok": ("executed", 0),
        "flaky": ("executed", 2),
        "later": ("cancelled", 0),
        "fan": None,
    },
    "flaky_result": "third time",
    "user_rows": [
        ("flaky", "executed", None),
        ("later", "cancelled", None),
        ("ok", "executed", None),
    ],
    "order_rows": [("fan", "executed"), ("flow", "executed"), ("join", "executed")],
    "flow": ("joined", 3, 2, 1, 0),
    "join_steps": [
        (0, "success", {"i": 0, "big": ""}, None),
        (1, "fail", None, "step 1 broke"),
        (2, "success", {"i": 2, "big": "x" * 6000}, None),
    ],
    "join_task": ("executed", 3),
}


@pytest.fixture
def dynamo_app(moto: None) -> tuple[TaskQueue, ManualClock, Any]:
    settings = AwsSettings(region=REGION, max_attempts=1)
    table = unique("tq-engine")
    ensure_table(table, settings)
    blobs = MemoryBlobStore()
    # A small item limit, so the large step result also goes through the blob store.
    stores = build_stores(table, settings, blob_store=blobs, item_limit=4096)
    clock = ManualClock()
    app = TaskQueue(
        clock=clock,
        task_store=stores.tasks,
        projection_store=stores.projections,
        flow_store=stores.flows,
        blob_store=blobs,
    )
    return app, clock, stores


async def test_the_scenario_on_memory_stores() -> None:
    clock = ManualClock()
    assert await scenario(TaskQueue(clock=clock), clock) == EXPECTED


async def test_the_same_scenario_on_dynamodb_stores(
    dynamo_app: tuple[TaskQueue, ManualClock, Any],
) -> None:
    app, clock, stores = dynamo_app
    assert await scenario(app, clock) == EXPECTED
    assert stores.flows.requests["TransactWriteItems"] >= 1
    blobs = stores.flows.blob_store
    assert isinstance(blobs, MemoryBlobStore)
    assert any(key.startswith("flows/") for key in blobs._blobs)  # the large step result
    assert stores.tasks.writes > 0 and stores.projections.writes > 0
    assert app.stats.projection_errors == 0
