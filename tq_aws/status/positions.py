"""Where a poison record came from, read out of its position string: the stream, shard and
sequence number of a Kinesis record, the message id of an SQS message, the offset in a memory
queue."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SourcePosition:
    """A record's source position; the fields that do not apply are ``None``."""

    kind: str
    """``kinesis``, ``sqs``, ``memory`` or ``unknown``."""
    stream: str | None = None
    shard: str | None = None
    sequence_number: str | None = None
    message_id: str | None = None
    queue: str | None = None
    offset: str | None = None


def source_position(queue_id: str, position: str) -> SourcePosition:
    """Read ``position`` as the consumers write it: ``<stream>/<shard id>/<sequence number>``
    (Kinesis), the message id (SQS, whose ``queue_id`` is the queue URL),
    ``memory:<queue>:<offset>`` (the memory transport)."""
    parts = position.split("/")
    if len(parts) == 3 and parts[1].startswith("shardId-"):
        return SourcePosition("kinesis", stream=parts[0], shard=parts[1], sequence_number=parts[2])
    if position.startswith("memory:"):
        queue, _, offset = position[len("memory:") :].rpartition(":")
        return SourcePosition("memory", queue=queue, offset=offset)
    if queue_id.startswith(("https://", "http://")) and "/" not in position:
        return SourcePosition("sqs", queue=queue_id, message_id=position)
    return SourcePosition("unknown")
