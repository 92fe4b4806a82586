"""Executor kinds, registration options, batching, ordering and partition keys."""

from __future__ import annotations

import asyncio
import functools
import gc
import threading
import warnings
from datetime import timedelta
from typing import Any

import pytest
from pydantic import BaseModel

from tests.support.events import USER, EventRecorder, make_task
from tq_aws import Actions, Task, TaskQueue, TaskStatus
from tq_aws.core.actions import NO_DECISION
from tq_aws.errors import ConfigurationError
from tq_aws.testing import ManualClock


class Concurrency:
    """Counts calls running at the same time (thread-safe)."""

    def __init__(self) -> None:
        self.active = 0
        self.peak = 0
        self.finished = 0
        self.finished_at_start: list[int] = []
        self._lock = threading.Lock()

    def enter(self) -> None:
        with self._lock:
            self.active += 1
            self.peak = max(self.peak, self.active)
            self.finished_at_start.append(self.finished)

    def leave(self) -> None:
        with self._lock:
            self.active -= 1
            self.finished += 1


# -- kinds ---------------------------------------------------------------------------------


async def test_sequential_executor_runs_one_at_a_time_in_delivery_order(app: TaskQueue) -> None:
    counter = Concurrency()
    order: list[int] = []

    @app.executor("q", "t")
    async def run(task: Task, actions: Actions) -> None:
        counter.enter()
        for _ in range(3):
            await asyncio.sleep(0)
        order.append(task.payload)
        counter.leave()
        actions.success(task)

    await app.add_tasks([make_task(payload=i) for i in range(6)])
    await app.run_until_idle()
    assert order == list(range(6))
    assert counter.peak == 1


async def test_sync_sequential_executor_runs_inline_on_the_loop_thread(app: TaskQueue) -> None:
    threads: list[int] = []

    @app.executor("q", "t")
    def run(task: Task, actions: Actions) -> None:
        threads.append(threading.get_ident())
        actions.success(task)

    await app.add_tasks([make_task(), make_task()])
    await app.run_until_idle()
    assert threads == [threading.get_ident()] * 2


async def test_parallel_async_executor_runs_chunks_of_chunk_size(app: TaskQueue) -> None:
    counter = Concurrency()

    @app.executor("q", "t", parallel=True, chunk_size=4)
    async def run(task: Task, actions: Actions) -> None:
        counter.enter()
        for _ in range(5):
            await asyncio.sleep(0)
        counter.leave()
        actions.success(task)

    await app.add_tasks([make_task(payload=i) for i in range(10)])
    await app.run_until_idle()
    assert counter.peak == 4
    # Chunks run one after another: every task of a chunk starts after the previous chunk ended.
    assert counter.finished_at_start == [0] * 4 + [4] * 4 + [8] * 2
    assert app.stats.executed == 10


async def test_parallel_sync_executor_runs_chunks_in_worker_threads(app: TaskQueue) -> None:
    counter = Concurrency()
    barrier = threading.Barrier(3, timeout=10)
    threads: set[int] = set()

    @app.executor("q", "t", parallel=True, chunk_size=3)
    def run(task: Task, actions: Actions) -> None:
        threads.add(threading.get_ident())
        counter.enter()
        barrier.wait()  # passes only when a whole chunk runs at the same time
        counter.leave()
        actions.success(task)

    await app.add_tasks([make_task(payload=i) for i in range(6)])
    await app.run_until_idle()
    assert app.stats.executed == 6 and app.stats.failed == 0
    assert counter.peak == 3
    assert sorted(counter.finished_at_start) == [0, 0, 0, 3, 3, 3]
    assert threading.get_ident() not in threads


async def test_parallel_chunk_size_defaults_to_ten(app: TaskQueue) -> None:
    counter = Concurrency()

    @app.executor("q", "t", parallel=True)
    async def run(task: Task, actions: Actions) -> None:
        counter.enter()
        for _ in range(3):
            await asyncio.sleep(0)
        counter.leave()
        actions.success(task)

    await app.add_tasks([make_task() for _ in range(25)])
    await app.run_until_idle()
    assert counter.peak == 10
    assert app.registry.get("q", "t").chunk_size == 10


async def test_parallel_task_failure_does_not_affect_its_chunk(app: TaskQueue) -> None:
    @app.executor("q", "t", parallel=True, chunk_size=3)
    async def run(task: Task, actions: Actions) -> None:
        await asyncio.sleep(0)
        if task.payload == 1:
            raise RuntimeError("one bad apple")
        actions.success(task, task.payload)

    ids = await app.add_tasks([make_task(payload=i, force_store=True) for i in range(3)])
    await app.run_until_idle()
    records = [await app.get_task(i) for i in ids]
    assert [r.status for r in records if r] == ["executed", "failed", "executed"]
    assert records[1] is not None and records[1].execution_stats["last_error"] == "one bad apple"


async def test_batch_executor_gets_up_to_batch_size_tasks_at_once(clock: ManualClock) -> None:
    app = TaskQueue(clock=clock, batch_size=3)
    sizes: list[list[int]] = []

    @app.batch_executor("q", "t")
    async def run(tasks: list[Task], actions: Actions) -> None:
        sizes.append([t.payload for t in tasks])
        for t in tasks:
            actions.success(t)

    await app.add_tasks([make_task(payload=i) for i in range(7)])
    assert await app.run_until_idle() == 3
    assert sizes == [[0, 1, 2], [3, 4, 5], [6]]


async def test_batch_groups_by_type_in_order_of_first_appearance(app: TaskQueue) -> None:
    calls: list[tuple[str, list[int]]] = []

    @app.batch_executor("q", "a")
    async def run_a(tasks: list[Task], actions: Actions) -> None:
        calls.append(("a", [t.payload for t in tasks]))
        for t in tasks:
            actions.success(t)

    @app.executor("q", "b")
    async def run_b(task: Task, actions: Actions) -> None:
        calls.append(("b", [task.payload]))
        actions.success(task)

    types = ["b", "a", "b", "a"]
    await app.add_tasks([make_task(t, payload=n) for n, t in enumerate(types)])
    assert await app.run_until_idle() == 1
    assert calls == [("b", [0]), ("b", [2]), ("a", [1, 3])]


async def test_sync_batch_executor(app: TaskQueue) -> None:
    @app.batch_executor("q", "t")
    def run(tasks: list[Task], actions: Actions) -> None:
        for t in tasks:
            actions.success(t, t.payload * 2)

    ids = await app.add_tasks([make_task(payload=i, force_store=True) for i in range(3)])
    await app.run_until_idle()
    results = [(await app.get_task(i)).execution_result for i in ids]
    assert results == [0, 2, 4]


async def test_batch_executor_undecided_tasks_fail(app: TaskQueue) -> None:
    @app.batch_executor("q", "t")
    async def run(tasks: list[Task], actions: Actions) -> None:
        actions.success(tasks[0])

    ids = await app.add_tasks([make_task(force_store=True) for _ in range(3)])
    await app.run_until_idle()
    records = [await app.get_task(i) for i in ids]
    assert [r.status for r in records] == ["executed", "failed", "failed"]
    assert records[1].execution_stats["last_error"] == NO_DECISION
    assert app.stats.failed == 2 and app.stats.executed == 1


async def test_batch_executor_raising_fails_undecided_and_keeps_decided(app: TaskQueue) -> None:
    @app.batch_executor("q", "t")
    async def run(tasks: list[Task], actions: Actions) -> None:
        actions.success(tasks[0], "done")
        actions.fail(tasks[1], "own reason")
        raise ValueError("batch blew up")

    ids = await app.add_tasks([make_task(force_store=True) for _ in range(3)])
    await app.run_until_idle()
    r0, r1, r2 = [await app.get_task(i) for i in ids]
    assert (r0.status, r0.execution_result) == ("executed", "done")
    assert (r1.status, r1.execution_stats["last_error"]) == ("failed", "own reason")
    assert "last_error_stack" not in r1.execution_stats
    assert (r2.status, r2.execution_stats["last_error"]) == ("failed", "batch blew up")
    assert "ValueError: batch blew up" in r2.execution_stats["last_error_stack"]


async def test_lifecycle_batch_events_report_sizes(app: TaskQueue, events: EventRecorder) -> None:
    @app.executor("q", "t")
    async def run(task: Task, actions: Actions) -> None:
        if task.payload:
            actions.success(task)
        else:
            actions.fail(task, "no")

    await app.add_tasks([make_task(payload=p) for p in (True, False, True)])
    await app.run_until_idle()
    assert events.of("batch_started") == [("batch_started", "q", 3)]
    assert events.of("batch_completed") == [("batch_completed", "q", 3, 2, 1)]


# -- unknown executors ---------------------------------------------------------------------


async def test_unknown_executor_is_ignored_and_the_rest_of_the_batch_runs(
    app: TaskQueue, events: EventRecorder
) -> None:
    ran: list[str] = []

    @app.executor("q", "known")
    async def run(task: Task, actions: Actions) -> None:
        ran.append(task.id)
        actions.success(task)

    ids = await app.add_tasks(
        [make_task("known"), make_task("nobody", entity=USER), make_task("known")]
    )
    assert await app.run_until_idle() == 1
    assert ran == [ids[0], ids[2]]
    record = await app.get_task(ids[1])
    assert record is not None and record.status is TaskStatus.IGNORED
    assert record.execution_stats["ignored_reason"] == "unknown_executor"
    assert app.stats.ignored == 1 and app.stats.executed == 2
    rows = await app.entity_status(USER)
    assert [(r.task_id, r.status, r.error) for r in rows] == [
        (ids[1], "ignored", "unknown_executor")
    ]
    assert events.of("ignored") == [("ignored", ids[1], "unknown_executor")]


# -- registration --------------------------------------------------------------------------


class Model(BaseModel):
    x: int


@pytest.mark.parametrize(
    ("queue_id", "type_", "options"),
    [
        ("q", "t", {"parallel": True, "chunk_size": 0}),
        ("q", "t", {"parallel": True, "chunk_size": -3}),
        ("q", "t", {"parallel": True, "chunk_size": True}),
        ("q", "t", {"chunk_size": 4}),
        ("q", "t", {"retries": -1}),
        ("q", "t", {"retries": 1.5}),
        ("q", "t", {"retry_after": -1}),
        ("", "t", {}),
        ("q", "", {}),
        ("q", "t", {"partition_key": "user"}),
        ("q", "t", {"payload_model": dict}),
    ],
)
def test_invalid_executor_options_raise_configuration_error(
    app: TaskQueue, queue_id: str, type_: str, options: dict[str, Any]
) -> None:
    def fn(task: Task, actions: Actions) -> None:
        pass

    with pytest.raises(ConfigurationError):
        app.executor(queue_id, type_, **options)(fn)
    assert len(app.registry) == 0


def test_non_callable_executor_is_rejected(app: TaskQueue) -> None:
    with pytest.raises(ConfigurationError):
        app.batch_executor("q", "t")("not a function")


@pytest.mark.parametrize("size", [0, -1, True, 2.5])
def test_invalid_batch_size_is_rejected(size: Any) -> None:
    with pytest.raises(ConfigurationError):
        TaskQueue(batch_size=size)


async def test_registering_again_replaces_the_executor(
    app: TaskQueue, caplog: pytest.LogCaptureFixture
) -> None:
    ran: list[str] = []

    @app.executor("q", "t")
    async def first(task: Task, actions: Actions) -> None:
        ran.append("first")
        actions.success(task)

    @app.executor("q", "t")
    async def second(task: Task, actions: Actions) -> None:
        ran.append("second")
        actions.success(task)

    await app.add_tasks([make_task()])
    await app.run_until_idle()
    assert ran == ["second"]
    assert len(app.registry) == 1
    assert "registered again" in caplog.text


def test_executor_decorator_returns_the_function(app: TaskQueue) -> None:
    async def fn(task: Task, actions: Actions) -> None:
        pass

    assert app.executor("q", "t")(fn) is fn
    assert app.batch_executor("q", "b")(fn) is fn
    assert app.registry.get("q", "t").is_async is True


# -- partition keys and ordering -----------------------------------------------------------


async def test_partition_key_is_set_on_every_dispatch_path(
    app: TaskQueue, clock: ManualClock
) -> None:
    seen: dict[str, list[tuple[int, str | None]]] = {}

    def key(task: Task) -> str:
        return f"user-{task.payload['user']}"

    @app.executor("q", "t", partition_key=key, retries=1, retry_after=1)
    async def run(task: Task, actions: Actions) -> None:
        seen.setdefault(task.payload["path"], []).append((task.retry_count, task.partition_key))
        if task.payload["path"] == "parent":
            actions.add_tasks([make_task(payload={"user": 7, "path": "child"})])
        if task.payload["path"] == "retry" and task.retry_count == 0:
            actions.fail(task, "again")
            return
        actions.success(task)

    await app.add_tasks(
        [
            make_task(payload={"user": 1, "path": "immediate"}),
            make_task(
                payload={"user": 2, "path": "future"}, execute_at=clock.now() + timedelta(seconds=5)
            ),
            make_task(payload={"user": 3, "path": "stored"}, force_store=True),
            make_task(payload={"user": 4, "path": "retry"}),
            make_task(payload={"user": 5, "path": "parent"}),
        ]
    )
    await app.run_until_idle()
    clock.advance(seconds=5)
    await app.run_until_idle()
    assert seen == {
        "immediate": [(0, "user-1")],
        "future": [(0, "user-2")],
        "stored": [(0, "user-3")],
        "retry": [(0, "user-4"), (1, "user-4")],
        "parent": [(0, "user-5")],
        "child": [(0, "user-7")],
    }


async def test_partition_key_that_returns_an_empty_key_is_a_configuration_error(
    app: TaskQueue,
) -> None:
    @app.executor("q", "t", partition_key=lambda task: "")
    async def run(task: Task, actions: Actions) -> None:
        actions.success(task)

    with pytest.raises(ConfigurationError):
        await app.add_tasks([make_task()])
    assert app.transport.pending() == 0


async def test_order_is_kept_per_partition_key_across_batches(clock: ManualClock) -> None:
    app = TaskQueue(clock=clock, batch_size=2)
    order: dict[str, list[int]] = {}

    @app.executor("q", "t", partition_key=lambda task: task.payload["key"])
    async def run(task: Task, actions: Actions) -> None:
        order.setdefault(task.partition_key, []).append(task.payload["n"])
        actions.success(task)

    tasks = [make_task(payload={"key": k, "n": n}) for n in range(5) for k in ("a", "b", "c")]
    await app.add_tasks(tasks)
    assert await app.run_until_idle() == 8
    assert order == {k: list(range(5)) for k in ("a", "b", "c")}


async def test_partial_of_an_async_function_is_awaited(app: TaskQueue) -> None:
    sent: list[tuple[str, str | None]] = []

    async def send(prefix: str, task: Task, actions: Actions) -> None:
        sent.append((prefix, task.id))
        actions.success(task)

    app.executor("q", "t")(functools.partial(send, "p"))
    ids = await app.add_tasks([make_task(force_store=True)])
    await app.run_until_idle()
    assert sent == [("p", ids[0])]
    assert (await app.get_task(ids[0])).status is TaskStatus.EXECUTED


async def test_callable_object_with_async_call_is_awaited(app: TaskQueue) -> None:
    class Sender:
        def __init__(self) -> None:
            self.sent: list[str | None] = []

        async def __call__(self, task: Task, actions: Actions) -> None:
            self.sent.append(task.id)
            actions.success(task)

    sender = Sender()
    app.executor("q", "t")(sender)
    ids = await app.add_tasks([make_task(force_store=True)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # "coroutine was never awaited"
        await app.run_until_idle()
        gc.collect()
    assert sender.sent == ids
    assert (await app.get_task(ids[0])).status is TaskStatus.EXECUTED
