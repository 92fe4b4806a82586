"""Records of Lambda events (Kinesis and SQS event source mappings) as the engine's deliveries.

A Kinesis record carries the codec's bytes in base64 (``kinesis.data``); an SQS record carries
the message body as the SQS transport wrote it (codec JSON text, or base64 of a compressed
record: ``tq_aws.core.codec.decode_sqs_body``). Either way the bytes go through the codec
(``Delivery.decode``); a record that does not decode becomes a ``Delivery`` with ``error`` set,
which the engine keeps as a poison record with its bytes, reason and position.

Positions name the record the way the in-process sources do: ``<stream>/<shard>/<sequence>``
for Kinesis, the message id for SQS. The item identifier Lambda expects back in
``batchItemFailures`` is the sequence number (Kinesis) or the message id (SQS).

A Kinesis record aggregated by the KPL holds many user records: as the KCL does, each becomes
its own delivery (``<stream>/<shard>/<sequence>/<subSequenceNumber>``, its own partition key),
and the record is reported by its (parent) sequence number if any of them must come again
(``record_deliveries``). An SQS record's ``ApproximateReceiveCount`` is its delivery count.
"""

from __future__ import annotations

import binascii
import functools
import logging
from collections.abc import Callable, Mapping, Sequence
from enum import StrEnum
from typing import Any

from tq_aws.backends.aws.kinesis_shards import user_deliveries
from tq_aws.core import kpl
from tq_aws.core.codec import decode_sqs_body
from tq_aws.errors import CodecError, LambdaEventError
from tq_aws.ports import Delivery

logger = logging.getLogger(__name__)

Record = Mapping[str, Any]
"""One record of a Lambda event, as Lambda sent it."""


class EventSource(StrEnum):
    """Where a Lambda event comes from (the records' ``eventSource``)."""

    KINESIS = "aws:kinesis"
    SQS = "aws:sqs"


def event_records(event: Any) -> list[dict[str, Any]]:
    """The event's ``Records`` list.

    Raises:
        LambdaEventError: the event is not a mapping with a ``Records`` list of objects.
    """
    if not isinstance(event, Mapping):
        raise LambdaEventError(
            f"the event is a {type(event).__name__}, not an object: pass the event Lambda gave "
            "the handler, as it is",
            field="event",
        )
    records = event.get("Records")
    if not isinstance(records, list):
        raise LambdaEventError(
            "the event has no 'Records' list: this handler takes the events of Kinesis and SQS "
            "event source mappings",
            field="Records",
        )
    for i, record in enumerate(records):
        if not isinstance(record, dict):
            raise LambdaEventError(
                f"Records[{i}] is a {type(record).__name__}, not an object", field=f"Records[{i}]"
            )
    return records


def event_source(records: Sequence[Record]) -> EventSource | None:
    """The source every record comes from (``None`` for no records); checks that each record
    has the fields the handler relies on.

    Raises:
        LambdaEventError: a record of another source (DynamoDB streams, Kafka...), records of
            two sources in one event, or a record missing a field (named in ``field``).
    """
    if not records:
        return None
    first = records[0].get("eventSource")
    try:
        source = EventSource(first if isinstance(first, str) else "")
    except ValueError:
        raise LambdaEventError(
            f"Records[0].eventSource is {first!r}; this handler takes 'aws:kinesis' and "
            "'aws:sqs' records: map it to a Kinesis stream or an SQS queue",
            field="Records[0].eventSource",
        ) from None
    shape_ok = _kinesis_shape_ok if source is EventSource.KINESIS else _sqs_shape_ok
    for i, record in enumerate(records):
        if record.get("eventSource") != first or not shape_ok(record):
            _explain(record, i, first, source)
    return source


def _kinesis_shape_ok(record: Record) -> bool:
    kinesis = record.get("kinesis")
    return (
        type(kinesis) is dict
        and type(kinesis.get("data")) is str
        and type(kinesis.get("sequenceNumber")) is str
        and type(kinesis.get("partitionKey")) is str
    )


def _sqs_shape_ok(record: Record) -> bool:
    return type(record.get("messageId")) is str and type(record.get("body")) is str


def _explain(record: Record, i: int, first: Any, source: EventSource) -> None:
    """Raise the error that names what is wrong with ``record`` (the slow path)."""
    if record.get("eventSource") != first:
        raise LambdaEventError(
            f"Records[{i}].eventSource is {record.get('eventSource')!r} but Records[0] is "
            f"{first!r}: one event holds the records of one event source mapping",
            field=f"Records[{i}].eventSource",
        )
    for path in _KINESIS_FIELDS if source is EventSource.KINESIS else _SQS_FIELDS:
        value: Any = record
        for part in path:
            value = value.get(part) if isinstance(value, dict) else None
        if not isinstance(value, str):
            name = ".".join(path)
            raise LambdaEventError(
                f"Records[{i}].{name} is missing or not a string; pass the event as Lambda sent it",
                field=f"Records[{i}].{name}",
            )


_KINESIS_FIELDS = (
    ("kinesis", "data"),
    ("kinesis", "sequenceNumber"),
    ("kinesis", "partitionKey"),
)
_SQS_FIELDS = (("messageId",), ("body",))


def item_identifier(source: EventSource, record: Record) -> str:
    """What ``batchItemFailures`` names a record by: its sequence number or message id."""
    if source is EventSource.KINESIS:
        return str(record["kinesis"]["sequenceNumber"])
    return str(record["messageId"])


# -- ordering keys ---------------------------------------------------------------------------


def kinesis_key(record: Record) -> str:
    """A Kinesis record's ordering key: its partition key."""
    return str(record["kinesis"]["partitionKey"])


def sqs_key(record: Record) -> str | None:
    """An SQS record's ordering key: its FIFO ``MessageGroupId``; ``None`` for a standard queue,
    which promises no order."""
    group = (record.get("attributes") or {}).get("MessageGroupId")
    return str(group) if group else None


def ordering_key(source: EventSource, record: Record) -> str | None:
    """The key whose records must run in order: the Kinesis partition key, or the SQS FIFO
    ``MessageGroupId``; ``None`` for a standard SQS queue, which promises no order."""
    return kinesis_key(record) if source is EventSource.KINESIS else sqs_key(record)


def key_reader(source: EventSource) -> Callable[[Record], str | None]:
    """``ordering_key`` for records of ``source``, chosen once per event instead of per record."""
    return kinesis_key if source is EventSource.KINESIS else sqs_key


# -- deliveries ------------------------------------------------------------------------------


def to_delivery(source: EventSource, record: Record) -> Delivery:
    """The record as the engine's ``Delivery``: the decoded task, or the codec error.

    ``queue_id`` is the stream name (Kinesis) or the queue URL (SQS, rebuilt from the ARN);
    ``token`` is the item identifier."""
    return decoder(source)(record)


def decoder(source: EventSource) -> Callable[[Record], Delivery]:
    """``to_delivery`` for records of ``source``, chosen once per event instead of per record."""
    return kinesis_delivery if source is EventSource.KINESIS else sqs_delivery


def record_deliveries(source: EventSource) -> Callable[[Record], list[Delivery]]:
    """For records of ``source``: a record's deliveries (one, or one per user record of a KPL
    aggregate)."""
    return kinesis_deliveries if source is EventSource.KINESIS else _sqs_deliveries


def kinesis_deliveries(record: Record) -> list[Delivery]:
    """A Kinesis record's deliveries: one, or one per user record of a KPL aggregate (a bad
    aggregate is one poison delivery, reason ``kpl_malformed``)."""
    delivery = kinesis_delivery(record)
    if delivery.task is not None or not kpl.is_aggregated(delivery.data):
        return [delivery]
    return user_deliveries(
        delivery.queue_id,
        delivery.position,
        delivery.data,
        delivery.partition_key,
        delivery.token,
    )


def _sqs_deliveries(record: Record) -> list[Delivery]:
    return [sqs_delivery(record)]


def kinesis_delivery(record: Record) -> Delivery:
    """A Kinesis record as one ``Delivery`` (see ``to_delivery``; ``kinesis_deliveries`` reads
    KPL aggregates too)."""
    kinesis = record["kinesis"]
    sequence: str = kinesis["sequenceNumber"]
    stream, prefix = _stream_name(record.get("eventSourceARN") or "")
    event_id = record.get("eventID")
    # eventID is "<shard id>:<sequence number>": the position is stream/shard/sequence
    position = prefix + (event_id.replace(":", "/", 1) if event_id else f"shard/{sequence}")
    text: str = kinesis["data"]
    try:
        # Lambda always sends valid base64; without validation (a regex per record) stray
        # characters are skipped, and whatever is left still has to pass the codec.
        data = binascii.a2b_base64(text)
    except (binascii.Error, ValueError) as exc:
        error = CodecError(f"kinesis.data is not base64: {exc}", reason="malformed")
        return _undecoded(stream, text, position, kinesis["partitionKey"], sequence, error)
    return Delivery.decode(
        stream, data, position, partition_key=kinesis["partitionKey"], token=sequence
    )


def sqs_delivery(record: Record) -> Delivery:
    """An SQS record as a ``Delivery`` (see ``to_delivery``). Without a ``MessageGroupId``
    (a standard queue) the partition key is the task's own (else its id)."""
    body = str(record["body"])
    message_id = str(record["messageId"])
    group = (record.get("attributes") or {}).get("MessageGroupId")
    queue_url = _queue_url(str(record.get("eventSourceARN") or ""))
    key = str(group) if group else None
    try:
        data = decode_sqs_body(body)
    except CodecError as exc:
        return _undecoded(queue_url, body, message_id, key, message_id, exc)
    count = (record.get("attributes") or {}).get("ApproximateReceiveCount")
    delivery = Delivery.decode(
        queue_url,
        data,
        message_id,
        partition_key=key,
        token=message_id,
        deliveries=int(count) if isinstance(count, str) and count.isdigit() else None,
    )
    if key is None and delivery.task is not None:
        delivery.partition_key = delivery.task.partition_key or delivery.task.id
    return delivery


def _undecoded(
    queue_id: str, text: str, position: str, key: str | None, token: str, error: CodecError
) -> Delivery:
    """A record whose text is not even the codec's bytes: kept as the text, with the error."""
    delivery = Delivery(queue_id, text.encode("utf-8", "replace"), position, None, None, key, token)
    delivery.error = error
    return delivery


@functools.lru_cache(maxsize=64)
def _stream_name(arn: str) -> tuple[str, str]:
    """``arn:aws:kinesis:<region>:<account>:stream/<name>`` -> ``<name>`` and ``<name>/``."""
    _, _, name = arn.rpartition(":stream/")
    name = name or arn or "kinesis"
    return name, name + "/"


def _queue_url(arn: str) -> str:
    """``arn:<partition>:sqs:<region>:<account>:<name>`` -> the queue's URL."""
    parts = arn.split(":")
    if len(parts) != 6 or parts[2] != "sqs":
        return arn or "sqs"
    _, partition, _, region, account, name = parts
    domain = "amazonaws.com.cn" if partition == "aws-cn" else "amazonaws.com"
    return f"https://sqs.{region}.{domain}/{account}/{name}"


__all__ = [
    "EventSource",
    "Record",
    "decoder",
    "event_records",
    "event_source",
    "item_identifier",
    "key_reader",
    "kinesis_deliveries",
    "kinesis_delivery",
    "kinesis_key",
    "ordering_key",
    "record_deliveries",
    "sqs_delivery",
    "sqs_key",
    "to_delivery",
]
