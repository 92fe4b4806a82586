"""A flow's steps are checked at ``start_flow`` and built as they are dispatched
(``tq_aws.core.flow_steps``): what goes out is exactly what marking each step and preparing it
at the ``start_flow`` call gives, and a bad step is refused at the call, naming its index."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import BaseModel

from tq_aws import Actions, Entity, Join, Task, TaskQueue
from tq_aws.core.flow_steps import DISPATCH_CHUNK, FlowSteps, step_chunks, step_id, step_types
from tq_aws.core.flows import FLOW_META
from tq_aws.core.prepare import prepare_tasks
from tq_aws.errors import TaskValidationError
from tq_aws.testing import ManualClock

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
FLOW = "01950a2b-3c4d-7e5f-8a9b-0c1d2e3f4a5b"


class Order(BaseModel):
    sku: str


def registry_app() -> TaskQueue:
    app = TaskQueue(clock=ManualClock(NOW))
    app.executor("q", "keyed", partition_key=lambda t: f"k-{t.payload['n'] % 3}")(noop)
    app.executor("q", "modelled", payload_model=Order)(noop)
    app.executor("q", "plain")(noop)
    return app


def noop(task: Task, actions: Actions) -> None:
    actions.success(task)


STEPS = [
    Task(type="plain", queue_id="q", payload={"i": 1}),
    Task(type="plain", queue_id="q"),
    Task(type="keyed", queue_id="q", payload={"n": 4}),
    Task(type="modelled", queue_id="q", payload={"sku": "a-1"}, retries=3, retry_after=2.5),
    Task(id="explicit-step", type="plain", queue_id="q", payload=[1, 2]),
    Task(type="plain", queue_id="q", entity=Entity(id="u-1", type="user"), force_store=True),
    Task(
        type="plain",
        queue_id="q",
        metadata={"log_context": {"order": "o-9"}, "other": 1},
        execute_at=NOW + timedelta(minutes=5),
        expires_at=NOW + timedelta(hours=1),
    ),
    Task(type="unregistered", queue_id="elsewhere", partition_key="pk-1", task_group="g"),
]


def old_recipe(app: TaskQueue, steps: list[Task], context: dict[str, str]) -> list[Task]:
    """What ``start_flow`` built before the steps were kept compact: each step marked with
    its id and flow metadata, then ``prepare_tasks`` at the call."""
    marked = [
        s.copy_with(
            id=s.id or step_id(FLOW, i),
            metadata={
                **s.metadata,
                FLOW_META: {"flow_id": FLOW, "step_index": i, "total_steps": len(steps)},
            },
        )
        for i, s in enumerate(steps)
    ]
    return prepare_tasks(marked, app.registry, NOW, inherit_context=context)


def state(task: Task) -> tuple[dict[str, Any], set[str]]:
    return dict(task.__dict__), set(task.__pydantic_fields_set__)


@pytest.mark.parametrize("context", [{}, {"request": "r-1", "order": "parent"}])
def test_built_steps_are_what_marking_and_preparing_gave(context: dict[str, str]) -> None:
    app = registry_app()

    def build(marked: list[Task]) -> list[Task]:
        return app._prepare_children(marked, context, now=NOW, validate=False)

    steps = FlowSteps(STEPS, FLOW, build)
    expected = old_recipe(app, STEPS, context)
    got = list(steps)
    assert len(steps) == len(STEPS)
    assert [state(t) for t in got] == [state(t) for t in expected]
    assert state(steps[2]) == state(expected[2])
    assert state(steps[-1]) == state(expected[-1])
    assert [state(t) for t in steps[1:3]] == [state(t) for t in expected[1:3]]
    assert steps.types == ("plain", "keyed", "modelled", "unregistered")
    assert step_types(STEPS) == steps.types
    assert got[4].id == "explicit-step" and got[0].id == step_id(FLOW, 0)
    # nothing of the caller's tasks is changed, and built steps share no metadata with them
    assert STEPS[6].metadata == {"log_context": {"order": "o-9"}, "other": 1}
    assert got[6].metadata is not STEPS[6].metadata


def test_steps_are_built_a_chunk_at_a_time_in_order() -> None:
    app = registry_app()
    calls: list[int] = []

    def build(marked: list[Task]) -> list[Task]:
        calls.append(len(marked))
        return app._prepare_children(marked, {}, now=NOW, validate=False)

    many = [Task(type="plain", queue_id="q", payload=i) for i in range(DISPATCH_CHUNK * 2 + 7)]
    steps = FlowSteps(many, FLOW, build)
    chunks = list(step_chunks(steps))
    assert calls == [DISPATCH_CHUNK, DISPATCH_CHUNK, 7]
    assert [t.payload for chunk in chunks for t in chunk] == list(range(len(many)))
    assert [len(c) for c in step_chunks(many[:3], 2)] == [2, 1]


async def start_with(steps: list[Any]) -> tuple[TaskQueue, Task]:
    app = registry_app()
    app.executor("q", "done")(noop)

    @app.executor("q", "start")
    def start(task: Task, actions: Actions) -> None:
        actions.start_flow(steps, Join(queue_id="q", type="done"))
        actions.success(task)

    [start_id] = await app.add_tasks([Task(type="start", queue_id="q")])
    await app.run_until_idle()
    started = await app.get_task(start_id)
    assert started is not None  # failed for good: stored
    return app, started


async def test_a_bad_step_in_a_later_chunk_is_refused_at_the_call_with_its_index() -> None:
    steps = [Task(type="plain", queue_id="q", payload=i) for i in range(DISPATCH_CHUNK + 10)]
    steps[DISPATCH_CHUNK + 3] = Task(type="plain", queue_id="q", payload=float("nan"))
    app, start = await start_with(steps)
    error = start.execution_stats["last_error"]
    assert f"tasks[{DISPATCH_CHUNK + 3}] (q/plain): payload is nan" in error
    assert app.stats.flows_started == 0  # nothing of the flow went out


async def test_two_steps_of_one_id_in_different_chunks_are_refused() -> None:
    steps = [Task(type="plain", queue_id="q", payload=i) for i in range(DISPATCH_CHUNK + 2)]
    steps[1] = Task(id="twice", type="plain", queue_id="q")
    steps[DISPATCH_CHUNK + 1] = Task(id="twice", type="plain", queue_id="q")
    app, start = await start_with(steps)
    error = start.execution_stats["last_error"]
    assert f"tasks[{DISPATCH_CHUNK + 1}]" in error and "also the id of tasks[1]" in error
    assert app.stats.flows_started == 0


async def test_a_payload_model_is_checked_at_the_call() -> None:
    app, start = await start_with([Task(type="modelled", queue_id="q", payload={"sku": 1})])
    assert "payload.sku" in start.execution_stats["last_error"]
    assert app.stats.flows_started == 0


def test_start_flow_raises_the_error_at_the_call() -> None:
    app = registry_app()
    from tq_aws.core.actions import BatchBook

    owner = Task(id="owner", type="start", queue_id="q")
    book = BatchBook(tasks={"owner": owner})
    actions = Actions(book, app._prepare_children, owner, {}, lambda: NOW)
    late = NOW.replace(tzinfo=None)  # naive: refused
    bad = [Task(type="plain", queue_id="q")] * 3 + [
        Task(type="plain", queue_id="q", expires_at=late)
    ]
    with pytest.raises(TaskValidationError) as caught:
        actions.start_flow(bad, Join(queue_id="q", type="done"))
    assert caught.value.index == 3 and caught.value.field == "expires_at"
    assert not any(book.flows.values())
