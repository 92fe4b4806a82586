"""Lambda events for tests: the records an app publishes, and Kinesis and SQS events in the shape
Lambda sends them, so a user's tests can call their handler the way Lambda does.

Example:
    >>> from tq_aws.testing import kinesis_event, published_records
    >>> records = await published_records(app, [Task(type="send", queue_id="emails")])
    >>> response = handler(kinesis_event(records), context)
    >>> response
    {'batchItemFailures': []}

The shapes are those of Lambda's event source mappings (as in the AWS documentation, Powertools'
test events and ``sam local generate-event``): a Kinesis record carries ``eventSource``,
``eventSourceARN``, ``awsRegion``, ``eventID`` (``<shard>:<sequence>``), ``eventVersion``,
``eventName``, ``invokeIdentityArn`` and ``kinesis.{kinesisSchemaVersion, partitionKey,
sequenceNumber, data (base64), approximateArrivalTimestamp}``; an SQS record ``messageId``,
``receiptHandle``, ``body``, ``attributes`` (``ApproximateReceiveCount``,
``SentTimestamp``, ``SenderId``, ``ApproximateFirstReceiveTimestamp``, and on a FIFO queue
``MessageGroupId``, ``MessageDeduplicationId``, ``SequenceNumber``), ``messageAttributes``,
``md5OfBody``, ``eventSource``, ``eventSourceARN`` and ``awsRegion``.
"""

from __future__ import annotations

import base64
import binascii
import copy
import dataclasses
import hashlib
import logging
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from tq_aws.backends.memory.transport import MemoryTransport
from tq_aws.core.codec import encode_sqs_body, encode_task
from tq_aws.core.task import Task
from tq_aws.ports import Transport

if TYPE_CHECKING:
    from tq_aws.engine.engine import Engine

logger = logging.getLogger(__name__)

PublishedRecord = tuple[bytes, str | None]
"""A record as published: its bytes (Kinesis ``Data``, or the SQS message body) and its
partition key (Kinesis) or ``MessageGroupId`` (FIFO queue; ``None`` for a standard queue)."""

REGION = "us-east-1"
ACCOUNT = "123456789012"
STREAM_ARN = f"arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/tq-tasks"
QUEUE_ARN = f"arn:aws:sqs:{REGION}:{ACCOUNT}:tq-tasks"
SHARD_ID = "shardId-000000000000"
INVOKE_ROLE = f"arn:aws:iam::{ACCOUNT}:role/lambda-role"
ARRIVAL = 1_764_000_000.0
"""``approximateArrivalTimestamp`` of the first record (seconds), unless told otherwise."""


# -- the records an app publishes -----------------------------------------------------------


async def published_records(app: Engine, tasks: Sequence[Task]) -> list[PublishedRecord]:
    """Add ``tasks`` to ``app`` and return each record its transport publishes for them, in
    the order it publishes them: the bytes and the partition key, exactly as the transport
    makes them (the codec, compression, the claim check of a large payload, the SQS body).

    The records are handed back instead of being sent: feed them to the handler with
    ``kinesis_event`` or ``sqs_event``. Everything else ``add_tasks`` does happens as usual
    (stored tasks, projection rows, schedules of tasks due later, which publish nothing now).
    Works on the embedded default and on an AWS app (``TaskQueue.aws``, ``from_env``).
    """
    sink: list[PublishedRecord] = []
    ports = app.ports
    capture = _capturing(ports.transport, sink)
    app.use_ports(dataclasses.replace(ports, transport=capture))
    try:
        await app.add_tasks(tasks)
    finally:
        app.use_ports(ports)
    return sink


def _capturing(transport: Transport, sink: list[PublishedRecord]) -> Transport:
    """A transport that makes its records as ``transport`` does and puts them in ``sink``."""
    if isinstance(transport, MemoryTransport):
        return _MemoryCapture(sink, compress_over=getattr(transport, "_compress_over", None))
    kind = type(transport).__name__
    if kind in ("KinesisTransport", "SqsTransport"):
        twin = copy.copy(transport)
        twin.clients = _CapturingClients(sink)  # type: ignore[attr-defined]
        return twin
    if kind == "RoutedTransport":
        routed: Any = copy.copy(transport)
        routed.kinesis = {k: _capturing(t, sink) for k, t in routed.kinesis.items()}
        routed.sqs = {u: _capturing(t, sink) for u, t in routed.sqs.items()}
        return routed  # type: ignore[no-any-return]
    return _CodecCapture(sink)


class _MemoryCapture(MemoryTransport):
    """The memory transport's own publish (checks and encoding), into ``sink``."""

    def __init__(self, sink: list[PublishedRecord], *, compress_over: int | None) -> None:
        super().__init__(compress_over=compress_over)
        self._sink = sink

    def put_raw(self, queue_id: str, data: bytes, partition_key: str | None = None) -> None:
        self._sink.append((data, partition_key))


class _CodecCapture:
    """Any other transport: the codec's record, keyed by the partition key (else the id)."""

    def __init__(self, sink: list[PublishedRecord]) -> None:
        self._sink = sink

    async def publish(self, tasks: Sequence[Task]) -> None:
        self._sink.extend((encode_task(t), t.partition_key or t.id) for t in tasks)


class _CapturingClients:
    """Stands in for ``AwsClients`` in a copy of a Kinesis or SQS transport: what the
    transport sends is kept in the sink and every entry is accepted."""

    def __init__(self, sink: list[PublishedRecord]) -> None:
        self._sink = sink

    async def get(self, service: str) -> Any:
        return self

    async def put_records(self, *, StreamName: str, Records: list[dict[str, Any]]) -> Any:
        self._sink.extend((bytes(r["Data"]), str(r["PartitionKey"])) for r in Records)
        return {
            "FailedRecordCount": 0,
            "Records": [{"SequenceNumber": "1", "ShardId": SHARD_ID} for _ in Records],
        }

    async def send_message_batch(self, *, QueueUrl: str, Entries: list[dict[str, Any]]) -> Any:
        for entry in Entries:
            self._sink.append((str(entry["MessageBody"]).encode(), entry.get("MessageGroupId")))
        return {"Successful": [{"Id": e["Id"], "MessageId": e["Id"]} for e in Entries]}

    async def send_message(self, *, QueueUrl: str, **entry: Any) -> Any:
        self._sink.append((str(entry["MessageBody"]).encode(), entry.get("MessageGroupId")))
        return {"MessageId": "1"}


# -- events ---------------------------------------------------------------------------------


def kinesis_record(
    data: bytes,
    partition_key: str,
    sequence: str,
    *,
    stream_arn: str = STREAM_ARN,
    shard_id: str = SHARD_ID,
    arrival: float = ARRIVAL,
    region: str | None = None,
) -> dict[str, Any]:
    """One record of a Kinesis event, as Lambda shapes it."""
    return {
        "kinesis": {
            "kinesisSchemaVersion": "1.0",
            "partitionKey": partition_key,
            "sequenceNumber": sequence,
            "data": base64.b64encode(data).decode("ascii"),
            "approximateArrivalTimestamp": arrival,
        },
        "eventSource": "aws:kinesis",
        "eventVersion": "1.0",
        "eventID": f"{shard_id}:{sequence}",
        "eventName": "aws:kinesis:record",
        "invokeIdentityArn": INVOKE_ROLE,
        "awsRegion": region or _region_of(stream_arn),
        "eventSourceARN": stream_arn,
    }


def kinesis_event(
    records: Iterable[PublishedRecord],
    *,
    stream_arn: str = STREAM_ARN,
    shard_id: str = SHARD_ID,
    first_sequence: int = 1,
    arrival: float = ARRIVAL,
) -> dict[str, Any]:
    """A Kinesis event (``{"Records": [...]}``) of ``records`` (``(data, partition_key)``, as
    ``published_records`` returns them), all from one shard, with sequence numbers
    ``first_sequence``, ``first_sequence + 1``, ... in the order given (Lambda's are long
    decimal strings; only their order matters). A record without a key is keyed by a digest
    of its data (a Kinesis record always has one)."""
    out = []
    for i, (data, key) in enumerate(records):
        out.append(
            kinesis_record(
                data,
                key if key else hashlib.md5(data).hexdigest(),
                str(first_sequence + i),
                stream_arn=stream_arn,
                shard_id=shard_id,
                arrival=arrival + i / 1000,
            )
        )
    return {"Records": out}


def sqs_record(
    body: str,
    message_id: str,
    *,
    queue_arn: str = QUEUE_ARN,
    group_id: str | None = None,
    receive_count: int = 1,
    sent: float = ARRIVAL,
    sequence: int = 1,
    region: str | None = None,
) -> dict[str, Any]:
    """One record of an SQS event, as Lambda shapes it; ``group_id`` for a FIFO queue."""
    millis = str(int(sent * 1000))
    attributes = {
        "ApproximateReceiveCount": str(receive_count),
        "SentTimestamp": millis,
        "SenderId": "AIDAIENQZJOLO23YVJ4VO",
        "ApproximateFirstReceiveTimestamp": millis,
    }
    if group_id is not None:
        attributes["SequenceNumber"] = f"{sequence:020d}"
        attributes["MessageGroupId"] = group_id
        attributes["MessageDeduplicationId"] = hashlib.sha256(body.encode()).hexdigest()
    return {
        "messageId": message_id,
        "receiptHandle": f"AQEB{base64.b64encode(message_id.encode()).decode('ascii')}",
        "body": body,
        "attributes": attributes,
        "messageAttributes": {},
        "md5OfBody": hashlib.md5(body.encode("utf-8")).hexdigest(),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region or _region_of(queue_arn),
    }


def sqs_event(
    records: Iterable[PublishedRecord],
    *,
    queue_arn: str = QUEUE_ARN,
    receive_count: int = 1,
    sent: float = ARRIVAL,
) -> dict[str, Any]:
    """An SQS event (``{"Records": [...]}``) of ``records`` (``(body, group id)``, as
    ``published_records`` returns them on an SQS app; codec records of any other app are made
    into bodies as the SQS transport would). A queue ARN ending in ``.fifo`` gives the FIFO
    attributes, the key as ``MessageGroupId``; a standard queue has no group. Message ids are
    ``m-1``, ``m-2``, ..."""
    fifo = queue_arn.endswith(".fifo")
    out = []
    for i, (data, key) in enumerate(records):
        group = (key or "default") if fifo else None
        out.append(
            sqs_record(
                _body(data),
                f"m-{i + 1}",
                queue_arn=queue_arn,
                group_id=group,
                receive_count=receive_count,
                sent=sent + i / 1000,
                sequence=i + 1,
            )
        )
    return {"Records": out}


def _body(data: bytes) -> str:
    """An SQS body of ``data``: the body itself (JSON text, or base64 of a record), else the
    body the SQS transport makes of a codec record."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return encode_sqs_body(data)
    if text.startswith("{"):
        return encode_sqs_body(data)
    try:
        base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        return encode_sqs_body(data)
    return text


def _region_of(arn: str) -> str:
    parts = arn.split(":")
    return parts[3] if len(parts) > 3 and parts[3] else REGION


__all__ = [
    "PublishedRecord",
    "kinesis_event",
    "kinesis_record",
    "published_records",
    "sqs_event",
    "sqs_record",
]
