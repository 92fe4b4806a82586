"""SQS transport and source on moto: batches of ten within the size limit, FIFO group and
deduplication ids, compressed bodies, DelaySeconds sends, partial batch failures, the claim
check through the engine."""

from __future__ import annotations

import base64
import json
import logging
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.support.aws import unique
from tq_aws import TaskQueue
from tq_aws.backends.aws.clients import AwsClients, AwsSettings
from tq_aws.backends.aws.sqs import SqsSource, SqsTransport, deduplication_id_of, group_id_of
from tq_aws.backends.memory.blob_store import MemoryBlobStore
from tq_aws.core.codec import decode_sqs_body, decode_task, encode_sqs_body
from tq_aws.core.task import Task
from tq_aws.errors import (
    AcknowledgeError,
    CodecError,
    ConfigurationError,
    InvalidDelayError,
    InvalidPartitionKeyError,
    RecordsNotPublishedError,
    RecordTooLargeError,
)
from tq_aws.ports import Delivery

QUEUE = "emails"


def make(i: int, key: str | None = None, payload: Any = None, **fields: Any) -> Task:
    return Task(
        id=f"t-{i:04d}",
        type="send",
        queue_id=QUEUE,
        partition_key=key,
        payload={"i": i} if payload is None else payload,
        **fields,
    )


@dataclass
class Env:
    clients: AwsClients
    url: str
    fifo_url: str

    def raw_messages(self, url: str, n: int = 10) -> list[dict[str, Any]]:
        return list(
            self.clients.sync("sqs")
            .receive_message(
                QueueUrl=url,
                MaxNumberOfMessages=n,
                WaitTimeSeconds=0,
                MessageSystemAttributeNames=["All"],
            )
            .get("Messages", [])
        )


@pytest.fixture
async def env(aws_settings: AwsSettings) -> AsyncIterator[Env]:
    clients = AwsClients(aws_settings)
    sqs = clients.sync("sqs")
    url = sqs.create_queue(QueueName=unique("tq-sqs"))["QueueUrl"]
    fifo_url = sqs.create_queue(
        QueueName=unique("tq-sqs") + ".fifo", Attributes={"FifoQueue": "true"}
    )["QueueUrl"]
    yield Env(clients, url, fifo_url)
    await clients.aclose()


async def record_calls(clients: AwsClients, operation: str) -> list[list[dict[str, Any]]]:
    """Keep the Entries of every call of a batch operation the client makes."""
    calls: list[list[dict[str, Any]]] = []

    def hook(params: dict[str, Any], **_: Any) -> None:
        calls.append(list(params["Entries"]))

    client = await clients.get("sqs")
    client.meta.events.register(f"before-parameter-build.sqs.{operation}", hook)
    return calls


async def drain(source: SqsSource) -> list[Delivery]:
    out: list[Delivery] = []
    for _ in range(100):
        batch = await source.receive(10)
        if not batch:
            return out
        out.extend(batch)
        await source.ack(batch)
    raise AssertionError("the queue never ran dry")


# -- batching --------------------------------------------------------------------------------


async def test_sends_batches_of_ten(env: Env) -> None:
    calls = await record_calls(env.clients, "SendMessageBatch")
    tasks = [make(i) for i in range(25)]
    await SqsTransport(env.url, env.clients).publish(tasks)
    assert [len(c) for c in calls] == [10, 10, 5]
    got = await drain(SqsSource(env.url, env.clients))
    assert sorted(d.task.id for d in got if d.task) == [t.id for t in tasks]


async def test_batches_stay_within_the_size_limit(env: Env) -> None:
    calls = await record_calls(env.clients, "SendMessageBatch")
    tasks = [make(i, payload="p" * 300_000) for i in range(5)]
    await SqsTransport(env.url, env.clients).publish(tasks)
    assert [len(c) for c in calls] == [3, 2]
    for call in calls:
        assert sum(len(e["MessageBody"].encode()) for e in call) <= 1_048_576
    assert len(await drain(SqsSource(env.url, env.clients))) == 5


# -- FIFO ------------------------------------------------------------------------------------


async def test_fifo_group_is_the_partition_key_and_dedup_id_the_attempt(env: Env) -> None:
    tasks = [
        make(1, "user-1"),
        make(2),
        make(3, "user-1", execution_stats={"retry_count": 2}),
    ]
    await SqsTransport(env.fifo_url, env.clients).publish(tasks)
    seen = {}
    for message in env.raw_messages(env.fifo_url):
        attrs = message["Attributes"]
        seen[decode_task(decode_sqs_body(message["Body"])).id] = (
            attrs["MessageGroupId"],
            attrs["MessageDeduplicationId"],
        )
    assert seen == {
        "t-0001": ("user-1", "t-0001.a0"),
        "t-0002": ("t-0002", "t-0002.a0"),
        "t-0003": ("user-1", "t-0003.a2"),
    }


async def test_fifo_same_attempt_is_delivered_once_and_a_retry_again(env: Env) -> None:
    transport = SqsTransport(env.fifo_url, env.clients)
    await transport.publish([make(1, "k")])
    await transport.publish([make(1, "k")])  # the same attempt: deduplicated
    await transport.publish([make(1, "k", execution_stats={"retry_count": 1})])
    got = await drain(SqsSource(env.fifo_url, env.clients))
    assert [(d.task.id, d.task.retry_count) for d in got if d.task] == [
        ("t-0001", 0),
        ("t-0001", 1),
    ]
    assert {d.partition_key for d in got} == {"k"}


async def test_fifo_group_ids_sqs_would_not_take_are_sent_as_their_digest(env: Env) -> None:
    """Any key add_tasks accepts works on a FIFO queue: one over 128 characters, or with
    characters SQS does not take (an emoji), is sent as its SHA-256, the same for the same key,
    so the key's order holds."""
    transport = SqsTransport(env.fifo_url, env.clients)
    long_key, emoji = "g" * 129, "caf\u00e9 \U0001f600"
    await transport.publish(
        [make(1, "ok"), make(2, long_key), make(3, emoji), make(4, long_key), make(5, "g" * 128)]
    )
    got = await drain(SqsSource(env.fifo_url, env.clients))
    groups = {d.task.id: d.partition_key for d in got if d.task}
    assert groups["t-0001"] == "ok" and groups["t-0005"] == "g" * 128
    assert groups["t-0002"] == groups["t-0004"] == group_id_of(make(2, long_key))
    assert groups["t-0003"] == group_id_of(make(3, emoji)) != groups["t-0002"]
    assert all(len(groups[t]) == 64 for t in ("t-0002", "t-0003"))
    assert [d.task.id for d in got if d.task and d.partition_key == groups["t-0002"]] == [
        "t-0002",
        "t-0004",
    ]
    with pytest.raises(InvalidPartitionKeyError):
        group_id_of(Task(type="send", queue_id=QUEUE))  # neither key nor id


def test_long_or_odd_task_ids_get_a_hashed_deduplication_id() -> None:
    assert deduplication_id_of(make(1)) == "t-0001.a0"
    long_id = Task(id="x" * 130, type="t", queue_id="q")
    spaced = Task(id="has space", type="t", queue_id="q")
    for t in (long_id, spaced):
        value = deduplication_id_of(t)
        assert len(value) == 64 and int(value, 16) >= 0
    assert deduplication_id_of(long_id) != deduplication_id_of(
        long_id.model_copy(update={"execution_stats": {"retry_count": 1}})
    )


# -- bodies ----------------------------------------------------------------------------------


async def test_compressed_bodies_are_base64_and_round_trip(env: Env) -> None:
    task = make(1, payload={"text": "hello " * 500})
    await SqsTransport(env.url, env.clients, compress_over=100).publish([task])
    [message] = env.raw_messages(env.url)
    body = message["Body"]
    assert not body.startswith("{") and len(body) < 1_000
    assert zlib.decompress(base64.b64decode(body)).startswith(b'{"v":1')
    env.clients.sync("sqs").change_message_visibility(
        QueueUrl=env.url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
    )
    [delivery] = await drain(SqsSource(env.url, env.clients))
    assert delivery.task == task


async def test_small_records_stay_json_text(env: Env) -> None:
    await SqsTransport(env.url, env.clients, compress_over=10_000).publish([make(1)])
    [message] = env.raw_messages(env.url)
    assert message["Body"].startswith('{"v":1,"task":')


def test_bodies_with_characters_sqs_refuses_travel_as_base64() -> None:
    data = '{"v":1,"task":{"x":"\uffff"}}'.encode()
    body = encode_sqs_body(data)
    assert not body.startswith("{")
    assert decode_sqs_body(body) == data
    with pytest.raises(CodecError) as caught:
        decode_sqs_body("not base64 at all!")
    assert caught.value.reason == "malformed"


# -- delays ----------------------------------------------------------------------------------


async def test_send_delayed_arrives_later_not_at_once(env: Env) -> None:
    # The one real-time test: SQS (and moto) count DelaySeconds in real seconds.
    transport = SqsTransport(env.url, env.clients)
    await transport.send_delayed(make(1), 1)
    assert await SqsSource(env.url, env.clients).receive(10) == []
    polling = SqsSource(env.url, env.clients, wait_seconds=1)
    got: list[Delivery] = []
    for _ in range(5):  # at most ~5 s of long polls
        got = await polling.receive(10)
        if got:
            break
    assert [d.task.id for d in got if d.task] == ["t-0001"]


async def test_send_delayed_refuses_fifo_queues_and_delays_out_of_range(env: Env) -> None:
    with pytest.raises(InvalidDelayError) as fifo:
        await SqsTransport(env.fifo_url, env.clients).send_delayed(make(1), 5)
    assert fifo.value.field == "queue_url" and "FIFO" in str(fifo.value)
    transport = SqsTransport(env.url, env.clients)
    for bad in (-1, 901, 1.5):
        with pytest.raises(InvalidDelayError) as caught:
            await transport.send_delayed(make(1), bad)  # type: ignore[arg-type]
        assert caught.value.field == "delay_seconds"
    assert env.raw_messages(env.url) == []


# -- partial failures ------------------------------------------------------------------------


@dataclass
class FlakySqs:
    """Stands in for the aioboto3 client: SendMessageBatch entries of chosen tasks fail a
    chosen number of times (reported under ``Failed``); the others go through to moto."""

    real: Any
    fail: dict[str, int]
    sender_fault: bool = False
    calls: list[list[tuple[str, str]]] = field(default_factory=list)
    attempts: dict[str, int] = field(default_factory=dict)

    async def send_message_batch(self, **kwargs: Any) -> dict[str, Any]:
        entries = kwargs["Entries"]
        ids = [decode_task(decode_sqs_body(e["MessageBody"])).id or "" for e in entries]
        self.calls.append(
            [(e.get("MessageGroupId", ""), i) for e, i in zip(entries, ids, strict=True)]
        )
        passing, failed = [], []
        for entry, task_id in zip(entries, ids, strict=True):
            self.attempts[task_id] = self.attempts.get(task_id, 0) + 1
            if self.fail.get(task_id, 0) > 0:
                self.fail[task_id] -= 1
                failed.append(
                    {
                        "Id": entry["Id"],
                        "SenderFault": self.sender_fault,
                        "Code": "InvalidParameterValue" if self.sender_fault else "InternalError",
                        "Message": "injected",
                    }
                )
            else:
                passing.append(entry)
        successful = []
        if passing:
            response = await self.real.send_message_batch(
                QueueUrl=kwargs["QueueUrl"], Entries=passing
            )
            successful = response.get("Successful", [])
        return {"Successful": successful, "Failed": failed}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


async def flaky(
    env: Env, monkeypatch: pytest.MonkeyPatch, fail: dict[str, int], **kwargs: Any
) -> FlakySqs:
    proxy = FlakySqs(await env.clients.get("sqs"), dict(fail), **kwargs)
    real_get = env.clients.get

    async def get(service: str) -> Any:
        return proxy if service == "sqs" else await real_get(service)

    monkeypatch.setattr(env.clients, "get", get)
    return proxy


async def test_failed_entries_are_retried(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    proxy = await flaky(env, monkeypatch, {"t-0003": 2, "t-0011": 1})
    await SqsTransport(env.url, env.clients, base_backoff=0.0).publish([make(i) for i in range(12)])
    assert proxy.attempts["t-0003"] == 3 and proxy.attempts["t-0011"] == 2
    monkeypatch.undo()
    got = await drain(SqsSource(env.url, env.clients))
    assert sorted(d.task.id for d in got if d.task) == [f"t-{i:04d}" for i in range(12)]


async def test_fifo_failures_never_reorder_a_group(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    tasks = [make(i, "AB"[i % 2]) for i in range(8)]  # A: t-0000, t-0002, ...
    proxy = await flaky(env, monkeypatch, {"t-0000": 2, "t-0003": 1})
    await SqsTransport(env.fifo_url, env.clients, base_backoff=0.0).publish(tasks)
    for call in proxy.calls:
        groups = [g for g, _ in call]
        assert len(groups) == len(set(groups)), f"two messages of one group in a call: {call}"
    monkeypatch.undo()
    got = await drain(SqsSource(env.fifo_url, env.clients))
    order: dict[str, list[str]] = {}
    for d in got:
        assert d.task is not None
        order.setdefault(d.task.partition_key or "", []).append(d.task.id or "")
    assert order == {
        "A": ["t-0000", "t-0002", "t-0004", "t-0006"],
        "B": ["t-0001", "t-0003", "t-0005", "t-0007"],
    }


async def test_gives_up_after_max_attempts_naming_the_tasks(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy = await flaky(env, monkeypatch, {"t-0001": 99})
    transport = SqsTransport(env.url, env.clients, max_attempts=3, base_backoff=0.0)
    with pytest.raises(RecordsNotPublishedError) as caught:
        await transport.publish([make(i) for i in range(4)])
    assert caught.value.task_ids == ["t-0001"]  # standard queue: the others went out
    assert caught.value.reasons == {"t-0001": "InternalError"}
    assert proxy.attempts["t-0001"] == 3


async def test_the_senders_fault_is_not_retried(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    proxy = await flaky(env, monkeypatch, {"t-0000": 99}, sender_fault=True)
    transport = SqsTransport(env.url, env.clients, base_backoff=0.0)
    with pytest.raises(RecordsNotPublishedError) as caught:
        await transport.publish([make(0), make(1)])
    assert caught.value.task_ids == ["t-0000"]
    assert proxy.attempts["t-0000"] == 1


# -- claim check -----------------------------------------------------------------------------


async def test_oversized_message_keeps_its_payload_in_the_blob_store(env: Env) -> None:
    blobs = MemoryBlobStore()
    app = TaskQueue(
        transport=SqsTransport(env.url, env.clients, blob_store=blobs, max_message_bytes=4_000),
        source=SqsSource(env.url, env.clients),
        blob_store=blobs,
    )
    payload = {"body": "b" * 10_000}
    seen: list[Any] = []

    @app.executor(QUEUE, "send")
    def run(task: Task, actions: Any) -> None:
        seen.append(task.payload)
        actions.success(task)

    [task_id] = await app.add_tasks([Task(type="send", queue_id=QUEUE, payload=payload)])
    [message] = env.raw_messages(env.url)
    marker = decode_task(decode_sqs_body(message["Body"])).payload
    size = len(json.dumps(payload, separators=(",", ":")))
    assert marker == {"$tq_blob": f"memory://payloads/{task_id}", "size": size}
    env.clients.sync("sqs").change_message_visibility(
        QueueUrl=env.url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
    )
    assert await app.run_until_idle() == 1
    assert seen == [payload]


async def test_oversized_message_without_a_blob_store_raises(env: Env) -> None:
    transport = SqsTransport(env.url, env.clients, max_message_bytes=4_000)
    with pytest.raises(RecordTooLargeError) as caught:
        await transport.publish([make(1, payload="c" * 5_000)])
    assert caught.value.task_id == "t-0001" and caught.value.limit == 4_000
    assert env.raw_messages(env.url) == []


# -- the source ------------------------------------------------------------------------------


async def test_receive_asks_for_at_most_ten_with_the_receive_count(env: Env) -> None:
    seen: list[dict[str, Any]] = []

    def hook(params: dict[str, Any], **_: Any) -> None:
        seen.append(dict(params))

    client = await env.clients.get("sqs")
    client.meta.events.register("before-parameter-build.sqs.ReceiveMessage", hook)
    await SqsTransport(env.url, env.clients).publish([make(i) for i in range(12)])
    source = SqsSource(env.url, env.clients, visibility_timeout=30)
    batch = await source.receive(100)
    assert len(batch) == 10
    assert seen[0]["MaxNumberOfMessages"] == 10
    assert seen[0]["VisibilityTimeout"] == 30
    assert "ApproximateReceiveCount" in seen[0]["MessageSystemAttributeNames"]
    assert all(d.token and d.position for d in batch)


async def test_ack_of_an_expired_receipt_handle_is_not_an_error(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    await SqsTransport(env.url, env.clients).publish([make(1)])
    source = SqsSource(env.url, env.clients)
    [delivery] = await source.receive(1)
    env.clients.sync("sqs").delete_message(QueueUrl=env.url, ReceiptHandle=delivery.token)
    bogus = Delivery(queue_id=env.url, data=b"", position="m-1", token="not-a-handle")
    with caplog.at_level(logging.INFO, logger="tq_aws.backends.aws.sqs"):
        await source.ack([delivery, bogus])  # refused as the sender's fault: logged only
    assert [r.levelno for r in caplog.records] == [logging.INFO]
    assert "ReceiptHandleIsInvalid" in caplog.records[0].getMessage()


async def test_ack_raises_when_sqs_keeps_failing(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    await SqsTransport(env.url, env.clients).publish([make(1)])
    source = SqsSource(env.url, env.clients, max_attempts=2)
    [delivery] = await source.receive(1)
    real = await env.clients.get("sqs")

    class Failing:
        async def delete_message_batch(self, **kwargs: Any) -> dict[str, Any]:
            return {
                "Failed": [
                    {"Id": e["Id"], "SenderFault": False, "Code": "InternalError"}
                    for e in kwargs["Entries"]
                ]
            }

        def __getattr__(self, name: str) -> Any:
            return getattr(real, name)

    async def get(service: str) -> Any:
        return Failing()

    monkeypatch.setattr(env.clients, "get", get)
    with pytest.raises(AcknowledgeError) as caught:
        await source.ack([delivery])
    assert caught.value.message_ids == [delivery.position]


def test_options_are_checked(env: Env) -> None:
    with pytest.raises(ConfigurationError, match="queue_url"):
        SqsTransport("emails", env.clients)
    with pytest.raises(ConfigurationError, match="wait_seconds"):
        SqsSource(env.url, env.clients, wait_seconds=21)
    with pytest.raises(ConfigurationError, match="visibility_timeout"):
        SqsSource(env.url, env.clients, visibility_timeout=-1)
