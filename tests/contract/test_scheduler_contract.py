"""Scheduler contract: the same assertions over the memory scheduler and EventBridge Scheduler
on moto (fired with ``fire_due_schedules``, as moto never fires schedules)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

import pytest

from tests.support.aws import unique
from tq_aws.backends.aws.clients import AwsClients, AwsSettings
from tq_aws.backends.aws.routing import Routing
from tq_aws.backends.aws.schedule_firing import fire_due_schedules
from tq_aws.backends.aws.scheduler import EventBridgeScheduler
from tq_aws.backends.memory.scheduler import MemoryScheduler
from tq_aws.backends.memory.transport import MemoryTransport
from tq_aws.core.codec import decode_task
from tq_aws.core.task import Task
from tq_aws.ports import ScheduledTask, Scheduler
from tq_aws.testing import ManualClock

STREAM_QUEUE = "media"  # routes to the Kinesis stream
SQS_QUEUE = "emails"  # routes to the SQS queue


@dataclass
class Arrival:
    queue_id: str
    task_id: str
    partition_key: str | None


class Harness(Protocol):
    clock: ManualClock
    scheduler: Scheduler

    async def fire(self) -> int: ...

    async def arrivals(self) -> list[Arrival]:
        """Records that reached the stream or queue since the last call, in arrival order."""
        ...


class MemoryHarness:
    def __init__(self) -> None:
        self.clock = ManualClock()
        self.transport = MemoryTransport()
        self.scheduler = MemoryScheduler(self.transport)

    async def fire(self) -> int:
        return await self.scheduler.fire_due(self.clock.now())

    async def arrivals(self) -> list[Arrival]:
        out = []
        for queue_id in (STREAM_QUEUE, SQS_QUEUE):
            for d in await self.transport.receive_from(queue_id, 100):
                assert d.task is not None and d.task.id is not None
                out.append(Arrival(queue_id, d.task.id, d.partition_key))
        return out


class AwsHarness:
    def __init__(self, settings: AwsSettings) -> None:
        self.clock = ManualClock()
        self.clients = AwsClients(settings)
        self.stream = unique("sched-stream")
        self.queue_name = unique("sched-queue")
        self.group = unique("sched-group")
        kinesis = self.clients.sync("kinesis")
        kinesis.create_stream(StreamName=self.stream, ShardCount=1)
        self.queue_url = self.clients.sync("sqs").create_queue(QueueName=self.queue_name)[
            "QueueUrl"
        ]
        # moto answers HTTP 500 (not ResourceNotFound) for a schedule in a missing group.
        self.clients.sync("scheduler").create_schedule_group(Name=self.group)
        shard = kinesis.list_shards(StreamName=self.stream)["Shards"][0]["ShardId"]
        self._iterator = kinesis.get_shard_iterator(
            StreamName=self.stream, ShardId=shard, ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        self.scheduler = EventBridgeScheduler(
            self.clients,
            Routing(stream=self.stream, sqs_queues={SQS_QUEUE: self.queue_url}),
            group=self.group,
            role_arn="arn:aws:iam::123456789012:role/tq-scheduler",
            clock=self.clock,
        )

    async def fire(self) -> int:
        return await fire_due_schedules(self.scheduler)

    async def arrivals(self) -> list[Arrival]:
        out = []
        kinesis = await self.clients.get("kinesis")
        response = await kinesis.get_records(ShardIterator=self._iterator)
        self._iterator = response["NextShardIterator"]
        for record in response["Records"]:
            task = decode_task(record["Data"])
            assert task.id is not None
            out.append(Arrival(STREAM_QUEUE, task.id, record["PartitionKey"]))
        sqs = await self.clients.get("sqs")
        while True:
            got = await sqs.receive_message(
                QueueUrl=self.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0
            )
            messages = got.get("Messages", [])
            if not messages:
                break
            for m in messages:
                task = decode_task(m["Body"].encode())
                assert task.id is not None
                out.append(Arrival(SQS_QUEUE, task.id, None))
            await sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                    for i, m in enumerate(messages)
                ],
            )
        return out


@pytest.fixture(params=["memory", "aws"])
async def harness(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    if request.param == "memory":
        yield MemoryHarness()
        return
    h = AwsHarness(request.getfixturevalue("aws_settings"))
    yield h
    await h.clients.aclose()


def _task(task_id: str, queue_id: str = STREAM_QUEUE, key: str | None = None) -> Task:
    return Task(
        id=task_id, type="send", queue_id=queue_id, payload={"n": task_id}, partition_key=key
    )


def _entry(task: Task, at: datetime) -> ScheduledTask:
    return ScheduledTask(at=at, name=f"{task.id}.a0", task=task)


async def test_an_entry_is_delivered_at_its_time_and_not_before(harness: Any) -> None:
    at = harness.clock.now() + timedelta(seconds=90)
    await harness.scheduler.schedule([_entry(_task("t-1"), at)])

    harness.clock.advance(seconds=89)
    assert await harness.fire() == 0
    assert await harness.arrivals() == []

    harness.clock.advance(seconds=1)
    assert await harness.fire() == 1
    assert [a.task_id for a in await harness.arrivals()] == ["t-1"]
    assert await harness.fire() == 0  # a fired entry is gone
    assert await harness.arrivals() == []


async def test_an_entry_long_overdue_is_delivered(harness: Any) -> None:
    await harness.scheduler.schedule(
        [_entry(_task("t-1"), harness.clock.now() + timedelta(hours=3))]
    )
    harness.clock.advance(hours=30)
    await harness.fire()
    assert [a.task_id for a in await harness.arrivals()] == ["t-1"]


async def test_an_entry_already_due_is_delivered_by_the_next_firing(harness: Any) -> None:
    await harness.scheduler.schedule([_entry(_task("t-1"), harness.clock.now())])
    await harness.fire()
    assert [a.task_id for a in await harness.arrivals()] == ["t-1"]


async def test_a_repeated_schedule_of_one_name_delivers_once(harness: Any) -> None:
    task = _task("t-1")
    at = harness.clock.now() + timedelta(minutes=5)
    await harness.scheduler.schedule([_entry(task, at)])
    await harness.scheduler.schedule([_entry(task, at)])
    await harness.scheduler.schedule([_entry(task, at), _entry(task, at)])
    harness.clock.advance(minutes=5)
    assert await harness.fire() == 1
    assert [a.task_id for a in await harness.arrivals()] == ["t-1"]


async def test_cancel_prevents_delivery(harness: Any) -> None:
    at = harness.clock.now() + timedelta(minutes=1)
    keep, drop = _task("t-keep"), _task("t-drop")
    await harness.scheduler.schedule([_entry(keep, at), _entry(drop, at)])
    await harness.scheduler.cancel([f"{drop.id}.a0"])
    harness.clock.advance(minutes=2)
    assert await harness.fire() == 1
    assert [a.task_id for a in await harness.arrivals()] == ["t-keep"]


async def test_cancel_of_unknown_or_fired_names_is_fine(harness: Any) -> None:
    task = _task("t-1")
    await harness.scheduler.schedule([_entry(task, harness.clock.now() + timedelta(seconds=10))])
    harness.clock.advance(seconds=10)
    await harness.fire()
    await harness.scheduler.cancel(["t-1.a0", "never-scheduled.a0"])
    assert [a.task_id for a in await harness.arrivals()] == ["t-1"]


async def test_kinesis_route_arrives_on_the_stream_with_the_partition_key(harness: Any) -> None:
    at = harness.clock.now() + timedelta(seconds=30)
    keyed, unkeyed = _task("t-keyed", key="user-7"), _task("t-unkeyed")
    await harness.scheduler.schedule([_entry(keyed, at), _entry(unkeyed, at)])
    harness.clock.advance(seconds=30)
    await harness.fire()
    arrivals = {a.task_id: a for a in await harness.arrivals()}
    assert arrivals["t-keyed"].queue_id == STREAM_QUEUE
    assert arrivals["t-keyed"].partition_key == "user-7"
    assert arrivals["t-unkeyed"].partition_key == "t-unkeyed"  # the task id by default


async def test_sqs_route_arrives_on_the_queue(harness: Any) -> None:
    at = harness.clock.now() + timedelta(minutes=2)
    await harness.scheduler.schedule([_entry(_task("t-mail", SQS_QUEUE), at)])
    harness.clock.advance(minutes=1)
    await harness.fire()
    assert await harness.arrivals() == []
    harness.clock.advance(minutes=1)
    await harness.fire()
    arrivals = await harness.arrivals()
    assert [(a.queue_id, a.task_id) for a in arrivals] == [(SQS_QUEUE, "t-mail")]


async def test_several_due_entries_arrive_in_time_order(harness: Any) -> None:
    start = harness.clock.now()
    offsets = {"t-c": 30, "t-a": 10, "t-d": 40, "t-b": 20}
    # Scheduled out of order, in two calls, all on one partition key.
    tasks = {tid: _task(tid, key="k") for tid in offsets}
    await harness.scheduler.schedule(
        [_entry(tasks[t], start + timedelta(seconds=offsets[t])) for t in ("t-c", "t-a")]
    )
    await harness.scheduler.schedule(
        [_entry(tasks[t], start + timedelta(seconds=offsets[t])) for t in ("t-d", "t-b")]
    )
    harness.clock.advance(seconds=25)
    assert await harness.fire() == 2
    harness.clock.advance(seconds=60)
    assert await harness.fire() == 2
    assert [a.task_id for a in await harness.arrivals()] == ["t-a", "t-b", "t-c", "t-d"]
