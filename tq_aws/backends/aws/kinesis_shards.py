"""A Kinesis stream's shards: listing them (with their parents, and whether they are closed),
creating shard iterators, and turning a ``GetRecords`` record into deliveries.

A record written by the KPL (or ``aws-kinesis-agg``) aggregates many user records
(``tq_aws.core.kpl``); as the KCL does, each user record becomes its own delivery, at position
``<stream>/<shard>/<sequence>/<subSequenceNumber>``, with its own partition key. An aggregate
that cannot be read is one poison delivery (reason ``kpl_malformed``) holding its bytes.

Shared by the in-process ``KinesisSource`` (``tq_aws.backends.aws.kinesis``) and the ECS
worker's shard readers (``tq_aws.runtimes.ecs``). The Kinesis client is passed in (an
aiobotocore client from ``AwsClients.get("kinesis")``), so callers keep their client cache.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tq_aws.core import kpl
from tq_aws.errors import CodecError
from tq_aws.ports import Delivery

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ShardInfo:
    """One shard as ``ListShards`` shows it.

    Attributes:
        shard_id: the shard id.
        parents: the shards it was split or merged from (after a reshard; empty otherwise).
        closed: the shard has an ending sequence number: no record is written to it any more.
    """

    shard_id: str
    parents: tuple[str, ...]
    closed: bool


async def list_shards(kinesis: Any, stream: str) -> list[ShardInfo]:
    """Every shard of ``stream`` (every page of ``ListShards``), in the order listed."""
    found: list[ShardInfo] = []
    args: dict[str, Any] = {"StreamName": stream}
    while True:
        page = await kinesis.list_shards(**args)
        for info in page.get("Shards", []):
            parents = tuple(
                str(p) for p in (info.get("ParentShardId"), info.get("AdjacentParentShardId")) if p
            )
            closed = "EndingSequenceNumber" in (info.get("SequenceNumberRange") or {})
            found.append(ShardInfo(str(info["ShardId"]), parents, closed))
        token = page.get("NextToken")
        if not token:
            break
        args = {"NextToken": token}
    return found


async def shard_iterator(
    kinesis: Any, stream: str, shard_id: str, position: Mapping[str, Any]
) -> str:
    """A new iterator of one shard at ``position``: the position arguments of
    ``GetShardIterator`` (``ShardIteratorType`` and, as the type needs, its
    ``StartingSequenceNumber`` or ``Timestamp``)."""
    response = await kinesis.get_shard_iterator(StreamName=stream, ShardId=shard_id, **position)
    return str(response["ShardIterator"])


def resume_position(checkpoint: str | None, start_at: float | None) -> dict[str, Any]:
    """Where a shard is read from: just after ``checkpoint``; without one, from ``start_at``
    (epoch seconds, ``AT_TIMESTAMP``); without either, from the oldest record kept."""
    if checkpoint is not None:
        return {"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "StartingSequenceNumber": checkpoint}
    if start_at is not None:
        return {
            "ShardIteratorType": "AT_TIMESTAMP",
            "Timestamp": datetime.fromtimestamp(start_at, UTC),
        }
    return {"ShardIteratorType": "TRIM_HORIZON"}


def record_delivery(stream: str, shard_id: str, record: Mapping[str, Any]) -> Delivery:
    """The delivery of one ``GetRecords`` record that is not aggregated: position
    ``<stream>/<shard>/<sequence>``, token ``(shard id, sequence number)``, the task decoded
    (or the codec error kept). See ``record_deliveries`` for records of any kind."""
    sequence = str(record["SequenceNumber"])
    return Delivery.decode(
        stream,
        bytes(record["Data"]),
        f"{stream}/{shard_id}/{sequence}",
        partition_key=record.get("PartitionKey"),
        token=(shard_id, sequence),
    )


def record_deliveries(stream: str, shard_id: str, record: Mapping[str, Any]) -> list[Delivery]:
    """The deliveries of one ``GetRecords`` record: one, or one per user record of a KPL
    aggregate (each with token ``(shard id, sequence number)`` of the aggregate: it is
    acknowledged whole)."""
    data = bytes(record["Data"])
    if not kpl.is_aggregated(data):
        return [record_delivery(stream, shard_id, record)]
    sequence = str(record["SequenceNumber"])
    return user_deliveries(
        stream,
        f"{stream}/{shard_id}/{sequence}",
        data,
        record.get("PartitionKey"),
        (shard_id, sequence),
    )


def user_deliveries(
    queue_id: str, position: str, data: bytes, partition_key: str | None, token: Any
) -> list[Delivery]:
    """The deliveries of the KPL aggregate ``data`` found at ``position``: one per user record
    (position ``<position>/<subSequenceNumber>``), or one poison delivery of the whole
    aggregate when it cannot be read."""
    try:
        users = kpl.deaggregate(data)
    except CodecError as exc:
        delivery = Delivery(queue_id, data, position, None, exc, partition_key, token)
        return [delivery]
    return [
        Delivery.decode(
            queue_id,
            user.data,
            f"{position}/{user.sub_sequence}",
            partition_key=user.partition_key,
            token=token,
        )
        for user in users
    ]


__all__ = [
    "ShardInfo",
    "list_shards",
    "record_deliveries",
    "record_delivery",
    "resume_position",
    "shard_iterator",
    "user_deliveries",
]
