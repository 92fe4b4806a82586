"""Records of Lambda events (Kinesis and SQS event source mappings) as the engine's deliveries.

A Kinesis record carries the codec's bytes in base64 (``kinesis.data``); an SQS record carries
the message body as the SQS transport wrote it (codec JSON text, or base64 of a compressed
record: ``tq_aws.backends.aws.sqs.decode_body``). Either way the bytes go through the codec
(``tq_aws.core.codec.decode_task``); a record that does not decode becomes a ``Delivery`` with
``error`` set, which the engine keeps as a poison record with its bytes, reason and position.

Positions name the record the way the in-process sources do: ``<stream>/<shard>/<sequence>``
for Kinesis, the message id for SQS. The item identifier Lambda expects back in
``batchItemFailures`` is the sequence number (Kinesis) or the message id (SQS).
"""

from __future__ import annotations

import binascii
import functools
from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Any

from tq_aws.backends.aws.sqs import decode_body
from tq_aws.core.codec import decode_task
from tq_aws.errors import CodecError, LambdaEventError
from tq_aws.ports import Delivery


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


def event_source(records: Sequence[Mapping[str, Any]]) -> EventSource | None:
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


def _kinesis_shape_ok(record: Mapping[str, Any]) -> bool:
    kinesis = record.get("kinesis")
    return (
        type(kinesis) is dict
        and type(kinesis.get("data")) is str
        and type(kinesis.get("sequenceNumber")) is str
        and type(kinesis.get("partitionKey")) is str
    )


def _sqs_shape_ok(record: Mapping[str, Any]) -> bool:
    return type(record.get("messageId")) is str and type(record.get("body")) is str


def _explain(record: Mapping[str, Any], i: int, first: Any, source: EventSource) -> None:
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


def item_identifier(source: EventSource, record: Mapping[str, Any]) -> str:
    """What ``batchItemFailures`` names a record by: its sequence number or message id."""
    if source is EventSource.KINESIS:
        return str(record["kinesis"]["sequenceNumber"])
    return str(record["messageId"])


def ordering_key(source: EventSource, record: Mapping[str, Any]) -> str | None:
    """The key whose records must run in order: the Kinesis partition key, or the SQS FIFO
    ``MessageGroupId``; ``None`` for a standard SQS queue, which promises no order."""
    if source is EventSource.KINESIS:
        return str(record["kinesis"]["partitionKey"])
    group = (record.get("attributes") or {}).get("MessageGroupId")
    return str(group) if group else None


def to_delivery(source: EventSource, record: Mapping[str, Any]) -> Delivery:
    """The record as the engine's ``Delivery``: the decoded task, or the codec error.

    ``queue_id`` is the stream name (Kinesis) or the queue URL (SQS, rebuilt from the ARN);
    ``token`` is the item identifier."""
    if source is EventSource.KINESIS:
        return _kinesis_delivery(record)
    return _sqs_delivery(record)


def _kinesis_delivery(record: Mapping[str, Any]) -> Delivery:
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
        delivery = Delivery(
            stream,
            text.encode("utf-8", "replace"),
            position,
            None,
            None,
            kinesis["partitionKey"],
            sequence,
        )
        delivery.error = CodecError(f"kinesis.data is not base64: {exc}", reason="malformed")
        return delivery
    delivery = Delivery(stream, data, position, None, None, kinesis["partitionKey"], sequence)
    try:
        delivery.task = decode_task(data)
    except CodecError as exc:
        delivery.error = exc
    return delivery


def _sqs_delivery(record: Mapping[str, Any]) -> Delivery:
    body = str(record["body"])
    message_id = str(record["messageId"])
    group = (record.get("attributes") or {}).get("MessageGroupId")
    delivery = Delivery(
        queue_id=_queue_url(str(record.get("eventSourceARN") or "")),
        data=body.encode("utf-8", "replace"),
        position=message_id,
        partition_key=str(group) if group else None,
        token=message_id,
    )
    try:
        delivery.data = decode_body(body)
        delivery.task = decode_task(delivery.data)
    except CodecError as exc:
        delivery.error = exc
    if delivery.partition_key is None and delivery.task is not None:
        delivery.partition_key = delivery.task.partition_key or delivery.task.id
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
    "LambdaEventError",
    "event_records",
    "event_source",
    "item_identifier",
    "ordering_key",
    "to_delivery",
]
