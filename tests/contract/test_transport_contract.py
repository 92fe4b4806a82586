"""Transport + PollingSource contract: the same assertions over the memory transport, Kinesis
and SQS (FIFO and standard) on moto, and the routed transport with a combined source.

Standard SQS queues do not order messages, so the ordering assertions are skipped for them
(``Backend.ordered``); every other assertion holds for every backend.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pytest

from tests.support.aws import unique
from tq_aws.backends.aws.clients import AwsClients, AwsSettings
from tq_aws.backends.aws.kinesis import KinesisSource, KinesisTransport
from tq_aws.backends.aws.routed import CombinedSource, RoutedTransport
from tq_aws.backends.aws.routing import Routing
from tq_aws.backends.aws.sqs import SqsSource, SqsTransport
from tq_aws.backends.memory.transport import MemoryTransport
from tq_aws.core.task import Task
from tq_aws.ports import Delivery, PollingSource, Transport

QUEUE = "orders"
OTHER_QUEUE = "emails"  # the routed backend sends this queue id by SQS


@dataclass
class Backend:
    name: str
    transport: Transport
    source: PollingSource
    put_raw: Callable[[bytes, str], Awaitable[None]]
    """Append an already-encoded record with this partition key (undecodable records)."""
    ordered: bool = True


def task(i: int, key: str | None = None, queue_id: str = QUEUE, **fields: Any) -> Task:
    fields.setdefault("payload", {"i": i, "text": "x" * (i % 7)})
    return Task(id=f"t-{i:04d}", type="work", queue_id=queue_id, partition_key=key, **fields)


async def drain(source: PollingSource, max_records: int = 4) -> list[Delivery]:
    """Receive and acknowledge batches until the source is empty."""
    out: list[Delivery] = []
    for _ in range(500):
        batch = await source.receive(max_records)
        if not batch:
            return out
        assert len(batch) <= max_records
        out.extend(batch)
        await source.ack(batch)
    raise AssertionError("the source never ran dry")


def ids(deliveries: Sequence[Delivery]) -> list[str]:
    return [d.task.id or "" if d.task else f"<error:{d.position}>" for d in deliveries]


def per_key(deliveries: Sequence[Delivery]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for d in deliveries:
        assert d.task is not None
        out.setdefault(d.task.partition_key or d.task.id or "", []).append(d.task.id or "")
    return out


async def _kinesis_backend(clients: AwsClients, **options: Any) -> Backend:
    stream = unique("tq-contract")
    kinesis = clients.sync("kinesis")
    kinesis.create_stream(StreamName=stream, ShardCount=2)
    client = await clients.get("kinesis")

    async def put_raw(data: bytes, key: str) -> None:
        await client.put_records(StreamName=stream, Records=[{"Data": data, "PartitionKey": key}])

    return Backend(
        "kinesis",
        KinesisTransport(stream, clients, **options),
        KinesisSource(stream, clients),
        put_raw,
    )


async def _sqs_backend(clients: AwsClients, *, fifo: bool, **options: Any) -> Backend:
    sqs = clients.sync("sqs")
    if fifo:
        url = sqs.create_queue(
            QueueName=unique("tq-contract") + ".fifo", Attributes={"FifoQueue": "true"}
        )["QueueUrl"]
    else:
        url = sqs.create_queue(QueueName=unique("tq-contract"))["QueueUrl"]
    client = await clients.get("sqs")
    raw_count = 0

    async def put_raw(data: bytes, key: str) -> None:
        nonlocal raw_count
        raw_count += 1
        extra = (
            {"MessageGroupId": key, "MessageDeduplicationId": f"raw-{raw_count}"} if fifo else {}
        )
        await client.send_message(QueueUrl=url, MessageBody=data.decode("utf-8"), **extra)

    return Backend(
        "sqs_fifo" if fifo else "sqs",
        SqsTransport(url, clients, **options),
        SqsSource(url, clients),
        put_raw,
        ordered=fifo,
    )


async def _routed_backend(clients: AwsClients, **options: Any) -> Backend:
    stream = unique("tq-contract")
    clients.sync("kinesis").create_stream(StreamName=stream, ShardCount=2)
    url = clients.sync("sqs").create_queue(
        QueueName=unique("tq-contract") + ".fifo", Attributes={"FifoQueue": "true"}
    )["QueueUrl"]
    routing = Routing(stream=stream, sqs_queues={OTHER_QUEUE: url})
    client = await clients.get("kinesis")

    async def put_raw(data: bytes, key: str) -> None:
        await client.put_records(StreamName=stream, Records=[{"Data": data, "PartitionKey": key}])

    return Backend(
        "routed",
        RoutedTransport.from_routing(routing, clients, **options),
        CombinedSource.from_routing(routing, clients),
        put_raw,
    )


BACKENDS = ["memory", "kinesis", "sqs_fifo", "sqs", "routed"]


async def make_backend(request: pytest.FixtureRequest, **options: Any) -> AsyncIterator[Backend]:
    name = request.param
    if name == "memory":
        memory = MemoryTransport(**options)

        async def put_raw(data: bytes, key: str) -> None:
            memory.put_raw(QUEUE, data, key)

        yield Backend("memory", memory, memory, put_raw)
        return
    settings: AwsSettings = request.getfixturevalue("aws_settings")
    clients = AwsClients(settings)
    if name == "kinesis":
        yield await _kinesis_backend(clients, **options)
    elif name == "routed":
        yield await _routed_backend(clients, **options)
    else:
        yield await _sqs_backend(clients, fifo=name == "sqs_fifo", **options)
    await clients.aclose()


@pytest.fixture(params=BACKENDS)
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    async for b in make_backend(request):
        yield b


@pytest.fixture(params=BACKENDS)
async def compressing_backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    async for b in make_backend(request, compress_over=64):
        yield b


def need_order(backend: Backend) -> None:
    if not backend.ordered:
        pytest.skip("standard SQS queues do not order messages")


async def test_nothing_published_nothing_received(backend: Backend) -> None:
    assert await backend.source.receive(10) == []
    await backend.transport.publish([])
    assert await backend.source.receive(10) == []


async def test_publish_then_receive_everything_in_order_per_key(backend: Backend) -> None:
    need_order(backend)
    keys = ["a", "b", "c"]
    tasks = [task(i, keys[i % 3]) for i in range(15)] + [task(i) for i in range(15, 18)]
    await backend.transport.publish(tasks)
    got = await drain(backend.source)
    assert sorted(ids(got)) == sorted(t.id or "" for t in tasks)
    expected: dict[str, list[str]] = {}
    for t in tasks:
        expected.setdefault(t.partition_key or t.id or "", []).append(t.id or "")
    assert per_key(got) == expected


async def test_records_carry_the_task_its_key_and_a_position(backend: Backend) -> None:
    tasks = [task(1, "k1"), task(2, "k2"), task(3)]
    await backend.transport.publish(tasks)
    got = await drain(backend.source)
    by_id = {d.task.id: d for d in got if d.task is not None}
    assert set(by_id) == {"t-0001", "t-0002", "t-0003"}
    for t in tasks:
        d = by_id[t.id]
        assert d.task == t
        assert d.error is None
        assert d.partition_key == (t.partition_key or t.id)
        assert d.position
    assert len({d.position for d in got}) == len(got)


async def test_acked_records_never_come_back(backend: Backend) -> None:
    await backend.transport.publish([task(i, "k") for i in range(6)])
    first = await backend.source.receive(3)
    assert first
    await backend.source.ack(first)
    rest = await drain(backend.source)
    assert set(ids(first)).isdisjoint(ids(rest))
    assert sorted(ids(first) + ids(rest)) == [f"t-{i:04d}" for i in range(6)]
    assert await backend.source.receive(10) == []


async def test_nacked_records_come_back_first_and_in_order(backend: Backend) -> None:
    need_order(backend)
    await backend.transport.publish([task(i, "k") for i in range(6)])
    first = await backend.source.receive(3)
    assert ids(first) == ["t-0000", "t-0001", "t-0002"]
    await backend.source.nack(first)
    again = await backend.source.receive(3)
    assert ids(again) == ids(first)
    await backend.source.ack(again)
    rest = await drain(backend.source)
    assert ids(rest) == ["t-0003", "t-0004", "t-0005"]


async def test_nacked_records_are_not_lost(backend: Backend) -> None:
    await backend.transport.publish([task(i, f"k{i % 2}") for i in range(4)])
    batch = await backend.source.receive(10)
    assert batch
    await backend.source.nack(batch)
    got = await drain(backend.source)
    assert set(ids(batch)) <= set(ids(got))
    assert sorted(set(ids(got))) == [f"t-{i:04d}" for i in range(4)]


async def test_undecodable_records_yield_errors_and_do_not_block_the_rest(
    backend: Backend,
) -> None:
    await backend.transport.publish([task(1, "k")])
    await backend.put_raw(b"this is not a task", "k")
    await backend.put_raw(b'{"v": 99, "task": {}}', "k")
    await backend.transport.publish([task(2, "k")])
    got = await drain(backend.source)
    assert len(got) == 4
    bad = [d for d in got if d.task is None]
    assert [d.error.reason if d.error else None for d in bad] == ["malformed", "unknown_version"]
    assert bad[0].data == b"this is not a task"
    assert sorted(d.task.id for d in got if d.task) == ["t-0001", "t-0002"]
    if backend.ordered:
        assert [d.task.id if d.task else d.error.reason if d.error else "" for d in got] == [
            "t-0001",
            "malformed",
            "unknown_version",
            "t-0002",
        ]


async def test_compressed_records_round_trip(compressing_backend: Backend) -> None:
    tasks = [task(i, "k", payload={"blob": "abc" * 200, "i": i}) for i in range(3)]
    await compressing_backend.transport.publish(tasks)
    got = await drain(compressing_backend.source)
    assert sorted((d.task for d in got if d.task), key=lambda t: t.id or "") == tasks
    assert all(d.data[:1] == b"\x78" for d in got)  # the zlib form travelled


# -- routing over several transports ---------------------------------------------------------


@pytest.fixture
async def routed(aws_settings: AwsSettings) -> AsyncIterator[tuple[Any, ...]]:
    clients = AwsClients(aws_settings)
    stream = unique("tq-routed")
    clients.sync("kinesis").create_stream(StreamName=stream, ShardCount=1)
    url = clients.sync("sqs").create_queue(
        QueueName=unique("tq-routed") + ".fifo", Attributes={"FifoQueue": "true"}
    )["QueueUrl"]
    routing = Routing(stream=stream, sqs_queues={OTHER_QUEUE: url})
    transport = RoutedTransport.from_routing(routing, clients)
    kinesis_source = KinesisSource(stream, clients)
    sqs_source = SqsSource(url, clients)
    yield transport, kinesis_source, sqs_source, stream, url
    await clients.aclose()


async def test_routed_transport_splits_tasks_by_route(routed: tuple[Any, ...]) -> None:
    transport, kinesis_source, sqs_source, stream, url = routed
    tasks = [task(i, f"k{i % 2}", queue_id=QUEUE if i % 3 else OTHER_QUEUE) for i in range(9)]
    await transport.publish(tasks)
    by_kinesis = await drain(kinesis_source)
    by_sqs = await drain(sqs_source)
    assert ids(by_kinesis) == [t.id for t in tasks if t.queue_id == QUEUE]
    assert ids(by_sqs) == [t.id for t in tasks if t.queue_id == OTHER_QUEUE]
    assert {d.queue_id for d in by_kinesis} == {stream}
    assert {d.queue_id for d in by_sqs} == {url}


async def test_combined_source_takes_sources_in_turn_and_routes_acks(
    routed: tuple[Any, ...],
) -> None:
    transport, kinesis_source, sqs_source, stream, url = routed
    await transport.publish(
        [task(i, "k", queue_id=QUEUE) for i in range(4)]
        + [task(i, "k", queue_id=OTHER_QUEUE) for i in range(4, 8)]
    )
    combined = CombinedSource([kinesis_source, sqs_source])
    first = await combined.receive(2)
    second = await combined.receive(2)
    assert {d.queue_id for d in first} == {stream}
    assert {d.queue_id for d in second} == {url}
    await combined.nack(first)
    await combined.ack(second)
    assert combined.in_flight == 0
    rest = await drain(combined, max_records=10)
    assert sorted(ids(rest)) == ["t-0000", "t-0001", "t-0002", "t-0003", "t-0006", "t-0007"]
    with pytest.raises(Exception, match="not received from this CombinedSource"):
        await combined.ack(rest[:1])


async def test_routed_send_delayed_refuses_kinesis_routes(routed: tuple[Any, ...]) -> None:
    transport = routed[0]
    with pytest.raises(Exception, match="travels by Kinesis"):
        await transport.send_delayed(task(1, queue_id=QUEUE), 1)
