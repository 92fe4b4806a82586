"""Kinesis transport and source on moto: batching limits, the claim check through the engine,
ordering per partition key under injected partial failures, giving up, resharding, and
sequence numbers compared as numbers. Tests that publish more than one call at once use the
serialized moto server (see ``env``)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.support.aws import unique
from tq_aws import TaskQueue
from tq_aws.backends.aws.clients import AwsClients, AwsSettings
from tq_aws.backends.aws.kinesis import (
    MAX_BYTES_PER_CALL,
    KinesisSource,
    KinesisTransport,
)
from tq_aws.backends.aws.s3 import S3BlobStore
from tq_aws.core.codec import decode_task
from tq_aws.core.task import Task
from tq_aws.errors import (
    ConfigurationError,
    InvalidPartitionKeyError,
    RecordsNotPublishedError,
    RecordTooLargeError,
)
from tq_aws.ports import Delivery

QUEUE = "media"


def make(i: int, key: str | None = None, payload: Any = None) -> Task:
    return Task(
        id=f"t-{i:04d}",
        type="work",
        queue_id=QUEUE,
        partition_key=key,
        payload={"i": i} if payload is None else payload,
    )


@dataclass
class Env:
    clients: AwsClients
    stream: str

    def read_stream(self) -> list[tuple[str, str, str]]:
        """Every record as (shard, partition key, task id), per shard in sequence order."""
        kinesis = self.clients.sync("kinesis")
        out = []
        for shard in kinesis.list_shards(StreamName=self.stream)["Shards"]:
            iterator = kinesis.get_shard_iterator(
                StreamName=self.stream,
                ShardId=shard["ShardId"],
                ShardIteratorType="TRIM_HORIZON",
            )["ShardIterator"]
            while True:
                page = kinesis.get_records(ShardIterator=iterator, Limit=10_000)
                for r in page["Records"]:
                    out.append((shard["ShardId"], r["PartitionKey"], decode_task(r["Data"]).id))
                iterator = page["NextShardIterator"]
                if not page["Records"]:
                    break
        return out

    def per_key(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for _, key, task_id in self.read_stream():
            out.setdefault(key, []).append(task_id or "")
        return out


@pytest.fixture
async def env(serial_aws_settings: AwsSettings) -> AsyncIterator[Env]:
    # The serialized server: the transport makes a round's calls concurrently, and moto's
    # Kinesis numbers records with a read-then-write that concurrent calls race on (records of
    # one shard get the same sequence number and one overwrites the other).
    clients = AwsClients(serial_aws_settings)
    stream = unique("tq-kinesis")
    clients.sync("kinesis").create_stream(StreamName=stream, ShardCount=2)
    yield Env(clients, stream)
    await clients.aclose()


async def record_put_records(clients: AwsClients) -> list[list[dict[str, Any]]]:
    """Register a hook that keeps the Records of every PutRecords call the client makes."""
    calls: list[list[dict[str, Any]]] = []

    def hook(params: dict[str, Any], **_: Any) -> None:
        calls.append(list(params["Records"]))

    client = await clients.get("kinesis")
    client.meta.events.register("before-parameter-build.kinesis.PutRecords", hook)
    return calls


# -- batching --------------------------------------------------------------------------------


async def test_1200_small_tasks_of_distinct_keys_cost_three_calls(env: Env) -> None:
    calls = await record_put_records(env.clients)
    transport = KinesisTransport(env.stream, env.clients)
    tasks = [make(i) for i in range(1200)]
    await transport.publish(tasks)
    assert [len(c) for c in calls] == [500, 500, 200]
    stored = env.read_stream()
    assert sorted(t for _, _, t in stored) == [t.id for t in tasks]


async def test_calls_are_split_at_five_mebibytes(env: Env) -> None:
    calls = await record_put_records(env.clients)
    transport = KinesisTransport(env.stream, env.clients)
    tasks = [make(i, payload="p" * 1_000_000) for i in range(6)]
    await transport.publish(tasks)
    sizes = [sum(len(r["Data"]) + len(r["PartitionKey"]) for r in c) for c in calls]
    assert [len(c) for c in calls] == [5, 1]
    assert all(s <= MAX_BYTES_PER_CALL for s in sizes)
    assert len(env.read_stream()) == 6


async def test_a_key_has_one_record_per_call(env: Env) -> None:
    calls = await record_put_records(env.clients)
    transport = KinesisTransport(env.stream, env.clients)
    await transport.publish([make(i, "hot" if i < 3 else None) for i in range(6)])
    assert [sorted(r["PartitionKey"] for r in c) for c in calls] == [
        ["hot", "t-0003", "t-0004", "t-0005"],
        ["hot"],
        ["hot"],
    ]
    assert env.per_key()["hot"] == ["t-0000", "t-0001", "t-0002"]


# -- claim check -----------------------------------------------------------------------------


async def test_oversized_record_goes_through_the_blob_store_and_the_engine_reads_it_back(
    env: Env,
) -> None:
    blobs = S3BlobStore(unique("tq-blobs"), env.clients)
    await blobs.ensure_bucket()
    app = TaskQueue(
        transport=KinesisTransport(env.stream, env.clients, blob_store=blobs),
        source=KinesisSource(env.stream, env.clients),
        blob_store=blobs,
    )
    big = {"data": "x" * (1024 * 1024 + 100), "n": 7}
    seen: list[Any] = []

    @app.executor(QUEUE, "big")
    async def run(task: Task, actions: Any) -> None:
        seen.append(task.payload)
        actions.success(task, {"len": len(task.payload["data"])})

    [task_id] = await app.add_tasks([Task(type="big", queue_id=QUEUE, payload=big)])
    # On the stream the record carries only the marker.
    [(_, _, stored_id)] = env.read_stream()
    assert stored_id == task_id
    raw = _raw_records(env)[0]
    assert json.loads(raw)["task"]["payload"] == {
        "$tq_blob": f"s3://{blobs.bucket}/tq/payloads/{task_id}",
        "size": len(json.dumps(big, separators=(",", ":"))),
    }
    assert await app.run_until_idle() == 1
    assert seen == [big]


def _raw_records(env: Env) -> list[bytes]:
    kinesis = env.clients.sync("kinesis")
    out = []
    for shard in kinesis.list_shards(StreamName=env.stream)["Shards"]:
        it = kinesis.get_shard_iterator(
            StreamName=env.stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        out.extend(r["Data"] for r in kinesis.get_records(ShardIterator=it)["Records"])
    return out


async def test_oversized_record_without_a_blob_store_raises_naming_task_and_limit(
    env: Env,
) -> None:
    transport = KinesisTransport(env.stream, env.clients, max_record_bytes=2_000)
    with pytest.raises(RecordTooLargeError) as caught:
        await transport.publish([make(1), make(2, payload="y" * 3_000)])
    assert caught.value.task_id == "t-0002"
    assert caught.value.limit == 2_000
    assert "t-0002" in str(caught.value) and "2000" in str(caught.value)
    assert env.read_stream() == []  # nothing of the call was sent


async def test_compression_can_keep_a_record_under_the_limit(env: Env) -> None:
    transport = KinesisTransport(
        env.stream, env.clients, max_record_bytes=2_000, compress_over=1_000
    )
    await transport.publish([make(1, payload="z" * 50_000)])
    [data] = _raw_records(env)
    assert data[:1] == b"\x78" and len(data) < 2_000
    assert decode_task(data).payload == "z" * 50_000


async def test_partition_key_over_256_characters_is_refused(env: Env) -> None:
    transport = KinesisTransport(env.stream, env.clients)
    with pytest.raises(InvalidPartitionKeyError) as caught:
        await transport.publish([make(1, "ok"), make(2, "k" * 257)])
    assert caught.value.field == "partition_key"
    assert caught.value.task_id == "t-0002"
    assert "256" in str(caught.value)
    assert env.read_stream() == []
    await transport.publish([make(3, "k" * 256)])
    assert [k for _, k, _ in env.read_stream()] == ["k" * 256]


def test_options_are_checked(env: Env) -> None:
    with pytest.raises(ConfigurationError, match="max_attempts"):
        KinesisTransport(env.stream, env.clients, max_attempts=0)
    with pytest.raises(ConfigurationError, match="max_request_bytes"):
        KinesisTransport(env.stream, env.clients, max_record_bytes=6 * 1024 * 1024)
    with pytest.raises(ConfigurationError, match="start"):
        KinesisSource(env.stream, env.clients, start="EARLIEST")  # type: ignore[arg-type]


# -- partial failures ------------------------------------------------------------------------


@dataclass
class FlakyKinesis:
    """Stands in for the aioboto3 client: PutRecords entries of chosen tasks fail (with an
    ErrorCode, as Kinesis reports partial failures) a chosen number of times; the other
    entries of the call go through to moto."""

    real: Any
    fail: dict[str, int]
    code: str = "ProvisionedThroughputExceededException"
    calls: list[list[tuple[str, str]]] = field(default_factory=list)
    attempts: dict[str, int] = field(default_factory=dict)
    raise_first: ClientError | None = None

    async def put_records(self, **kwargs: Any) -> dict[str, Any]:
        records = kwargs["Records"]
        ids = [decode_task(r["Data"]).id or "" for r in records]
        self.calls.append([(r["PartitionKey"], i) for r, i in zip(records, ids, strict=True)])
        if self.raise_first is not None:
            exc, self.raise_first = self.raise_first, None
            raise exc
        failing = []
        for task_id in ids:
            self.attempts[task_id] = self.attempts.get(task_id, 0) + 1
            left = self.fail.get(task_id, 0)
            failing.append(left > 0)
            if left > 0:
                self.fail[task_id] = left - 1
        passing = [r for r, f in zip(records, failing, strict=True) if not f]
        results: Iterator[dict[str, Any]] = iter([])
        if passing:
            response = await self.real.put_records(StreamName=kwargs["StreamName"], Records=passing)
            results = iter(response["Records"])
        out = [
            {"ErrorCode": self.code, "ErrorMessage": "injected"} if f else next(results)
            for f in failing
        ]
        return {"FailedRecordCount": sum(failing), "Records": out}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


async def flaky(
    env: Env, monkeypatch: pytest.MonkeyPatch, fail: dict[str, int], **kwargs: Any
) -> FlakyKinesis:
    proxy = FlakyKinesis(await env.clients.get("kinesis"), dict(fail), **kwargs)
    real_get = env.clients.get

    async def get(service: str) -> Any:
        return proxy if service == "kinesis" else await real_get(service)

    monkeypatch.setattr(env.clients, "get", get)
    return proxy


def interleaved(keys: list[str], per_key: int) -> list[Task]:
    return [make(i, keys[i % len(keys)]) for i in range(len(keys) * per_key)]


async def test_partial_failures_never_reorder_a_partition_key(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    tasks = interleaved(["A", "B", "C"], 4)  # A: t-0000, t-0003, ...; B: t-0001, ...
    proxy = await flaky(env, monkeypatch, {"t-0000": 2, "t-0004": 1, "t-0011": 1})
    transport = KinesisTransport(env.stream, env.clients, base_backoff=0.0)
    await transport.publish(tasks)

    expected: dict[str, list[str]] = {}
    for t in tasks:
        expected.setdefault(t.partition_key or "", []).append(t.id or "")
    assert env.per_key() == expected  # every record once, each key in publish order
    for call in proxy.calls:
        keys = [k for k, _ in call]
        assert len(keys) == len(set(keys)), f"two records of one key in a call: {call}"
    # B and C kept flowing while A's first record waited for its retries.
    assert ("B", "t-0004") in proxy.calls[1] and ("C", "t-0005") in proxy.calls[1]
    assert ("A", "t-0003") not in proxy.calls[1]
    assert proxy.attempts["t-0000"] == 3


async def test_internal_failures_are_retried_too(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    await flaky(env, monkeypatch, {"t-0001": 1}, code="InternalFailure")
    transport = KinesisTransport(env.stream, env.clients, base_backoff=0.0)
    await transport.publish(interleaved(["A"], 3))
    assert env.per_key() == {"A": ["t-0000", "t-0001", "t-0002"]}


async def test_gives_up_after_max_attempts_naming_the_tasks_not_published(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    tasks = interleaved(["A", "B"], 3)  # A: t-0000, t-0002, t-0004
    proxy = await flaky(env, monkeypatch, {"t-0002": 99})
    transport = KinesisTransport(env.stream, env.clients, max_attempts=3, base_backoff=0.0)
    with pytest.raises(RecordsNotPublishedError) as caught:
        await transport.publish(tasks)
    assert caught.value.task_ids == ["t-0002", "t-0004"]
    assert caught.value.reasons["t-0002"] == "ProvisionedThroughputExceededException"
    assert "t-0002" in str(caught.value) and "t-0004" in str(caught.value)
    assert proxy.attempts["t-0002"] == 3
    assert "t-0004" not in proxy.attempts  # held back behind its key's failed record
    assert env.per_key() == {"A": ["t-0000"], "B": ["t-0001", "t-0003", "t-0005"]}


async def test_a_throttled_call_is_retried_whole(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    throttled = ClientError(
        {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"}},
        "PutRecords",
    )
    proxy = await flaky(env, monkeypatch, {}, raise_first=throttled)
    transport = KinesisTransport(env.stream, env.clients, base_backoff=0.0)
    await transport.publish(interleaved(["A", "B"], 2))
    assert len(proxy.calls) == 3  # the throttled call, then both rounds again
    assert env.per_key() == {"A": ["t-0000", "t-0002"], "B": ["t-0001", "t-0003"]}


async def test_a_missing_stream_raises_a_publish_error_with_every_task(
    aws_settings: AwsSettings,
) -> None:
    clients = AwsClients(aws_settings)
    transport = KinesisTransport("no-such-stream", clients)
    with pytest.raises(RecordsNotPublishedError) as caught:
        await transport.publish([make(1, "a"), make(2, "a")])
    assert caught.value.task_ids == ["t-0001", "t-0002"]
    assert isinstance(caught.value.__cause__, ClientError)
    await clients.aclose()


# -- the source ------------------------------------------------------------------------------


async def drain(source: KinesisSource, max_records: int = 5) -> list[Delivery]:
    out: list[Delivery] = []
    for _ in range(200):
        batch = await source.receive(max_records)
        if not batch:
            return out
        out.extend(batch)
        await source.ack(batch)
    raise AssertionError("the source never ran dry")


async def test_sequence_numbers_are_compared_as_numbers(aws_settings: AwsSettings) -> None:
    clients = AwsClients(aws_settings)
    stream = unique("tq-seq")
    clients.sync("kinesis").create_stream(StreamName=stream, ShardCount=1)
    await KinesisTransport(stream, clients).publish([make(i, "k") for i in range(12)])
    source = KinesisSource(stream, clients)
    first = await source.receive(8)
    await source.ack(first)
    shard = first[0].token[0]
    assert source.checkpoint(shard) == "8"
    batch = await source.receive(3)  # sequence numbers 9, 10, 11
    assert [d.position.rsplit("/", 1)[1] for d in batch] == ["9", "10", "11"]
    await source.nack(batch[1:])  # back to "10", which as a string sorts before "9"
    await source.ack(batch[:1])
    assert source.checkpoint(shard) == "9"
    again = await source.receive(10)
    assert [d.position.rsplit("/", 1)[1] for d in again] == ["10", "11", "12"]
    await source.ack(again)
    assert source.checkpoint(shard) == "12"
    assert source.in_flight == 0
    await clients.aclose()


async def test_latest_starts_after_what_is_already_there(env: Env) -> None:
    transport = KinesisTransport(env.stream, env.clients)
    await transport.publish([make(1, "a"), make(2, "b")])
    source = KinesisSource(env.stream, env.clients, start="LATEST")
    assert await source.receive(10) == []
    await transport.publish([make(3, "a"), make(4, "b")])
    got = await drain(source)
    assert sorted(d.task.id for d in got if d.task) == ["t-0003", "t-0004"]


async def test_after_a_reshard_every_record_is_read_once_in_key_order(
    aws_settings: AwsSettings,
) -> None:
    clients = AwsClients(aws_settings)
    stream = unique("tq-reshard")
    kinesis = clients.sync("kinesis")
    kinesis.create_stream(StreamName=stream, ShardCount=1)
    transport = KinesisTransport(stream, clients)
    tasks = [make(i, f"k{i % 3}") for i in range(30)]
    await transport.publish(tasks[:15])
    source = KinesisSource(stream, clients, shard_refresh_seconds=0)
    head = await source.receive(4)
    await source.ack(head)
    kinesis.update_shard_count(StreamName=stream, TargetShardCount=2, ScalingType="UNIFORM_SCALING")
    await transport.publish(tasks[15:])
    got = head + await drain(source)
    ids = [d.task.id for d in got if d.task]
    # moto moves a split shard's records into its children: what was read before the split
    # may come again from them (at-least-once), but nothing is lost or reordered per key.
    assert set(ids) == {t.id for t in tasks}
    for key in ("k0", "k1", "k2"):
        seen = [d.task.id for d in got if d.task and d.task.partition_key == key]
        first_seen = list(dict.fromkeys(seen))
        assert first_seen == [t.id for t in tasks if t.partition_key == key]
    shards = kinesis.list_shards(StreamName=stream)["Shards"]
    parent = [s for s in shards if "EndingSequenceNumber" in s["SequenceNumberRange"]]
    assert len(parent) == 1 and len(shards) == 3
    await clients.aclose()
