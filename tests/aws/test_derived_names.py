"""Derived names never depend on what a user may put in an id: any id ``add_tasks`` accepts
(``a#b``, 70 characters, emoji, slashes and dots) works end to end, retries through the
Scheduler included, on the embedded default and on AWS (moto on 127.0.0.1: Kinesis, SQS,
SQS FIFO, DynamoDB, S3, EventBridge Scheduler); and what DynamoDB could not key is refused by
``add_tasks`` with a ``TaskValidationError``, not by DynamoDB."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from tests.support.aws import REGION
from tq_aws import Actions, Entity, Task, TaskQueue, TaskStatus
from tq_aws.backends.aws.clients import AwsClients, AwsSettings
from tq_aws.backends.aws.dynamodb import ensure_table
from tq_aws.backends.aws.dynamodb.task_store import DynamoTaskStore
from tq_aws.backends.aws.s3 import S3BlobStore, object_key
from tq_aws.core.limits import SCHEDULE_MAX_NAME_CHARS
from tq_aws.engine.dispatch import schedule_name
from tq_aws.engine.handoff import watchdog_name
from tq_aws.errors import TaskValidationError
from tq_aws.ids import new_id
from tq_aws.testing import ManualClock
from tq_aws.testing.moto import MotoServer

ACCOUNT = "123456789012"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/tq"
ODD_IDS = [
    "a#b",
    "x" * 70,
    "caf\u00e9 \U0001f600 \u4e2d\u6587",
    "../up/../../x",
    "order.1.a0",
    "slash/es and spaces?&=%",
]
EVENTBRIDGE_NAME = re.compile(r"[0-9A-Za-z_.\-]{1,64}")

MakeApp = Callable[..., Awaitable[TaskQueue]]


@pytest.fixture(scope="session")
def _safe_moto() -> Iterator[MotoServer]:
    """moto with Kinesis ``PutRecord(s)`` one at a time, so that no record is lost."""
    with MotoServer(serialize="kinesis_puts") as server:
        yield server


@pytest.fixture
def endpoint(_safe_moto: MotoServer) -> str:
    _safe_moto.reset()
    return _safe_moto.endpoint


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(params=["memory", "kinesis", "sqs", "fifo"])
async def make_app(request: pytest.FixtureRequest) -> AsyncIterator[MakeApp]:
    """``await make_app(clock, **options)``: the embedded app, or one on moto whose every queue
    id travels by a Kinesis stream, an SQS queue or an SQS FIFO queue."""
    kind = request.param
    apps: list[TaskQueue] = []

    async def make(clock: ManualClock, **options: Any) -> TaskQueue:
        if kind == "memory":
            app = TaskQueue(clock=clock, **options)
        else:
            url = request.getfixturevalue("endpoint")
            queue = _name("tq-queue") + (".fifo" if kind == "fifo" else "")
            app = TaskQueue.aws(
                stream=_name("tq-stream") if kind == "kinesis" else None,
                queue_url=None if kind == "kinesis" else f"{url}/{ACCOUNT}/{queue}",
                table="tq",
                bucket=_name("tq-bucket"),
                scheduler_group="tq",
                scheduler_role_arn=ROLE,
                region=REGION,
                endpoint_url=url,
                clock=clock,
                max_record_bytes=16_000,  # so the payloads below go through the claim check
                **options,
            )
            await app.ensure_resources()
        apps.append(app)
        return app

    yield make
    for app in apps:
        await app.aclose()


async def test_odd_ids_run_end_to_end_retries_and_blobs_included(make_app: MakeApp) -> None:
    clock = ManualClock()
    app = await make_app(clock, result_limit=1_000)
    attempts: list[tuple[str, int]] = []

    @app.executor("q", "flaky", retries=1, retry_after=1, store_on_failure=True)
    async def flaky(task: Task, actions: Actions) -> None:
        attempts.append((task.id or "", task.retry_count))
        assert task.payload == {"pad": "p" * 20_000, "id": task.id}
        if task.retry_count == 0:
            actions.fail(task, "first attempt fails")
        else:
            actions.success(task, {"echo": task.id, "pad": "r" * 2_000})

    later: list[str] = []

    @app.executor("q", "later")
    async def run_later(task: Task, actions: Actions) -> None:
        assert task.payload == {"big": "b" * 300_000}  # over a schedule's 256 KB input
        later.append(task.id or "")
        actions.success(task)

    user = Entity(id="u#1 \U0001f600", type="user")
    tasks = [
        Task(id=i, type="flaky", queue_id="q", payload={"pad": "p" * 20_000, "id": i}, entity=user)
        for i in ODD_IDS
    ]
    future = Task(
        id="later \U0001f600#1",
        type="later",
        queue_id="q",
        payload={"big": "b" * 300_000},
        execute_at=clock.now() + timedelta(hours=1),
    )
    assert await app.add_tasks([*tasks, future]) == [*ODD_IDS, future.id]
    await app.run_until_idle()
    for i in ODD_IDS:  # failed once, its retry waits in the Scheduler
        stored = await app.get_task(i)
        assert stored is not None and stored.status is TaskStatus.SCHEDULED, i
        assert stored.retry_count == 1
    clock.advance(seconds=10)
    await app.run_until_idle()
    clock.advance(hours=2)
    await app.run_until_idle()

    assert sorted(attempts) == sorted([(i, n) for i in ODD_IDS for n in (0, 1)])
    for i in ODD_IDS:
        stored = await app.get_task(i)
        assert stored is not None and stored.status is TaskStatus.EXECUTED, i
        assert stored.execution_result == {"echo": i, "pad": "r" * 2_000}
    rows = {r.task_id: r for r in await app.entity_status(user)}
    assert {i: rows[i].status for i in ODD_IDS} == dict.fromkeys(ODD_IDS, "executed")
    assert later == [future.id]
    assert app.poison == []


async def test_an_id_dynamodb_could_not_key_is_refused_by_add_tasks(endpoint: str) -> None:
    clock = ManualClock()
    app = TaskQueue.aws(
        stream=_name("tq-stream"),
        table="tq",
        scheduler_group="tq",
        scheduler_role_arn=ROLE,
        region=REGION,
        endpoint_url=endpoint,
        clock=clock,
    )
    await app.ensure_resources()
    try:
        for bad, field in (
            (Task(id="x" * 3000, type="t", queue_id="q", force_store=True), "id"),
            (Task(id="\U0001f600" * 200, type="t", queue_id="q", force_store=True), "id"),
            (
                Task(type="t", queue_id="q", execute_at=datetime(9999, 12, 31, tzinfo=UTC)),
                "execute_at",
            ),
        ):
            good = Task(id="good", type="t", queue_id="q", force_store=True)
            with pytest.raises(TaskValidationError) as caught:
                await app.add_tasks([good, bad])
            assert (caught.value.index, caught.value.field) == (1, field)
            assert await app.get_task("good") is None
        assert await app.get_task("x" * 3000) is None
        assert await app.cancel("x" * 3000) is False
        table = boto3.client("dynamodb", region_name=REGION, endpoint_url=endpoint)
        assert table.scan(TableName="tq-store")["Count"] == 0
    finally:
        await app.aclose()


async def test_the_dynamodb_task_store_refuses_an_id_it_cannot_key(
    aws_settings: AwsSettings,
) -> None:
    ensure_table("tq-names", aws_settings)
    store = DynamoTaskStore("tq-names", aws_settings)
    with pytest.raises(TaskValidationError) as caught:
        await store.put(
            [Task(id="ok", type="t", queue_id="q"), Task(id="x" * 3000, type="t", queue_id="q")]
        )
    assert (caught.value.index, caught.value.field) == (1, "id")
    assert await store.get("ok") is None
    assert await store.create([Task(id="a#b \U0001f600", type="t", queue_id="q")]) == [True]
    got = await store.get("a#b \U0001f600")
    assert got is not None and got.id == "a#b \U0001f600"


async def test_s3_object_keys_are_plain_whatever_the_blob_key(aws_settings: AwsSettings) -> None:
    clients = AwsClients(aws_settings)
    store = S3BlobStore(_name("tq-blobs"), clients)
    await store.ensure_bucket()
    try:
        keys = [f"payloads/{i}" for i in ODD_IDS] + ["payloads/t-1", "payloads/~x"]
        refs = [await store.put(k, k.encode()) for k in keys]
        assert len(set(refs)) == len(keys)
        assert refs[-2] == f"s3://{store.bucket}/tq/payloads/t-1"  # plain ids keep their key
        for key, ref in zip(keys, refs, strict=True):
            assert await store.get(ref) == key.encode()
        s3 = boto3.client("s3", region_name=REGION, endpoint_url=aws_settings.endpoint_url)
        listed = {o["Key"] for o in s3.list_objects_v2(Bucket=store.bucket)["Contents"]}
        assert listed == {f"tq/{object_key(k)}" for k in keys}
        assert all(re.fullmatch(r"[0-9A-Za-z_.=~/-]+", k) for k in listed)
        assert not any("/." in k for k in listed)
    finally:
        await clients.aclose()


def test_schedule_names_are_ones_eventbridge_takes_and_never_shared() -> None:
    uuid_id = new_id()
    plain = Task(id=uuid_id, type="t", queue_id="q")
    assert schedule_name(plain) == f"{uuid_id}.a0"  # the names of generated ids are unchanged
    ids = [*ODD_IDS, "x" * 256, "\U0001f600" * 128, "a", "a.a0", "a_"]
    names = set()
    for i in ids:
        for retry in (0, 7, 9999):
            task = Task(id=i, type="t", queue_id="q", execution_stats={"retry_count": retry})
            name = schedule_name(task)
            assert EVENTBRIDGE_NAME.fullmatch(name), name
            assert EVENTBRIDGE_NAME.fullmatch(watchdog_name(task))
            assert len(watchdog_name(task)) <= SCHEDULE_MAX_NAME_CHARS
            names.add(name)
    assert len(names) == len(ids) * 3
