"""The engine end to end on AWS (moto over real HTTP on 127.0.0.1) against the embedded default.

Part 1 runs representative scenarios on three apps with the same assertions: the embedded
``TaskQueue(clock=...)``, ``TaskQueue.aws(stream=..., ...)`` and ``TaskQueue.aws(queue_url=...)``.
Schedules are fired by ``run_until_idle`` (simulated firing on loopback) at the clock's now, so
"due" means the same on every app; on AWS a schedule fires up to a minute late, never early.

Part 2 sends 1,000 tasks through Kinesis and SQS at once (plain, entity, retrying, failing,
future and cancelled tasks, children, and three flows) and checks where each one ended, what
DynamoDB holds, and how many requests the plain tasks cost.
"""

from __future__ import annotations

import asyncio
import math
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any

import pytest

from tq_aws import Actions, Entity, Join, Task, TaskQueue, TaskStatus
from tq_aws.core.codec import encode_task
from tq_aws.engine import blobs
from tq_aws.ports import Delivery
from tq_aws.testing import ManualClock
from tq_aws.testing.moto import MotoServer

REGION = "us-east-1"
ACCOUNT = "123456789012"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/tq"
USER = Entity(id="u-1", type="user")
ORDER = Entity(id="o-1", type="order")

MakeApp = Callable[..., Awaitable[TaskQueue]]
POLICIES = ("continue", "abort")


# -- a moto server whose Kinesis writes do not race ------------------------------------------


@pytest.fixture(scope="session")
def _safe_moto() -> Iterator[MotoServer]:
    """moto with Kinesis ``PutRecord(s)`` one at a time, so that no record is lost."""
    with MotoServer(serialize="kinesis_puts") as server:
        yield server


@pytest.fixture
def endpoint(_safe_moto: MotoServer) -> str:
    """The moto endpoint on loopback, reset for this test."""
    _safe_moto.reset()
    return _safe_moto.endpoint


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def aws_app(
    endpoint: str,
    clock: ManualClock,
    *,
    stream: bool = True,
    queue: bool = False,
    sqs_queues: Any = None,
    **options: Any,
) -> TaskQueue:
    """``TaskQueue.aws`` on the moto endpoint with fresh resource names."""
    return TaskQueue.aws(
        stream=_name("tq-stream") if stream else None,
        queue_url=f"{endpoint}/{ACCOUNT}/{_name('tq-queue')}" if queue else None,
        sqs_queues=sqs_queues,
        table="tq",
        bucket=_name("tq-bucket"),
        scheduler_group="tq",
        scheduler_role_arn=ROLE,
        region=REGION,
        endpoint_url=endpoint,
        clock=clock,
        **options,
    )


@pytest.fixture(params=["memory", "kinesis", "sqs"])
async def make_app(request: pytest.FixtureRequest) -> AsyncIterator[MakeApp]:
    """``await make_app(clock, aws={...}, **options)``: the embedded app, or an AWS app on moto
    (all on Kinesis, or all on one SQS queue) with its resources created; ``aws`` holds options
    of ``TaskQueue.aws`` only."""
    kind = request.param
    url = None if kind == "memory" else request.getfixturevalue("endpoint")
    apps: list[TaskQueue] = []

    async def make(
        clock: ManualClock, *, aws: dict[str, Any] | None = None, **options: Any
    ) -> TaskQueue:
        if url is None:
            app = TaskQueue(clock=clock, **options)
        else:
            kw = {**(aws or {}), **options}
            app = aws_app(url, clock, stream=kind == "kinesis", queue=kind == "sqs", **kw)
            await app.ensure_resources()
        apps.append(app)
        return app

    yield make
    for app in apps:
        await app.aclose()
        stop_sync_producer(app)


def stop_sync_producer(app: TaskQueue) -> None:
    """Stop the private loop ``add_tasks_sync`` started (``aclose`` leaves it running)."""
    loop = app._sync_loop
    if loop is None:
        return
    if app.resources is not None:
        asyncio.run_coroutine_threadsafe(app.resources.clients.aclose(), loop).result(timeout=10)
    loop.call_soon_threadsafe(loop.stop)


async def put_raw(app: TaskQueue, queue_id: str, data: bytes) -> None:
    """Put bytes that are not a task record where ``queue_id``'s records travel."""
    if app.resources is None:
        app.transport.put_raw(queue_id, data)  # type: ignore[attr-defined]
        return
    route = app.resources.routing.route(queue_id)
    if hasattr(route, "stream"):
        await asyncio.to_thread(
            app.resources.clients.sync("kinesis").put_record,
            StreamName=route.stream,
            Data=data,
            PartitionKey="poison",
        )
    else:
        await asyncio.to_thread(
            app.resources.clients.sync("sqs").send_message,
            QueueUrl=route.queue_url,
            MessageBody=data.decode(),
        )


# == Part 1: the same scenarios on every app =================================================


async def test_retries_wait_their_backoff_and_never_run_early(make_app: MakeApp) -> None:
    clock = ManualClock()
    app = await make_app(clock)
    seen: list[tuple[int, datetime]] = []

    @app.executor("q", "flaky", retries=2, retry_after=10)
    async def flaky(task: Task, actions: Actions) -> None:
        seen.append((task.retry_count, clock.now()))
        if task.retry_count < 2:
            raise RuntimeError(f"attempt {task.retry_count}")
        actions.success(task, "third time")

    [tid] = await app.add_tasks([Task(type="flaky", queue_id="q")])
    start = clock.now()
    await app.run_until_idle()
    assert seen == [(0, start)]
    # backoff: 10 * 1**2, then 10 * 2**2 seconds after the failed attempt
    for n, delay in ((1, 10), (2, 40)):
        due = clock.now() + timedelta(seconds=delay)
        assert app.next_due() == due
        clock.advance(seconds=delay - 1)
        await app.run_until_idle()
        assert len(seen) == n, f"retry {n} ran before it was due"
        clock.advance(seconds=1)
        await app.run_until_idle()
        assert seen[-1] == (n, due)
    assert app.next_due() is None
    assert await app.get_task(tid) is None  # a plain retried task is never stored
    assert app.stats.retried == 2 and app.stats.executed == 1


async def test_store_on_failure_keeps_each_failed_attempt(make_app: MakeApp) -> None:
    clock = ManualClock()
    app = await make_app(clock)

    @app.executor("q", "send", retries=1, retry_after=5, store_on_failure=True)
    async def send(task: Task, actions: Actions) -> None:
        actions.fail(task, f"smtp down ({task.retry_count})", meta={"server": "mx1"})

    [tid] = await app.add_tasks([Task(type="send", queue_id="q", payload={"to": "a"})])
    await app.run_until_idle()
    between = await app.get_task(tid)
    assert between is not None
    assert between.status is TaskStatus.SCHEDULED
    assert between.retry_count == 1
    assert between.execution_stats["last_error"] == "smtp down (0)"
    assert between.execution_stats["server"] == "mx1"
    assert between.execute_at == clock.now() + timedelta(seconds=5)
    assert between.payload == {"to": "a"}
    clock.advance(seconds=5)
    await app.run_until_idle()
    final = await app.get_task(tid)
    assert final is not None
    assert final.status is TaskStatus.FAILED
    assert final.retry_count == 1
    assert final.execution_stats["last_error"] == "smtp down (1)"
    assert final.execution_stats["failed_at"] == clock.now().isoformat()


async def test_unknown_executor_is_ignored_and_the_batch_goes_on(make_app: MakeApp) -> None:
    clock = ManualClock()
    app = await make_app(clock)
    ran: list[str] = []

    @app.executor("q", "known")
    async def known(task: Task, actions: Actions) -> None:
        ran.append(task.id or "")
        actions.success(task)

    ids = await app.add_tasks(
        [
            Task(type="known", queue_id="q"),
            Task(type="nobody", queue_id="q", entity=USER),
            Task(type="known", queue_id="q"),
        ]
    )
    await app.run_until_idle()
    assert sorted(ran) == sorted([ids[0], ids[2]])
    ignored = await app.get_task(ids[1])
    assert ignored is not None and ignored.status is TaskStatus.IGNORED
    assert ignored.execution_stats["ignored_reason"] == "unknown_executor"
    rows = await app.entity_status(USER)
    assert [(r.task_id, r.status, r.error) for r in rows] == [
        (ids[1], "ignored", "unknown_executor")
    ]
    assert app.stats.ignored == 1


async def test_cancel_a_future_task(make_app: MakeApp) -> None:
    clock = ManualClock()
    app = await make_app(clock)
    ran: list[str] = []

    @app.executor("q", "later")
    async def later(task: Task, actions: Actions) -> None:
        ran.append(task.id or "")
        actions.success(task)

    keep, drop = await app.add_tasks(
        [
            Task(type="later", queue_id="q", execute_at=clock.now() + timedelta(hours=1)),
            Task(
                type="later",
                queue_id="q",
                execute_at=clock.now() + timedelta(hours=1),
                entity=USER,
            ),
        ]
    )
    stored = await app.get_task(drop)
    assert stored is not None and stored.status is TaskStatus.SCHEDULED
    assert await app.cancel(drop) is True
    assert await app.cancel(drop) is False
    cancelled = await app.get_task(drop)
    assert cancelled is not None and cancelled.status is TaskStatus.CANCELLED
    assert [r.status for r in await app.entity_status(USER)] == ["cancelled"]
    clock.advance(hours=1)
    await app.run_until_idle()
    assert ran == [keep]
    done = await app.get_task(keep)
    assert done is not None and done.status is TaskStatus.EXECUTED
    assert await app.cancel(keep) is False


async def test_a_record_delivered_early_is_held_back_until_due(make_app: MakeApp) -> None:
    clock = ManualClock()
    app = await make_app(clock)
    ran: list[datetime] = []

    @app.executor("q", "later")
    async def later(task: Task, actions: Actions) -> None:
        ran.append(clock.now())
        actions.success(task)

    due = clock.now() + timedelta(minutes=30)
    [tid] = await app.add_tasks([Task(type="later", queue_id="q", execute_at=due)])
    stored = await app.get_task(tid)
    assert stored is not None
    await put_raw(app, "q", encode_task(stored))  # a copy on its way half an hour early
    await app.run_until_idle()
    assert ran == []
    again = await app.get_task(tid)
    assert again is not None and again.status is TaskStatus.SCHEDULED
    assert app.next_due() == due
    clock.advance(minutes=29, seconds=59)
    await app.run_until_idle()
    assert ran == []
    clock.advance(seconds=1)
    await app.run_until_idle()
    assert ran == [due]
    assert app.stats.held_back == 1


async def test_entity_projection_moves_scheduled_processing_terminal(make_app: MakeApp) -> None:
    clock = ManualClock()
    app = await make_app(clock)
    seen_inside: dict[str, str] = {}

    @app.executor("q", "work")
    async def work(task: Task, actions: Actions) -> None:
        rows = await app.entity_status(ORDER)
        seen_inside.update((r.task_id, r.status) for r in rows if r.task_id == task.id)
        if task.payload == "bad":
            actions.fail(task, "no stock")
        else:
            actions.success(task, {"picked": task.payload})

    ok, bad = await app.add_tasks(
        [
            Task(type="work", queue_id="q", payload="a", entity=ORDER),
            Task(type="work", queue_id="q", payload="bad", entity=ORDER),
        ]
    )
    assert [r.status for r in await app.entity_status(ORDER)] == ["scheduled", "scheduled"]
    await app.run_until_idle()
    assert seen_inside == {ok: "processing", bad: "processing"}
    rows = {r.task_id: r for r in await app.entity_status(ORDER)}
    assert (rows[ok].status, rows[ok].result, rows[ok].error) == ("executed", {"picked": "a"}, None)
    assert (rows[bad].status, rows[bad].error) == ("failed", "no stock")
    assert rows[ok].task_type == "work" and rows[ok].queue_id == "q"


async def test_children_are_dispatched_once_the_parent_succeeds(make_app: MakeApp) -> None:
    clock = ManualClock()
    app = await make_app(clock)
    runs: list[tuple[str, int]] = []
    child_ids: list[str] = []

    @app.executor("q", "parent", retries=1, retry_after=1)
    async def parent(task: Task, actions: Actions) -> None:
        runs.append(("parent", task.retry_count))
        child_ids.extend(
            actions.add_tasks([Task(type="child", queue_id="q", payload=task.retry_count)])
        )
        if task.retry_count == 0:
            raise RuntimeError("first attempt fails: its child is not sent")
        actions.success(task)

    @app.executor("q", "child")
    async def child(task: Task, actions: Actions) -> None:
        runs.append(("child", task.payload))
        actions.success(task)

    await app.add_tasks([Task(type="parent", queue_id="q", metadata={"log_context": {"r": "1"}})])
    await app.run_until_idle()
    assert runs == [("parent", 0)]
    clock.advance(seconds=1)
    await app.run_until_idle()
    assert runs == [("parent", 0), ("parent", 1), ("child", 1)]
    assert len(child_ids) == 2  # one per attempt; only the successful attempt's was sent


async def test_flows_continue_and_abort_join_once(make_app: MakeApp) -> None:
    clock = ManualClock()
    app = await make_app(clock)
    joins: dict[str, list[dict[str, Any]]] = defaultdict(list)
    flows: dict[str, str] = {}

    @app.executor("q", "start")
    async def start(task: Task, actions: Actions) -> None:
        steps = [Task(type="step", queue_id="q", payload=i) for i in range(6)]
        flows[task.payload] = actions.start_flow(
            steps, Join(queue_id="q", type="join"), failure_policy=task.payload, entity=ORDER
        )
        actions.success(task)

    @app.executor("q", "step")
    async def step(task: Task, actions: Actions) -> None:
        if task.payload == 2:
            actions.fail(task, "step 2 broke")
        else:
            actions.success(task, task.payload * 10)

    @app.executor("q", "join")
    async def join(task: Task, actions: Actions) -> None:
        results = task.payload["flow_results"]
        joins[results["flow_id"]].append(results)
        actions.success(task, len(results["steps"]))

    await app.add_tasks(
        [Task(type="start", queue_id="q", payload=p) for p in ("continue", "abort")]
    )
    await app.run_until_idle()

    cont, abort = flows["continue"], flows["abort"]
    assert [len(joins[cont]), len(joins[abort])] == [1, 1]
    steps = joins[cont][0]["steps"]
    assert [s["step_index"] for s in steps] == list(range(6))
    assert steps[2] == {"step_index": 2, "status": "fail", "error": "step 2 broke"}
    assert steps[3] == {"step_index": 3, "status": "success", "result": 30}
    assert "aborted" not in joins[cont][0]
    assert joins[abort][0]["aborted"] is True
    assert any(s["status"] == "fail" for s in joins[abort][0]["steps"])

    status = await app.flow_status(cont)
    assert status is not None
    assert (status.state, status.total, status.succeeded, status.failed, status.pending) == (
        "joined",
        6,
        5,
        1,
        0,
    )
    aborted = await app.flow_status(abort)
    assert aborted is not None and aborted.state == "aborted" and aborted.failed == 1
    assert aborted.succeeded + aborted.failed == len(joins[abort][0]["steps"])
    join_record = await app.get_task(status.join_task_id)
    assert join_record is not None and join_record.status is TaskStatus.EXECUTED
    assert join_record.execution_result == 6
    rows = {r.task_id: r for r in await app.entity_status(ORDER)}
    assert (rows[cont].status, rows[cont].result) == ("executed", 6)
    assert (rows[abort].status, rows[abort].error) == ("failed", "flow_aborted")
    assert await app.flow_status("no-such-flow") is None


async def test_flow_timeout_joins_with_partial_results_once(make_app: MakeApp) -> None:
    clock = ManualClock()
    app = await make_app(clock)
    joins: list[dict[str, Any]] = []
    ran: list[int] = []
    flow: list[str] = []

    @app.executor("q", "start")
    async def start(task: Task, actions: Actions) -> None:
        late = clock.now() + timedelta(hours=2)
        steps = [
            Task(type="step", queue_id="q", payload=i, execute_at=late if i >= 2 else None)
            for i in range(4)
        ]
        flow.append(actions.start_flow(steps, Join(queue_id="q", type="join"), timeout=1800))
        actions.success(task)

    @app.executor("q", "step")
    async def step(task: Task, actions: Actions) -> None:
        ran.append(task.payload)
        actions.success(task, task.payload)

    @app.executor("q", "join")
    async def join(task: Task, actions: Actions) -> None:
        joins.append(task.payload["flow_results"])
        actions.success(task)

    await app.add_tasks([Task(type="start", queue_id="q")])
    await app.run_until_idle()
    assert sorted(ran) == [0, 1] and joins == []
    clock.advance(seconds=1799)
    await app.run_until_idle()
    assert joins == []
    clock.advance(seconds=1)
    await app.run_until_idle()
    assert len(joins) == 1
    assert joins[0]["timed_out"] is True
    assert [s["step_index"] for s in joins[0]["steps"]] == [0, 1]
    status = await app.flow_status(flow[0])
    assert status is not None and status.state == "timed_out" and status.pending == 2
    clock.advance(hours=2)
    await app.run_until_idle()
    assert sorted(ran) == [0, 1, 2, 3]
    assert len(joins) == 1
    status = await app.flow_status(flow[0])
    assert status is not None and (status.state, status.succeeded) == ("timed_out", 2)


async def test_result_over_the_limit_is_kept_as_a_blob_and_read_back(make_app: MakeApp) -> None:
    clock = ManualClock()
    app = await make_app(clock, result_limit=1024)
    big = {"rows": ["r" * 100] * 50}

    @app.executor("q", "report")
    async def report(task: Task, actions: Actions) -> None:
        actions.success(task, big)

    [tid] = await app.add_tasks([Task(type="report", queue_id="q", force_store=True, entity=USER)])
    await app.run_until_idle()
    stored = await app.task_store.get(tid)
    assert stored is not None and blobs.is_blob_ref(stored.execution_result)
    task = await app.get_task(tid)
    assert task is not None and task.execution_result == big
    [row] = await app.entity_status(USER)
    assert row.result == big


async def test_payload_over_the_record_limit_reaches_the_executor(make_app: MakeApp) -> None:
    clock = ManualClock()
    # 4 KiB Kinesis records; SQS messages stay at 1 MiB, so the payload is larger than that
    app = await make_app(clock, aws={"max_record_bytes": 4096})
    payload = {"blob": "p" * 1_100_000}
    got: list[int] = []

    @app.executor("q", "big")
    async def big(task: Task, actions: Actions) -> None:
        got.append(len(task.payload["blob"]))
        actions.success(task)

    await app.add_tasks([Task(type="big", queue_id="q", payload=payload)])
    await app.run_until_idle()
    assert got == [1_100_000]
    if app.resources is not None:
        s3 = app.resources.clients.sync("s3")
        listed = s3.list_objects_v2(Bucket=app.resources.bucket, Prefix="tq/payloads/")
        assert listed.get("KeyCount") == 1


async def test_poison_record_is_kept_and_the_rest_runs(make_app: MakeApp) -> None:
    clock = ManualClock()
    app = await make_app(clock)
    ran: list[str] = []

    @app.executor("q", "ok")
    async def ok(task: Task, actions: Actions) -> None:
        ran.append(task.id or "")
        actions.success(task)

    await put_raw(app, "q", b"not a record")
    [tid] = await app.add_tasks([Task(type="ok", queue_id="q")])
    await app.run_until_idle()
    assert ran == [tid]
    [poison] = app.poison
    assert (poison.data, poison.reason) == (b"not a record", "malformed")
    assert app.stats.poison == 1
    assert await app.run_until_idle() == 0  # not delivered again
    assert await app.poison_records() == [poison]  # kept in the app's poison store


async def test_add_tasks_sync_from_a_plain_function(make_app: MakeApp) -> None:
    clock = ManualClock()
    app = await make_app(clock)
    ran: list[Any] = []

    @app.executor("q", "sync")
    async def run(task: Task, actions: Actions) -> None:
        ran.append(task.payload)
        actions.success(task)

    def producer() -> list[str]:  # e.g. a web request handler
        return app.add_tasks_sync([Task(type="sync", queue_id="q", payload=i) for i in range(3)])

    ids = await asyncio.to_thread(producer)
    assert len(ids) == 3 and len(set(ids)) == 3
    with pytest.raises(RuntimeError, match="await add_tasks"):
        app.add_tasks_sync([Task(type="sync", queue_id="q")])
    await app.run_until_idle()
    assert sorted(ran) == [0, 1, 2]


# == Part 2: 1,000 tasks through Kinesis and SQS at once =====================================


class RequestCount:
    """Counts the AWS requests an app makes, by ``service.Operation`` (botocore hooks on every
    client the app opens, the DynamoDB stores' client included)."""

    def __init__(self, app: TaskQueue):
        self.calls: Counter[str] = Counter()
        self._hooked: list[Any] = []
        clients = app.resources.clients
        get, sync = clients.get, clients.sync

        async def hooked_get(service: str) -> Any:
            return self._hook(await get(service))

        def hooked_sync(service: str) -> Any:
            return self._hook(sync(service))

        clients.get, clients.sync = hooked_get, hooked_sync
        self._hook(app.task_store.models.connection.connection.client)  # type: ignore[attr-defined]

    def _hook(self, client: Any) -> Any:
        if not any(c is client for c in self._hooked):
            client.meta.events.register("after-call", self._count, unique_id=f"tq-e2e-{id(self)}")
            self._hooked.append(client)
        return client

    def _count(self, model: Any, event_name: str, **_: Any) -> None:
        self.calls[f"{event_name.split('.')[1]}.{model.name}"] += 1

    def service(self, name: str) -> int:
        return sum(n for key, n in self.calls.items() if key.startswith(f"{name}."))

    def close(self) -> None:
        for client in self._hooked:
            client.meta.events.unregister("after-call", unique_id=f"tq-e2e-{id(self)}")


PLAIN_KINESIS, PLAIN_SQS = 700, 150
ENTITIES = [Entity(id=f"c-{i}", type="customer") for i in range(6)]
FUTURE_OFFSETS = [1200, 2400, 3600, 5400, 7200]  # seconds after the start, 5 tasks each
FLOW_ENTITY = Entity(id="f-1", type="campaign")


@pytest.fixture(params=["memory", "aws"])
async def big_app(request: pytest.FixtureRequest) -> AsyncIterator[tuple[TaskQueue, ManualClock]]:
    """The embedded app, or an AWS app whose ``mail`` queue id travels by SQS and every other
    queue id by Kinesis."""
    clock = ManualClock()
    if request.param == "memory":
        app = TaskQueue(clock=clock)
    else:
        url = request.getfixturevalue("endpoint")
        queue = f"{url}/{ACCOUNT}/{_name('tq-mail')}"
        app = aws_app(url, clock, stream=True, queue=False, sqs_queues={"mail": queue})
        await app.ensure_resources()
    yield app, clock
    await app.aclose()


async def test_a_thousand_tasks_through_kinesis_and_sqs(
    big_app: tuple[TaskQueue, ManualClock],
) -> None:
    """850 plain tasks first (700 by Kinesis, 150 by SQS: not one DynamoDB request), then 60
    entity tasks, 30 that fail once and retry, 20 that fail for good, 25 due 20 minutes to 2
    hours later (5 of them cancelled), 12 parents with a child each, and three flows: 50 steps
    with ``abort``, 20 steps joined with a failure, 6 steps with a 30-minute timeout.

    Retry backoff is capped at 300 s (``retry_after=1000`` gives 300 s), so the delays longer
    than SQS's 15 minutes come from ``execute_at``; with a manual clock every delay goes through
    EventBridge Scheduler, fired by ``run_until_idle`` at the clock's now."""
    app, clock = big_app
    on_aws = app.resources is not None
    t0 = clock.now()
    runs: dict[str, list[tuple[int, datetime]]] = defaultdict(list)
    joins: dict[str, list[dict[str, Any]]] = defaultdict(list)
    flows: dict[str, str] = {}
    sources: dict[str, set[str]] = defaultdict(set)
    children: dict[str, list[str]] = defaultdict(list)  # parent id -> children run
    step_runs: dict[str, Counter[int]] = defaultdict(Counter)  # flow id -> runs per step

    def ran(task: Task) -> None:
        runs[task.id or ""].append((task.retry_count, clock.now()))

    # Where each task's record came from (the stream, the queue URL, or the memory queue).
    process = app.processor.process

    async def recording_process(deliveries: Sequence[Delivery]) -> None:
        for d in deliveries:
            if d.task is not None:
                sources[d.task.id or ""].add(d.queue_id)
        await process(deliveries)

    app.processor.process = recording_process  # type: ignore[method-assign]

    for queue in ("work", "mail"):

        @app.executor(queue, "plain")
        async def plain(task: Task, actions: Actions) -> None:
            ran(task)
            actions.success(task)

        @app.executor(queue, "entity")
        async def entity(task: Task, actions: Actions) -> None:
            ran(task)
            actions.success(task, {"n": task.payload})

        @app.executor(queue, "flaky", retries=1, retry_after=1000, store_on_failure=queue == "work")
        async def flaky(task: Task, actions: Actions) -> None:
            ran(task)
            if task.retry_count == 0:
                raise RuntimeError("temporarily down")
            actions.success(task, "second time")

        @app.executor(queue, "doomed", retries=1, retry_after=1000)
        async def doomed(task: Task, actions: Actions) -> None:
            ran(task)
            actions.fail(task, f"gone ({task.retry_count})")

        @app.executor(queue, "future")
        async def future(task: Task, actions: Actions) -> None:
            ran(task)
            actions.success(task)

        @app.executor(queue, "step")
        async def step(task: Task, actions: Actions) -> None:
            ran(task)
            step_runs[task.metadata["flow_meta"]["flow_id"]][task.payload["i"]] += 1
            if task.payload["fail"]:
                actions.fail(task, f"step {task.payload['i']} failed")
            else:
                actions.success(task, task.payload["i"])

    @app.executor("work", "parent")
    async def parent(task: Task, actions: Actions) -> None:
        ran(task)
        actions.add_tasks([Task(type="child", queue_id="mail", payload=task.id)])
        actions.success(task)

    @app.executor("mail", "child")
    async def child(task: Task, actions: Actions) -> None:
        ran(task)
        children[task.payload].append(task.id or "")
        actions.success(task, task.payload)

    @app.executor("flows", "start")
    async def start(task: Task, actions: Actions) -> None:
        ran(task)
        kind = task.payload
        join = Join(queue_id="flows", type="join")
        if kind == "abort50":
            steps = [
                Task(type="step", queue_id="work", payload={"i": i, "fail": i == 7})
                for i in range(50)
            ]
            flows[kind] = actions.start_flow(
                steps, join, failure_policy="abort", entity=FLOW_ENTITY
            )
        elif kind == "joined":
            steps = [
                Task(type="step", queue_id="mail", payload={"i": i, "fail": i == 5})
                for i in range(20)
            ]
            flows[kind] = actions.start_flow(steps, join)
        else:
            late = clock.now() + timedelta(hours=2)
            steps = [
                Task(
                    type="step",
                    queue_id="mail",
                    payload={"i": i, "fail": False},
                    execute_at=late if i >= 3 else None,
                )
                for i in range(6)
            ]
            flows[kind] = actions.start_flow(steps, join, timeout=1800)
        actions.success(task)

    @app.executor("flows", "join")
    async def join(task: Task, actions: Actions) -> None:
        ran(task)
        results = task.payload["flow_results"]
        joins[results["flow_id"]].append(results)
        actions.success(task, len(results["steps"]))

    count = RequestCount(app) if on_aws else None

    # -- phase 0: plain tasks only: no DynamoDB request at all ---------------------------------
    plain_ids = await app.add_tasks(
        [Task(type="plain", queue_id="work", payload=i) for i in range(PLAIN_KINESIS)]
        + [Task(type="plain", queue_id="mail", payload=i) for i in range(PLAIN_SQS)]
    )
    await app.run_until_idle()
    assert {tid: len(runs[tid]) for tid in plain_ids} == dict.fromkeys(plain_ids, 1)
    if count is not None:
        assert count.service("dynamodb") == 0, count.calls
        assert count.calls["kinesis.PutRecords"] == math.ceil(PLAIN_KINESIS / 500)
        assert count.calls["sqs.SendMessageBatch"] == math.ceil(PLAIN_SQS / 10)
        assert count.calls["kinesis.GetRecords"] > 0 and count.calls["sqs.ReceiveMessage"] > 0

    # -- phase 1: everything else, at t0 --------------------------------------------------------
    tasks: list[Task] = []
    for i in range(60):
        queue = "work" if i % 2 else "mail"
        tasks.append(Task(type="entity", queue_id=queue, payload=i, entity=ENTITIES[i % 6]))
    tasks += [Task(type="flaky", queue_id="work" if i % 2 else "mail") for i in range(30)]
    tasks += [Task(type="doomed", queue_id="work" if i % 2 else "mail") for i in range(20)]
    for i in range(25):
        at = t0 + timedelta(seconds=FUTURE_OFFSETS[i % 5])
        tasks.append(Task(type="future", queue_id="work" if i % 2 else "mail", execute_at=at))
    tasks += [Task(type="parent", queue_id="work") for _ in range(12)]
    tasks += [Task(type="start", queue_id="flows", payload=k) for k in ("abort50", "joined", "t")]
    ids = await app.add_tasks(tasks)
    assert len(plain_ids) + len(ids) == 1000
    entity_ids, rest = ids[:60], ids[60:]
    flaky_ids, rest = rest[:30], rest[30:]
    doomed_ids, rest = rest[:20], rest[20:]
    future_ids, rest = rest[:25], rest[25:]
    parent_ids, starter_ids = rest[:12], rest[12:]
    by_id = dict(zip(ids, tasks, strict=True))
    cancelled = future_ids[:5]  # one of each due time
    for tid in cancelled:
        assert await app.cancel(tid) is True
    await app.run_until_idle()

    for tid in entity_ids:
        assert len(runs[tid]) == 1
    for tid in flaky_ids + doomed_ids:
        assert [n for n, _ in runs[tid]] == [0]
    kept = await app.get_task(flaky_ids[1])  # a "work" flaky task: store_on_failure
    assert kept is not None and kept.status is TaskStatus.SCHEDULED and kept.retry_count == 1
    assert kept.execute_at == t0 + timedelta(seconds=300)  # 1000 s backoff, capped at 300
    assert await app.get_task(flaky_ids[0]) is None  # a "mail" one travels by the scheduler
    assert not any(runs[tid] for tid in future_ids)
    assert {p: len(c) for p, c in children.items()} == dict.fromkeys(parent_ids, 1)
    assert all(len(runs[tid]) == 1 for tid in parent_ids + starter_ids)
    assert len(joins[flows["abort50"]]) == 1 and len(joins[flows["joined"]]) == 1
    assert not joins[flows["t"]]

    # -- the retries: not one second early ----------------------------------------------------
    clock.advance(seconds=299)
    await app.run_until_idle()
    assert all(len(runs[tid]) == 1 for tid in flaky_ids + doomed_ids)
    clock.advance(seconds=1)
    await app.run_until_idle()
    retry_at = t0 + timedelta(seconds=300)
    for tid in flaky_ids + doomed_ids:
        assert runs[tid] == [(0, t0), (1, retry_at)]

    # -- the timeout, and the future tasks, each at its time ----------------------------------
    for offset in (1199, 1200, 1799, 1800, 2400, 3600, 5400, 7200):
        clock.set(t0 + timedelta(seconds=offset))
        await app.run_until_idle()
        assert len(joins[flows["t"]]) == (1 if offset >= 1800 else 0)
        if offset == 1199:
            assert not any(runs[tid] for tid in future_ids)
    assert await app.run_until_idle() == 0
    assert app.next_due() is None

    # -- where everything ended ---------------------------------------------------------------
    for tid in future_ids:
        task = by_id[tid]
        if tid in cancelled:
            assert runs[tid] == []
            record = await app.get_task(tid)
            assert record is not None and record.status is TaskStatus.CANCELLED
        else:
            assert runs[tid] == [(0, task.execute_at)]  # due, never early
    for tid in future_ids[5:10]:
        record = await app.get_task(tid)
        assert record is not None and record.status is TaskStatus.EXECUTED
    for tid in flaky_ids[1::2]:  # stored ones
        record = await app.get_task(tid)
        assert record is not None and record.status is TaskStatus.EXECUTED
        assert record.execution_result == "second time"
    for tid in doomed_ids:
        record = await app.get_task(tid)
        assert record is not None and record.status is TaskStatus.FAILED
        assert record.execution_stats["last_error"] == "gone (1)"
    for customer in ENTITIES:
        rows = await app.entity_status(customer)
        assert len(rows) == 10
        assert {r.status for r in rows} == {"executed"}
        assert sorted(r.result["n"] for r in rows) == [
            i for i in range(60) if ENTITIES[i % 6] == customer
        ]
    for (child_id,) in children.values():
        assert runs[child_id] == [(0, t0)] and sources[child_id]

    # flows: each join ran once; flow_status read back from the flow store
    for kind in ("abort50", "joined", "t"):
        assert len(joins[flows[kind]]) == 1, kind
    aborted = await app.flow_status(flows["abort50"])
    assert aborted is not None and aborted.state == "aborted"
    assert aborted.failed == 1 and aborted.succeeded + aborted.failed <= 50
    assert len(joins[flows["abort50"]][0]["steps"]) == aborted.succeeded + aborted.failed
    assert joins[flows["abort50"]][0]["aborted"] is True
    flow_rows = {r.task_id: r for r in await app.entity_status(FLOW_ENTITY)}
    assert set(flow_rows) == {aborted.flow_id, aborted.join_task_id}
    flow_row = flow_rows[aborted.flow_id]
    assert (flow_row.status, flow_row.error) == ("failed", "flow_aborted")
    assert flow_rows[aborted.join_task_id].status == "executed"
    joined = await app.flow_status(flows["joined"])
    assert joined is not None
    assert (joined.state, joined.succeeded, joined.failed, joined.pending) == ("joined", 19, 1, 0)
    steps = joins[flows["joined"]][0]["steps"]
    assert [s["status"] for s in steps] == ["fail" if i == 5 else "success" for i in range(20)]
    timed = await app.flow_status(flows["t"])
    assert timed is not None and (timed.state, timed.succeeded, timed.pending) == (
        "timed_out",
        3,
        3,
    )
    assert joins[flows["t"]][0]["timed_out"] is True
    for kind in ("abort50", "joined", "t"):
        status = await app.flow_status(flows[kind])
        assert status is not None
        join_record = await app.get_task(status.join_task_id)
        assert join_record is not None and join_record.status is TaskStatus.EXECUTED
    # every step ran once, those of a closed flow included
    assert {flows[k]: sorted(step_runs[flows[k]].values()) for k in flows} == {
        flows["abort50"]: [1] * 50,
        flows["joined"]: [1] * 20,
        flows["t"]: [1] * 6,
    }

    # the records came through the transport their queue id is routed to
    if on_aws:
        stream = app.resources.routing.stream
        queue_url = app.resources.routing.route("mail").queue_url
        queues = {tid: "work" for tid in plain_ids[:PLAIN_KINESIS]}
        queues |= {tid: "mail" for tid in plain_ids[PLAIN_KINESIS:]}
        queues |= {tid: t.queue_id for tid, t in by_id.items() if tid not in cancelled}
        bad = []
        for tid, queue_id in queues.items():
            expected = queue_url if queue_id == "mail" else stream
            if sources[tid] != {expected}:
                bad.append((tid, queue_id, sources[tid]))
        assert not bad, bad
    if count is not None:
        count.close()
