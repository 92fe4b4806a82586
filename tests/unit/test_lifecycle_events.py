"""Lifecycle events: each event's payload and their order, for sequential, parallel, batch and
flow runs, workers and consumers; the two delivery modes; providers as plain objects."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from datetime import timedelta
from typing import Any

import pytest

from tests.support.events import make_task
from tq_aws import Actions, Entity, Join, LifecycleListener, Task, TaskQueue, TaskStatus
from tq_aws.core.actions import NO_DECISION
from tq_aws.core.flows import join_task_id
from tq_aws.core.lifecycle import (
    BatchCompleted,
    BatchStarted,
    ConsumerStarted,
    ConsumerStopped,
    FlowAborted,
    FlowClosed,
    FlowCompleted,
    FlowStarted,
    FlowTimedOut,
    LifecycleEvent,
    TaskBatchCompleted,
    TaskBatchStarted,
    TaskCompleted,
    TaskExhausted,
    TaskFailed,
    TaskScheduled,
    TaskStarted,
    TaskTiming,
    WorkerHeartbeat,
    WorkerStarted,
    WorkerStopped,
)
from tq_aws.errors import PermanentFailure
from tq_aws.testing import FaultInjector, InjectedCrash, ManualClock

JOIN = Join(queue_id="q", type="done")


class Log:
    """A provider that is a plain object: one method, every event, in order."""

    def __init__(self) -> None:
        self.events: list[LifecycleEvent] = []

    def on_event(self, event: LifecycleEvent) -> None:
        self.events.append(event)

    def names(self) -> list[str]:
        return [e.name for e in self.events]

    def of(self, kind: type[Any]) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]

    def task_events(self) -> list[tuple[str, str]]:
        return [(e.name, e.task_id) for e in self.events if hasattr(e, "task_id")]


@pytest.fixture
def log(app: TaskQueue) -> Log:
    provider = Log()
    app.add_listener(provider)
    return provider


# -- sequential runs ---------------------------------------------------------------------------


async def test_a_retried_task_tells_each_attempt_with_its_real_error_and_next_attempt(
    app: TaskQueue, clock: ManualClock, log: Log
) -> None:
    @app.executor("q", "t", retries=1, retry_after=2)
    async def run(task: Task, actions: Actions) -> None:
        clock.advance(3)  # each attempt takes 3 s of the app's clock
        if task.retry_count == 0:
            raise RuntimeError("upstream answered 503")
        actions.success(task, {"n": 1})

    added = clock.now()
    [tid] = await app.add_tasks([make_task(partition_key="k-1")])
    await app.run_until_idle()
    due = added + timedelta(seconds=3 + 2)  # the attempt, then retry_after * 1**2
    clock.set(due)
    await app.run_until_idle()

    assert log.names() == [
        "task_scheduled",
        "batch_started",
        "task_started",
        "task_failed",
        "batch_completed",
        "batch_started",
        "task_started",
        "task_completed",
        "batch_completed",
    ]
    scheduled, first_batch, first, failed, first_done, _, second, completed, _ = log.events
    assert scheduled == TaskScheduled(
        task_id=tid,
        task_type="t",
        queue_id="q",
        attempt=1,
        max_retries=1,
        scheduled_at=added,
        worker_id="w-1",
        partition_key="k-1",
        execute_at=added,
        stored=False,
        task=scheduled.task,
    )
    assert isinstance(first_batch, BatchStarted)
    assert (first_batch.queue_id, first_batch.batch_size, first_batch.task_types) == (
        "q",
        1,
        ("t",),
    )
    assert (first_batch.worker_id, first_batch.hostname, first_batch.pid) == (
        "w-1",
        socket.gethostname(),
        os.getpid(),
    )
    assert isinstance(first, TaskStarted)
    assert (first.attempt, first.started_at, first.queued_duration_ms) == (1, added, 0.0)

    assert isinstance(failed, TaskFailed)
    assert failed.error == "upstream answered 503"
    assert failed.stack is not None and "RuntimeError" in failed.stack
    assert (failed.attempt, failed.max_retries, failed.will_retry) == (1, 1, True)
    assert failed.next_attempt_at == due and not failed.permanent
    assert failed.timing == TaskTiming(
        queued_duration_ms=0.0, processing_duration_ms=3000.0, total_duration_ms=3000.0
    )
    assert isinstance(first_done, BatchCompleted)
    assert (first_done.batch_size, first_done.succeeded, first_done.failed) == (1, 0, 1)

    assert isinstance(second, TaskStarted)
    assert (second.attempt, second.queued_duration_ms) == (2, 5000.0)
    assert isinstance(completed, TaskCompleted)
    assert completed.result == {"n": 1} and completed.attempt == 2
    assert completed.timing == TaskTiming(
        queued_duration_ms=5000.0, processing_duration_ms=3000.0, total_duration_ms=8000.0
    )
    assert completed.fields()["timing"]["processing_duration_ms"] == 3000.0
    assert "result" not in completed.fields() and "task" not in completed.fields()


async def test_every_task_that_runs_out_of_retries_is_exhausted(
    app: TaskQueue, clock: ManualClock, log: Log
) -> None:
    @app.executor("q", "t", retries=1, retry_after=1)
    async def run(task: Task, actions: Actions) -> None:
        if task.payload == "permanent":
            raise PermanentFailure("card declined")
        actions.fail(task, f"attempt {task.retry_count + 1} failed")

    ids = await app.add_tasks(
        [
            make_task(),  # plain: never stored until it fails for good
            make_task(force_store=True),
            make_task(entity=Entity(id="u-1", type="user")),
            make_task(payload="permanent", retries=3),
        ]
    )
    for _ in range(3):
        await app.run_until_idle()
        clock.advance(60)

    exhausted = {e.task_id: e for e in log.of(TaskExhausted)}
    assert list(exhausted) == ids[3:] + ids[:3]  # the permanent one fails for good at once
    for tid in ids[:3]:
        e = exhausted[tid]
        assert (e.total_attempts, e.error, e.permanent) == (2, "attempt 2 failed", False)
        assert (await app.get_task(tid)).status is TaskStatus.FAILED
    permanent = exhausted[ids[3]]
    assert (permanent.total_attempts, permanent.error, permanent.permanent) == (
        1,
        "card declined",
        True,
    )
    finals = [e for e in log.of(TaskFailed) if not e.will_retry]
    assert [e.task_id for e in finals] == list(exhausted)
    assert all(e.next_attempt_at is None for e in finals)
    # each final failure is told first, then its exhausted event
    told = log.task_events()
    for tid in exhausted:
        at = told.index(("task_exhausted", tid))
        assert told[at - 1] == ("task_failed", tid)


# -- parallel and batch executors ----------------------------------------------------------------


async def test_parallel_chunks_start_every_task_before_outcomes_are_told(
    app: TaskQueue, log: Log
) -> None:
    @app.executor("q", "p", parallel=True, chunk_size=2)
    async def run(task: Task, actions: Actions) -> None:
        await asyncio.sleep(0)
        if task.payload == "bad":
            actions.fail(task, "bad input")
        else:
            actions.success(task, task.payload)

    a, b, c = await app.add_tasks(
        [make_task("p", payload="a"), make_task("p", payload="bad"), make_task("p", payload="c")]
    )
    await app.run_until_idle()
    assert log.task_events() == [
        ("task_scheduled", a),
        ("task_scheduled", b),
        ("task_scheduled", c),
        ("task_started", a),
        ("task_started", b),
        ("task_started", c),
        ("task_completed", a),
        ("task_completed", c),
        ("task_failed", b),
        ("task_exhausted", b),
    ]
    assert [e.result for e in log.of(TaskCompleted)] == ["a", "c"]
    [done] = log.of(BatchCompleted)
    assert (done.batch_size, done.succeeded, done.failed) == (3, 2, 1)
    assert log.names()[3] == "batch_started" and log.names()[-1] == "batch_completed"


async def test_a_batch_executor_is_told_as_one_call_and_each_task_on_its_own(
    app: TaskQueue, log: Log
) -> None:
    @app.batch_executor("q", "b")
    async def run(tasks: list[Task], actions: Actions) -> None:
        actions.success(tasks[0], "ok")
        actions.fail(tasks[1], "bad row")
        # tasks[2] is left undecided: it fails

    x, y, z = await app.add_tasks([make_task("b"), make_task("b"), make_task("b")])
    await app.run_until_idle()
    assert log.names()[3:] == [
        "batch_started",
        "task_batch_started",
        "task_started",
        "task_started",
        "task_started",
        "task_batch_completed",
        "task_completed",
        "task_failed",
        "task_exhausted",
        "task_failed",
        "task_exhausted",
        "batch_completed",
    ]
    [begun] = log.of(TaskBatchStarted)
    assert (begun.task_type, begun.queue_id, begun.task_ids) == ("b", "q", (x, y, z))
    assert [t.task_id for t in begun.tasks] == [x, y, z]
    assert all(t.attempt == 1 for t in begun.tasks)
    [ended] = log.of(TaskBatchCompleted)
    assert (ended.succeeded, ended.failed) == ((x,), (y, z))
    assert ended.duration_ms >= 0
    assert [(e.task_id, e.error) for e in log.of(TaskExhausted)] == [
        (y, "bad row"),
        (z, NO_DECISION),
    ]
    [done] = log.of(BatchCompleted)
    assert (done.batch_size, done.succeeded, done.failed) == (3, 1, 2)


# -- flows ----------------------------------------------------------------------------------------


def _flow_app(app: TaskQueue, clock: ManualClock, **flow: Any) -> dict[str, str]:
    started: dict[str, str] = {}

    @app.executor("q", "parent")
    async def parent(task: Task, actions: Actions) -> None:
        steps = [Task(type="step", queue_id="q", payload=p) for p in task.payload]
        started["flow"] = actions.start_flow(steps, JOIN, **flow)
        actions.success(task)

    @app.executor("q", "step")
    async def step(task: Task, actions: Actions) -> None:
        clock.advance(2)
        if task.payload == "fail":
            actions.fail(task, "step failed")
        else:
            actions.success(task, task.payload)

    @app.executor("q", "done")
    async def done(task: Task, actions: Actions) -> None:
        actions.success(task)

    return started


async def test_a_flow_tells_its_start_its_steps_and_its_join(
    app: TaskQueue, clock: ManualClock, log: Log
) -> None:
    started = _flow_app(app, clock)
    at = clock.now()
    [parent] = await app.add_tasks([make_task("parent", payload=["a", "b"])])
    await app.run_until_idle()
    flow_id = started["flow"]
    join_id = join_task_id(flow_id)

    [begun] = log.of(FlowStarted)
    assert begun == FlowStarted(
        flow_id=flow_id,
        total_steps=2,
        join=JOIN,
        failure_policy="continue",
        entity=None,
        worker_id="w-1",
        parent_task_id=parent,
        started_at=at,
        step_types=("step",),
    )
    [closed] = log.of(FlowCompleted)
    assert (closed.state, closed.steps_succeeded, closed.steps_failed) == ("joined", 2, 0)
    assert (closed.steps_completed, closed.join_task_id) == (2, join_id)
    assert (closed.duration_ms, closed.finished_at) == (4000.0, at + timedelta(seconds=4))

    steps = [
        e.task_id for e in log.of(TaskScheduled) if e.flow_id == flow_id and e.task_id != join_id
    ]
    assert len(steps) == 2
    order = [(e.name, getattr(e, "task_id", getattr(e, "flow_id", ""))) for e in log.events]
    order = [x for x in order if x[0] not in ("batch_started", "batch_completed")]
    assert order == [
        ("task_scheduled", parent),
        ("task_started", parent),
        ("flow_started", flow_id),
        ("task_scheduled", steps[0]),
        ("task_scheduled", steps[1]),
        ("task_completed", parent),
        ("task_started", steps[0]),
        ("task_started", steps[1]),
        ("task_completed", steps[0]),
        ("task_completed", steps[1]),
        ("task_scheduled", join_id),
        ("flow_completed", flow_id),
        ("task_started", join_id),
        ("task_completed", join_id),
    ]
    assert {e.flow_id for e in log.of(TaskCompleted) if e.task_id != parent} == {flow_id}


async def test_an_aborted_flow_names_the_step_that_aborted_it(
    app: TaskQueue, clock: ManualClock, log: Log
) -> None:
    closes: list[tuple[str, str, int, int]] = []

    class Closes(LifecycleListener):
        def on_flow_closed(self, flow_id: str, state: str, succeeded: int, failed: int) -> None:
            closes.append((flow_id, state, succeeded, failed))

    app.add_listener(Closes())
    started = _flow_app(app, clock, failure_policy="abort")
    await app.add_tasks([make_task("parent", payload=["a", "fail", "c"])])
    await app.run_until_idle()
    [aborted] = log.of(FlowAborted)
    assert (aborted.flow_id, aborted.state, aborted.trigger_step_index) == (
        started["flow"],
        "aborted",
        1,
    )
    assert (aborted.steps_failed, aborted.failure_policy) == (1, "abort")
    assert closes == [(started["flow"], "aborted", aborted.steps_succeeded, 1)]


async def test_a_flow_past_its_deadline_is_told_timed_out(
    app: TaskQueue, clock: ManualClock, log: Log
) -> None:
    started: dict[str, str] = {}

    @app.executor("q", "parent")
    async def parent(task: Task, actions: Actions) -> None:
        later = clock.now() + timedelta(hours=1)
        steps = [Task(type="step", queue_id="q", execute_at=later) for _ in range(2)]
        started["flow"] = actions.start_flow(steps, JOIN, timeout=5)
        actions.success(task)

    app.executor("q", "step")(lambda task, actions: actions.success(task))
    app.executor("q", "done")(lambda task, actions: actions.success(task))
    at = clock.now()
    await app.add_tasks([make_task("parent")])
    await app.run_until_idle()
    clock.advance(5)
    await app.run_until_idle()
    [timed_out] = log.of(FlowTimedOut)
    assert (timed_out.flow_id, timed_out.state, timed_out.steps_completed) == (
        started["flow"],
        "timed_out",
        0,
    )
    assert timed_out.duration_ms == 5000.0 and timed_out.started_at == at
    [begun] = log.of(FlowStarted)
    assert begun.deadline == at + timedelta(seconds=5)
    assert all(isinstance(e, FlowClosed) for e in log.of(FlowTimedOut))


# -- delivery modes --------------------------------------------------------------------------------


class SlowStart:
    """Marks a task as seen only after giving the loop away three times."""

    def __init__(self) -> None:
        self.seen: set[str] = set()
        self.completed: list[str] = []

    async def on_task_started(self, event: TaskStarted) -> None:
        for _ in range(3):
            await asyncio.sleep(0)
        self.seen.add(event.task_id)

    async def on_task_completed(self, event: TaskCompleted) -> None:
        await asyncio.sleep(0)
        self.completed.append(event.task_id)


@pytest.mark.parametrize(("mode", "awaited"), [("sync", True), ("async", False)])
async def test_sync_mode_awaits_async_methods_and_the_default_does_not(
    app: TaskQueue, mode: str, awaited: bool
) -> None:
    provider = SlowStart()
    app.add_listener(provider, mode=mode)  # type: ignore[arg-type]
    saw: list[bool] = []

    @app.executor("q", "t")
    def run(task: Task, actions: Actions) -> None:
        saw.append(task.id in provider.seen)  # has the provider handled this start yet?
        actions.success(task)

    ids = await app.add_tasks([make_task(), make_task()])
    await app.run_until_idle()
    assert saw == [awaited, awaited]
    # the background ones have ended by the time run_until_idle returns
    assert provider.seen == set(ids) and provider.completed == ids
    assert app.events.pending == 0


async def test_a_failing_provider_never_disturbs_processing(
    app: TaskQueue, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken:
        name = "broken-metrics"

        def on_task_started(self, event: TaskStarted) -> None:
            raise RuntimeError("provider bug")

        async def on_task_completed(self, event: TaskCompleted) -> None:
            raise ValueError("async provider bug")

    class SyncBroken:
        async def on_batch_completed(self, event: BatchCompleted) -> None:
            raise KeyError("sync-mode provider bug")

    after = Log()
    app.add_listener(Broken())
    app.add_listener(SyncBroken(), mode="sync")
    app.add_listener(after)

    @app.executor("q", "t")
    async def run(task: Task, actions: Actions) -> None:
        actions.success(task, "done")

    ids = await app.add_tasks([make_task(force_store=True), make_task(force_store=True)])
    with caplog.at_level(logging.DEBUG, logger="tq_aws"):
        await app.run_until_idle()
    for tid in ids:
        assert (await app.get_task(tid)).status is TaskStatus.EXECUTED
    assert [e.task_id for e in after.of(TaskCompleted)] == ids
    assert after.names().count("batch_completed") == 1
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR and "listener" in r.message]
    assert sorted((r.args[0], r.args[1]) for r in errors) == [  # type: ignore[index]
        ("SyncBroken", "on_batch_completed"),
        ("broken-metrics", "on_task_completed"),
        ("broken-metrics", "on_task_started"),
    ]
    assert all(r.exc_info for r in errors)  # once per method, with the traceback
    assert app.events.failures == {
        ("broken-metrics", "on_task_started"): 2,
        ("broken-metrics", "on_task_completed"): 2,
        ("SyncBroken", "on_batch_completed"): 1,
    }


async def test_only_the_methods_a_provider_has_are_called(
    app: TaskQueue, caplog: pytest.LogCaptureFixture
) -> None:
    class OnlyCompleted:
        def __init__(self) -> None:
            self.ids: list[str] = []

        def on_task_completed(self, event: TaskCompleted) -> None:
            self.ids.append(event.task_id)

    class OneHook(LifecycleListener):
        def on_task_failed(self, event: TaskFailed) -> None:  # the event form of a hook
            self.failed = event

    plain, listener = OnlyCompleted(), OneHook()
    app.add_listener(plain)
    app.add_listener(listener)
    app.add_listener(plain)  # once is enough
    assert not app.events.wants("task_started") and not app.events.wants("batch_started")

    @app.executor("q", "t")
    async def run(task: Task, actions: Actions) -> None:
        if task.payload:
            actions.fail(task, "nope")
        else:
            actions.success(task)

    ok, bad = await app.add_tasks([make_task(), make_task(payload=1)])
    with caplog.at_level(logging.DEBUG, logger="tq_aws.core.lifecycle"):
        await app.run_until_idle()
    assert plain.ids == [ok]
    assert listener.failed.task_id == bad and listener.failed.error == "nope"
    lifecycle = [r for r in caplog.records if r.name.startswith("tq_aws.core.lifecycle")]
    assert not lifecycle and not app.events.failures


# -- workers and consumers ---------------------------------------------------------------------


async def until(check: Any, what: str, limit: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while not check():
        if loop.time() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        await asyncio.sleep(0.01)


async def test_run_worker_tells_its_start_heartbeats_consumer_and_stop(
    app: TaskQueue, log: Log
) -> None:
    app.executor("q", "t")(lambda task, actions: actions.success(task))
    app.executor("mail", "t")(lambda task, actions: actions.success(task))
    stop = asyncio.Event()
    worker = asyncio.create_task(app.run_worker(stop, idle_sleep=0.01, heartbeat_seconds=0.01))
    await until(lambda: log.of(ConsumerStarted), "the worker to start")
    [tid] = await app.add_tasks([make_task()])
    await until(lambda: log.of(TaskCompleted), "the task to run")

    def beat_after_the_task() -> bool:
        beats = log.of(WorkerHeartbeat)
        return bool(beats) and beats[-1].stats.tasks_processed == 1

    await until(beat_after_the_task, "a heartbeat counting the task")
    stop.set()
    await worker

    names = log.names()
    assert names[:2] == ["worker_started", "consumer_started"]
    assert names[-2:] == ["consumer_stopped", "worker_stopped"]
    [started] = log.of(WorkerStarted)
    assert (started.worker_id, started.pid, started.enabled_queues) == (
        "w-1",
        os.getpid(),
        ("mail", "q"),
    )
    [consumer] = log.of(ConsumerStarted)
    assert (consumer.consumer_id, consumer.queue_id, consumer.worker_id) == (
        "local",
        "local",
        "w-1",
    )
    assert {e.consumer_id for e in log.of(TaskCompleted)} == {"local"}
    assert {e.consumer_id for e in log.of(BatchStarted)} == {"local"}
    beat = log.of(WorkerHeartbeat)[-1]
    assert (beat.stats.tasks_processed, beat.stats.tasks_succeeded, beat.stats.tasks_failed) == (
        1,
        1,
        0,
    )
    assert beat.memory_usage_mb > 0 and beat.started_at == started.started_at
    assert [(c.consumer_id, c.tasks_processed) for c in beat.active_consumers] == [("local", 1)]
    [gone] = log.of(ConsumerStopped)
    assert (gone.reason, gone.stats.tasks_succeeded, gone.stats.last_task_at) == (
        "shutdown",
        1,
        app.clock.now(),
    )
    [stopped] = log.of(WorkerStopped)
    assert stopped.reason == "shutdown" and stopped.final_stats.tasks_processed == 1
    assert tid in {e.task_id for e in log.of(TaskCompleted)}


async def test_a_worker_that_ends_on_an_error_says_so(app: TaskQueue, log: Log) -> None:
    FaultInjector(crash_rate=1.0, seed=1).install(app)  # every write of a batch fails
    app.executor("q", "t")(lambda task, actions: actions.success(task))
    await app.add_tasks([make_task(entity=Entity(id="u-1", type="user"))])
    log.events.clear()
    with pytest.raises(InjectedCrash):
        await app.run_worker(asyncio.Event(), heartbeat_seconds=None)
    log.events = [e for e in log.events if not e.name.startswith(("batch_", "task_"))]
    assert log.names() == [
        "worker_started",
        "consumer_started",
        "consumer_stopped",
        "worker_stopped",
    ]
    assert [e.reason for e in log.of(WorkerStopped)] == ["error"]
    assert [e.reason for e in log.of(ConsumerStopped)] == ["error"]


def test_every_event_is_documented_with_its_payload() -> None:
    from pathlib import Path

    from tq_aws.core.lifecycle import EVENT_TYPES

    text = (Path(__file__).resolve().parents[2] / "docs" / "observability.md").read_text()
    for event in EVENT_TYPES:
        assert f"| `on_{event.name}` | `{event.__name__}` |" in text, event.name


async def test_a_provider_that_hangs_is_not_waited_for_past_the_drain_limit(
    app: TaskQueue, caplog: pytest.LogCaptureFixture
) -> None:
    never = asyncio.Event()

    class Hangs:
        async def on_task_completed(self, event: TaskCompleted) -> None:
            await never.wait()

    app.add_listener(Hangs())
    app.events.drain_timeout = 0.05
    app.executor("q", "t")(lambda task, actions: actions.success(task))
    [tid] = await app.add_tasks([make_task(force_store=True)])
    await app.run_until_idle()  # returns although the provider still runs
    assert (await app.get_task(tid)).status is TaskStatus.EXECUTED
    assert app.events.pending == 1
    assert any("still running" in r.getMessage() for r in caplog.records)
    never.set()
    assert await app.events.drain() and app.events.pending == 0
