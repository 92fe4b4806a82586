"""EventBridgeScheduler on moto: the schedules as created, the SQS DelaySeconds path, name and
input checks, and the firing helper (moto never fires schedules)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.support.aws import unique
from tq_aws import TaskQueue
from tq_aws.backends.aws.clients import AwsClients, AwsSettings
from tq_aws.backends.aws.routing import Routing
from tq_aws.backends.aws.schedule_firing import fire_due_schedules, parse_at_expression
from tq_aws.backends.aws.scheduler import (
    MAX_SCHEDULE_INPUT_BYTES,
    EventBridgeScheduler,
    at_expression,
)
from tq_aws.backends.clock import SystemClock
from tq_aws.core.codec import decode_task, encode_task
from tq_aws.core.task import Task
from tq_aws.errors import ConfigurationError, InvalidScheduleNameError, ScheduleInputTooLargeError
from tq_aws.ports import Clock, ScheduledTask
from tq_aws.testing import ManualClock

ROLE = "arn:aws:iam::123456789012:role/tq-scheduler"
STREAM_QUEUE = "media"
SQS_QUEUE = "emails"
FIFO_QUEUE = "orders"


class RecordingSqsDelay:
    """A ``SqsDelaySender`` over aioboto3 that also records its calls."""

    def __init__(self, clients: AwsClients, routing: Routing):
        self.clients = clients
        self.routing = routing
        self.calls: list[tuple[str | None, int]] = []

    async def send_delayed(self, task: Task, delay_seconds: int) -> None:
        self.calls.append((task.id, delay_seconds))
        route = self.routing.route(task.queue_id)
        sqs = await self.clients.get("sqs")
        await sqs.send_message(
            QueueUrl=route.queue_url,  # type: ignore[union-attr]
            MessageBody=encode_task(task).decode(),
            DelaySeconds=delay_seconds,
        )


@dataclass
class Env:
    settings: AwsSettings
    clients: AwsClients
    stream: str
    stream_arn: str
    queue_url: str
    queue_arn: str
    fifo_url: str
    fifo_arn: str
    group: str
    routing: Routing
    made: list[EventBridgeScheduler] = field(default_factory=list)

    def scheduler(self, clock: Clock, **kwargs: Any) -> EventBridgeScheduler:
        return EventBridgeScheduler(
            self.clients, self.routing, group=self.group, role_arn=ROLE, clock=clock, **kwargs
        )

    def schedules(self) -> list[dict[str, Any]]:
        client = self.clients.sync("scheduler")
        names = [
            s["Name"]
            for page in client.get_paginator("list_schedules").paginate(GroupName=self.group)
            for s in page["Schedules"]
        ]
        return [client.get_schedule(Name=n, GroupName=self.group) for n in sorted(names)]

    def stream_records(self) -> list[dict[str, Any]]:
        kinesis = self.clients.sync("kinesis")
        out = []
        for shard in kinesis.list_shards(StreamName=self.stream)["Shards"]:
            it = kinesis.get_shard_iterator(
                StreamName=self.stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
            )["ShardIterator"]
            out.extend(kinesis.get_records(ShardIterator=it)["Records"])
        return out

    def receive(self, url: str, wait: int = 0) -> list[dict[str, Any]]:
        got = self.clients.sync("sqs").receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=wait,
            MessageSystemAttributeNames=["MessageGroupId"],
        )
        return list(got.get("Messages", []))


def _make_env(settings: AwsSettings) -> Env:
    clients = AwsClients(settings)
    stream, group = unique("s"), unique("g")
    kinesis, sqs = clients.sync("kinesis"), clients.sync("sqs")
    kinesis.create_stream(StreamName=stream, ShardCount=1)
    stream_arn = kinesis.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"][
        "StreamARN"
    ]
    queue_url = sqs.create_queue(QueueName=unique("q"))["QueueUrl"]
    fifo_url = sqs.create_queue(
        QueueName=unique("f") + ".fifo",
        Attributes={"FifoQueue": "true", "ContentBasedDeduplication": "true"},
    )["QueueUrl"]

    def arn(url: str) -> str:
        attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
        return str(attrs["Attributes"]["QueueArn"])

    # The group must exist: moto answers HTTP 500 for a schedule in a missing group.
    clients.sync("scheduler").create_schedule_group(Name=group)
    routing = Routing(stream=stream, sqs_queues={SQS_QUEUE: queue_url, FIFO_QUEUE: fifo_url})
    return Env(
        settings, clients, stream, stream_arn, queue_url, arn(queue_url), fifo_url, arn(fifo_url),
        group, routing,
    )  # fmt: skip


@pytest.fixture
async def env(aws_settings: AwsSettings) -> AsyncIterator[Env]:
    e = _make_env(aws_settings)
    yield e
    await e.clients.aclose()


def _task(task_id: str, queue_id: str = STREAM_QUEUE, **kw: Any) -> Task:
    return Task(id=task_id, type="send", queue_id=queue_id, payload={"id": task_id}, **kw)


def _entry(task: Task, at: datetime, name: str | None = None) -> ScheduledTask:
    return ScheduledTask(at=at, name=f"{task.id}.a0" if name is None else name, task=task)


# -- expressions ----------------------------------------------------------------------------


def test_at_expression_is_utc_and_rounds_up_to_the_second() -> None:
    assert at_expression(datetime(2026, 3, 1, 10, 0, 0, tzinfo=UTC)) == "at(2026-03-01T10:00:00)"
    assert at_expression(datetime(2026, 3, 1, 10, 0, 0, 1, tzinfo=UTC)) == "at(2026-03-01T10:00:01)"
    assert at_expression(datetime(2026, 12, 31, 23, 59, 59, 500_000, tzinfo=UTC)) == (
        "at(2027-01-01T00:00:00)"
    )
    plus_two = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC).astimezone(timezone(timedelta(hours=2)))
    assert at_expression(plus_two) == "at(2026-03-01T12:00:00)"


def test_parse_at_expression() -> None:
    when = datetime(2026, 3, 1, 10, 0, 7, tzinfo=UTC)
    assert parse_at_expression(at_expression(when)) == when
    assert parse_at_expression("at(2026-03-01T12:00:07)", "Europe/Paris") == when + timedelta(
        hours=1
    )
    assert parse_at_expression("rate(1 minute)") is None
    assert parse_at_expression("cron(0 12 * * ? *)") is None


# -- schedules as created -------------------------------------------------------------------


async def test_a_kinesis_schedule_as_created(env: Env) -> None:
    clock = ManualClock(datetime(2026, 5, 1, 8, 0, 0, tzinfo=UTC))
    scheduler = env.scheduler(clock, dead_letter_arn=env.queue_arn)
    task = _task("t-1", partition_key="user-9")
    at = clock.now() + timedelta(minutes=20, microseconds=250_000)
    await scheduler.schedule([_entry(task, at)])

    [schedule] = env.schedules()
    assert schedule["Name"] == "t-1.a0"
    assert schedule["GroupName"] == env.group
    assert schedule["ScheduleExpression"] == "at(2026-05-01T08:20:01)"  # rounded up
    assert schedule["ScheduleExpressionTimezone"] == "UTC"
    assert schedule["FlexibleTimeWindow"] == {"Mode": "OFF"}
    assert schedule["ActionAfterCompletion"] == "DELETE"
    assert schedule["State"] == "ENABLED"
    target = schedule["Target"]
    assert target["Arn"] == env.stream_arn
    assert target["RoleArn"] == ROLE
    assert target["KinesisParameters"] == {"PartitionKey": "user-9"}
    assert target["RetryPolicy"] == {"MaximumEventAgeInSeconds": 86400, "MaximumRetryAttempts": 185}
    assert target["DeadLetterConfig"] == {"Arn": env.queue_arn}
    assert "SqsParameters" not in target
    assert target["Input"].startswith("{")  # JSON text, never the compressed form
    assert json.loads(target["Input"])["v"] == 1
    assert decode_task(target["Input"].encode()) == task


async def test_sqs_and_fifo_schedules_as_created(env: Env) -> None:
    clock = ManualClock()
    scheduler = env.scheduler(clock)
    at = clock.now() + timedelta(hours=2)
    fifo = _task("t-fifo", FIFO_QUEUE, partition_key="o-1")
    await scheduler.schedule([_entry(_task("t-std", SQS_QUEUE), at), _entry(fifo, at)])
    by_name = {s["Name"]: s["Target"] for s in env.schedules()}
    assert by_name["t-std.a0"]["Arn"] == env.queue_arn
    assert "SqsParameters" not in by_name["t-std.a0"]
    assert "KinesisParameters" not in by_name["t-std.a0"]
    assert by_name["t-fifo.a0"]["Arn"] == env.fifo_arn
    assert by_name["t-fifo.a0"]["SqsParameters"] == {"MessageGroupId": "o-1"}


async def test_a_fifo_schedule_fires_with_its_message_group(env: Env) -> None:
    clock = ManualClock()
    scheduler = env.scheduler(clock)
    await scheduler.schedule([_entry(_task("t-f", FIFO_QUEUE), clock.now() + timedelta(minutes=1))])
    clock.advance(minutes=1)
    assert await fire_due_schedules(scheduler) == 1
    [message] = env.receive(env.fifo_url)
    assert decode_task(message["Body"].encode()).id == "t-f"
    assert message["Attributes"]["MessageGroupId"] == "t-f"


async def test_many_entries_are_all_created_and_fired(env: Env) -> None:
    clock = ManualClock()
    scheduler = env.scheduler(clock, concurrency=8)
    at = clock.now() + timedelta(minutes=1)
    # More than one page of list_schedules (50).
    await scheduler.schedule([_entry(_task(f"t-{i:03}"), at) for i in range(55)])
    assert len(env.schedules()) == 55
    clock.advance(minutes=1)
    assert await fire_due_schedules(scheduler) == 55
    assert env.schedules() == []
    assert len(env.stream_records()) == 55


async def test_an_entry_already_due_goes_straight_to_the_stream(env: Env) -> None:
    clock = ManualClock()
    scheduler = env.scheduler(clock)
    await scheduler.schedule([_entry(_task("t-now", partition_key="k"), clock.now())])
    assert env.schedules() == []
    [record] = env.stream_records()
    assert record["PartitionKey"] == "k"
    assert decode_task(record["Data"]).id == "t-now"


# -- SQS DelaySeconds -----------------------------------------------------------------------


async def test_short_delays_on_sqs_routes_use_delay_seconds_with_the_real_clock(env: Env) -> None:
    sender = RecordingSqsDelay(env.clients, env.routing)
    scheduler = env.scheduler(SystemClock(), sqs_delay=sender)
    assert scheduler.use_sqs_delays
    now = datetime.now(UTC)
    await scheduler.schedule([_entry(_task("t-soon", SQS_QUEUE), now + timedelta(seconds=1))])
    assert sender.calls == [("t-soon", 1)]
    assert env.schedules() == []
    # moto honours DelaySeconds in real time: hidden at once, then visible.
    assert env.receive(env.queue_url) == []
    for _ in range(5):  # bounded short long-polls
        messages = env.receive(env.queue_url, wait=1)
        if messages:
            break
    assert [decode_task(m["Body"].encode()).id for m in messages] == ["t-soon"]


async def test_which_entries_take_the_sqs_delay_path(env: Env) -> None:
    sender = RecordingSqsDelay(env.clients, env.routing)
    clock = ManualClock()
    # An explicit use_sqs_delays=True lets a manual clock show the routing rule without waiting.
    scheduler = env.scheduler(clock, sqs_delay=sender, use_sqs_delays=True)
    now = clock.now()
    await scheduler.schedule(
        [
            _entry(_task("sqs-due", SQS_QUEUE), now - timedelta(seconds=5)),
            _entry(_task("sqs-299.5", SQS_QUEUE), now + timedelta(seconds=299.5)),
            _entry(_task("sqs-900", SQS_QUEUE), now + timedelta(seconds=900)),
            _entry(_task("sqs-901", SQS_QUEUE), now + timedelta(seconds=901)),
            _entry(_task("fifo-10", FIFO_QUEUE), now + timedelta(seconds=10)),
            _entry(_task("kinesis-10"), now + timedelta(seconds=10)),
        ]
    )
    assert sorted(sender.calls) == [("sqs-299.5", 300), ("sqs-900", 900), ("sqs-due", 0)]
    assert [s["Name"] for s in env.schedules()] == ["fifo-10.a0", "kinesis-10.a0", "sqs-901.a0"]


async def test_a_manual_clock_never_uses_sqs_delays(env: Env) -> None:
    sender = RecordingSqsDelay(env.clients, env.routing)
    clock = ManualClock()
    scheduler = env.scheduler(clock, sqs_delay=sender)
    assert not scheduler.use_sqs_delays
    await scheduler.schedule([_entry(_task("t-1", SQS_QUEUE), clock.now() + timedelta(seconds=5))])
    assert sender.calls == []
    [schedule] = env.schedules()
    assert schedule["Target"]["Arn"] == env.queue_arn
    assert env.receive(env.queue_url) == []
    clock.advance(seconds=5)
    assert await fire_due_schedules(scheduler) == 1
    assert [decode_task(m["Body"].encode()).id for m in env.receive(env.queue_url)] == ["t-1"]


async def test_sqs_delays_can_be_turned_off(env: Env) -> None:
    sender = RecordingSqsDelay(env.clients, env.routing)
    scheduler = env.scheduler(SystemClock(), sqs_delay=sender, use_sqs_delays=False)
    later = datetime.now(UTC) + timedelta(minutes=3)
    await scheduler.schedule([_entry(_task("t-1", SQS_QUEUE), later)])
    assert sender.calls == []
    assert [s["Name"] for s in env.schedules()] == ["t-1.a0"]


# -- input checks ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["x" * 65, "has space.a0", "slash/es", "colon:a0", "", "ünï.a0", "line.a0\n"],
)
async def test_bad_names_are_rejected_before_anything_is_created(env: Env, name: str) -> None:
    clock = ManualClock()
    scheduler = env.scheduler(clock)
    at = clock.now() + timedelta(minutes=1)
    with pytest.raises(InvalidScheduleNameError) as info:
        await scheduler.schedule([_entry(_task("t-ok"), at), _entry(_task("t-bad"), at, name)])
    assert info.value.name == name
    assert "64" in str(info.value)
    assert env.schedules() == []


async def test_a_name_of_64_allowed_characters_is_accepted(env: Env) -> None:
    clock = ManualClock()
    name = ("0189a0b1-c2d3-7e4f-8a9b-0c1d2e3f4a5b.a12_" + "x" * 64)[:64]
    await env.scheduler(clock).schedule(
        [_entry(_task("t-1"), clock.now() + timedelta(days=3), name)]
    )
    assert [s["Name"] for s in env.schedules()] == [name]


async def test_an_input_over_the_limit_names_the_task(env: Env) -> None:
    clock = ManualClock()
    scheduler = env.scheduler(clock)
    at = clock.now() + timedelta(minutes=1)
    big = Task(
        id="t-big", type="send", queue_id=STREAM_QUEUE, payload="x" * MAX_SCHEDULE_INPUT_BYTES
    )
    with pytest.raises(ScheduleInputTooLargeError) as info:
        await scheduler.schedule([_entry(_task("t-small"), at), _entry(big, at)])
    assert info.value.task_id == "t-big"
    assert "t-big" in str(info.value)
    assert "blob store" in str(info.value)
    assert info.value.size > info.value.limit == MAX_SCHEDULE_INPUT_BYTES
    assert env.schedules() == []


def test_constructor_checks(env: Env) -> None:
    clock = ManualClock()
    with pytest.raises(InvalidScheduleNameError):
        EventBridgeScheduler(
            env.clients, env.routing, group="bad group", role_arn=ROLE, clock=clock
        )
    with pytest.raises(ConfigurationError, match="role_arn"):
        EventBridgeScheduler(env.clients, env.routing, group="g", role_arn="", clock=clock)
    with pytest.raises(ConfigurationError, match="max_retry_attempts"):
        env.scheduler(clock, max_retry_attempts=186)
    with pytest.raises(ConfigurationError, match="max_event_age_seconds"):
        env.scheduler(clock, max_event_age_seconds=59)
    remote = AwsClients(AwsSettings(region="us-east-1"))
    with pytest.raises(ConfigurationError, match="simulate_firing"):
        EventBridgeScheduler(
            remote, env.routing, group="g", role_arn=ROLE, clock=clock, simulate_firing=True
        )


# -- cancel ---------------------------------------------------------------------------------


async def test_cancel_deletes_and_ignores_unknown_or_invalid_names(env: Env) -> None:
    clock = ManualClock()
    scheduler = env.scheduler(clock)
    at = clock.now() + timedelta(minutes=1)
    await scheduler.schedule([_entry(_task("t-1"), at), _entry(_task("t-2"), at)])
    await scheduler.cancel(["t-1.a0", "unknown.a0", "not a valid name", "x" * 80])
    assert [s["Name"] for s in env.schedules()] == ["t-2.a0"]
    await scheduler.cancel(["t-1.a0"])  # again: fine
    await scheduler.cancel([])


async def test_cancel_then_schedule_again_under_the_same_name(env: Env) -> None:
    clock = ManualClock()
    scheduler = env.scheduler(clock)
    task = _task("t-1")
    await scheduler.schedule([_entry(task, clock.now() + timedelta(minutes=1))])
    await scheduler.cancel(["t-1.a0"])
    await scheduler.schedule([_entry(task, clock.now() + timedelta(minutes=5))])
    clock.advance(minutes=1)
    assert await fire_due_schedules(scheduler) == 0
    clock.advance(minutes=4)
    assert await fire_due_schedules(scheduler) == 1
    assert len(env.stream_records()) == 1


# -- firing ---------------------------------------------------------------------------------


async def test_fire_due_schedules_with_an_app_or_explicit_parts(env: Env) -> None:
    clock = ManualClock()
    scheduler = env.scheduler(clock)
    app = TaskQueue(clock=clock, scheduler=scheduler)
    start = clock.now()
    await scheduler.schedule(
        [
            _entry(_task("t-1"), start + timedelta(minutes=1)),
            _entry(_task("t-2"), start + timedelta(minutes=2)),
        ]
    )
    clock.advance(minutes=1)
    assert await fire_due_schedules(app) == 1
    assert await fire_due_schedules(clients=env.clients, group=env.group, now=clock.now()) == 0
    later = start + timedelta(minutes=2)
    assert await fire_due_schedules(clients=env.clients, group=env.group, now=later) == 1
    assert [decode_task(r["Data"]).id for r in env.stream_records()] == ["t-1", "t-2"]
    with pytest.raises(ConfigurationError, match="EventBridgeScheduler"):
        await fire_due_schedules(TaskQueue(clock=clock))
    with pytest.raises(ConfigurationError):
        await fire_due_schedules(clients=env.clients, group=env.group)


async def test_fire_due_exists_only_when_simulating(env: Env) -> None:
    clock = ManualClock()
    plain = env.scheduler(clock)
    assert not hasattr(plain, "fire_due")
    assert not hasattr(plain, "next_due")
    assert TaskQueue(clock=clock, scheduler=plain).next_due() is None

    simulated = env.scheduler(clock, simulate_firing=True)
    app = TaskQueue(clock=clock, scheduler=simulated)
    assert app.next_due() is None
    at = clock.now() + timedelta(seconds=42)
    await simulated.schedule([_entry(_task("t-1"), at), _entry(_task("t-2"), at + timedelta(1))])
    assert app.next_due() == at
    assert await simulated.fire_due(clock.now()) == 0
    assert await simulated.fire_due(at) == 1
    assert app.next_due() == at + timedelta(1)
    assert [decode_task(r["Data"]).id for r in env.stream_records()] == ["t-1"]


async def test_a_failed_action_keeps_the_schedule(env: Env) -> None:
    clock = ManualClock()
    scheduler = env.scheduler(clock)
    await scheduler.schedule([_entry(_task("t-1", SQS_QUEUE), clock.now() + timedelta(seconds=1))])
    env.clients.sync("sqs").delete_queue(QueueUrl=env.queue_url)
    clock.advance(seconds=1)
    with pytest.raises(ClientError):
        await fire_due_schedules(scheduler)
    [schedule] = env.schedules()
    assert schedule["Name"] == "t-1.a0"
    assert schedule["Target"]["Arn"] == env.queue_arn


async def test_concurrent_firers_fire_each_schedule_once(serial_aws_settings: AwsSettings) -> None:
    env = _make_env(serial_aws_settings)
    clock = ManualClock()
    scheduler = env.scheduler(clock)
    at = clock.now() + timedelta(seconds=1)
    await scheduler.schedule([_entry(_task(f"t-{i}"), at) for i in range(12)])
    clock.advance(seconds=1)
    fired = await asyncio.gather(*(fire_due_schedules(scheduler) for _ in range(3)))
    assert sum(fired) == 12
    ids = [decode_task(r["Data"]).id for r in env.stream_records()]
    assert sorted(ids) == sorted(f"t-{i}" for i in range(12))
    await env.clients.aclose()
