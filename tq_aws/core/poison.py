"""Poison records: what was delivered but could not be decoded into a task.

A poison record is kept with its raw bytes, the reason, the error and where it came from, so an
operator can see it (``tq-aws poison``, ``app.poison_records()``), fix the producer and replay
the bytes. Its key is its source and position: a record delivered again (a redelivered batch,
a Lambda retry) is the same poison record, kept once.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tq_aws.core.task import to_utc


class PoisonRecord(BaseModel):
    """A delivered record that could not be decoded.

    Example:
        >>> [record] = await app.poison_records()
        >>> record.reason, record.position
        ('unknown_version', 'tq-tasks/shardId-000000000000/4959...')
    """

    model_config = ConfigDict(frozen=True, ser_json_bytes="base64", val_json_bytes="base64")

    queue_id: str
    """The source: the memory queue id, the Kinesis stream name or the SQS queue URL."""
    position: str
    """Where in the source: stream/shard/sequence number, the SQS message id, queue:offset."""
    reason: str
    """``malformed`` (not JSON, bad compression or base64), ``unknown_version`` or
    ``invalid_task``."""
    error: str
    """The codec's message, naming the field for an invalid task."""
    data: bytes = Field(repr=False)
    """The record's bytes as delivered."""
    seen_at: datetime
    """When it was first seen."""

    @field_validator("seen_at")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return to_utc(value)

    @property
    def key(self) -> str:
        """The record's identity: a digest of its source and position."""
        return poison_key(self.queue_id, self.position)


def poison_key(queue_id: str, position: str) -> str:
    """A fixed-length identity for ``(queue_id, position)``."""
    return hashlib.sha256(f"{queue_id}\n{position}".encode()).hexdigest()[:32]
