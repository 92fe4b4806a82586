"""The public API as the issue shows it, end to end on the memory backends."""

from __future__ import annotations

import threading

import tq_aws
from tq_aws import Entity, Task, TaskQueue
from tq_aws.backends.clock import SystemClock
from tq_aws.backends.memory import (
    MemoryBlobStore,
    MemoryProjectionStore,
    MemoryScheduler,
    MemoryTaskStore,
    MemoryTransport,
)
from tq_aws.errors import TaskValidationError
from tq_aws.testing import DEFAULT_START, ManualClock


async def test_issue_snippet_end_to_end() -> None:
    clock = ManualClock()
    app = TaskQueue(clock=clock)
    sent: list[dict[str, str]] = []
    resized: list[str] = []
    aggregated: list[int] = []
    main_thread = threading.get_ident()
    resize_threads: set[int] = set()

    @app.executor("emails", "send", retries=2, retry_after=1.0, store_on_failure=True)
    async def send(task: Task, actions: tq_aws.Actions) -> None:
        sent.append(task.payload)
        actions.success(task, {"message_id": "m-1"})

    @app.executor("media", "resize", parallel=True, chunk_size=4)
    def resize(task: Task, actions: tq_aws.Actions) -> None:
        resize_threads.add(threading.get_ident())
        resized.append(task.payload)
        actions.success(task)

    @app.batch_executor("reports", "aggregate")
    async def aggregate(tasks: list[Task], actions: tq_aws.Actions) -> None:
        aggregated.append(len(tasks))
        for t in tasks:
            actions.success(t, {"n": len(tasks)})

    user = Entity(id="u-1", type="user")
    ids = await app.add_tasks(
        [Task(type="send", queue_id="emails", payload={"to": "a@b.c"}, entity=user)]
    )
    more = await app.add_tasks(
        [Task(type="resize", queue_id="media", payload=f"img-{i}") for i in range(5)]
        + [Task(type="aggregate", queue_id="reports", payload=i) for i in range(3)]
    )
    batches = await app.run_until_idle()

    assert len(ids) == 1 and len(more) == 8
    assert sent == [{"to": "a@b.c"}]
    assert sorted(resized) == [f"img-{i}" for i in range(5)]
    assert main_thread not in resize_threads
    assert aggregated == [3]
    assert batches == 3
    # A plain immediate success leaves no task record...
    assert await app.get_task(ids[0]) is None
    # ...but the entity projection tells its story.
    rows = await app.entity_status(user)
    assert [(r.task_id, r.status, r.error, r.result) for r in rows] == [
        (ids[0], "executed", None, {"message_id": "m-1"})
    ]
    assert clock.now() == DEFAULT_START


async def test_task_queue_without_arguments_uses_memory_backends_and_real_clock() -> None:
    app = TaskQueue()
    assert isinstance(app.clock, SystemClock)
    assert isinstance(app.transport, MemoryTransport)
    assert isinstance(app.task_store, MemoryTaskStore)
    assert isinstance(app.projection_store, MemoryProjectionStore)
    assert isinstance(app.scheduler, MemoryScheduler)
    assert isinstance(app.blob_store, MemoryBlobStore)
    assert app.batch_size == 100
    seen: list[str | None] = []

    @app.executor("q", "t")
    async def run(task: Task, actions: tq_aws.Actions) -> None:
        seen.append(task.id)
        actions.success(task)

    ids = await app.add_tasks([Task(type="t", queue_id="q")])
    assert await app.run_until_idle() == 1
    assert seen == ids


async def test_run_until_idle_never_moves_the_clock(app: TaskQueue, clock: ManualClock) -> None:
    @app.executor("q", "t", retries=1, retry_after=5)
    async def run(task: Task, actions: tq_aws.Actions) -> None:
        actions.fail(task, "no")

    await app.add_tasks([Task(type="t", queue_id="q")])
    before = clock.now()
    await app.run_until_idle()
    await app.run_until_idle()
    assert clock.now() == before
    assert app.scheduler.next_due() is not None  # the retry waits for the clock


async def test_run_until_idle_returns_zero_when_nothing_is_due(app: TaskQueue) -> None:
    assert await app.run_until_idle() == 0


async def test_get_task_and_entity_status_awaited_inside_an_executor(app: TaskQueue) -> None:
    user = Entity(id="u-9", type="user")
    seen: dict[str, object] = {}

    @app.executor("q", "stored")
    async def stored(task: Task, actions: tq_aws.Actions) -> None:
        actions.success(task, "stored-result")

    @app.executor("q", "reader")
    async def reader(task: Task, actions: tq_aws.Actions) -> None:
        record = await app.get_task(task.payload)
        rows = await app.entity_status(user)
        seen["status"] = record.status if record else None
        seen["result"] = record.execution_result if record else None
        seen["rows"] = [(r.task_id, r.status) for r in rows]
        actions.success(task)

    [stored_id] = await app.add_tasks(
        [Task(type="stored", queue_id="q", force_store=True, entity=user)]
    )
    await app.run_until_idle()
    await app.add_tasks([Task(type="reader", queue_id="q", payload=stored_id)])
    await app.run_until_idle()
    assert seen == {
        "status": "executed",
        "result": "stored-result",
        "rows": [(stored_id, "executed")],
    }


def test_public_names_are_exported() -> None:
    for name in ("TaskQueue", "Task", "Entity", "TaskStatus", "LifecycleListener", "Actions"):
        assert name in tq_aws.__all__
        assert getattr(tq_aws, name) is not None
    assert issubclass(TaskValidationError, ValueError)
    assert tq_aws.TaskValidationError is TaskValidationError


def test_an_empty_store_given_to_the_app_is_the_one_it_uses() -> None:
    from tq_aws.backends.memory import MemoryPoisonStore, MemoryTaskStore, MemoryTransport

    tasks, poison, transport = MemoryTaskStore(), MemoryPoisonStore(), MemoryTransport()
    app = TaskQueue(task_store=tasks, poison_store=poison, transport=transport)
    assert app.ports.task_store is tasks
    assert app.ports.poison_store is poison
    assert app.ports.transport is transport
