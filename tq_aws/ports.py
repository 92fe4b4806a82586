"""Ports: the interfaces the engine talks to. Each has a memory backend (``backends.memory``) and
an AWS backend; one contract test suite runs against both."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from tq_aws.core.flows import FlowRecord, FlowState, RecordOutcome, StepResult
from tq_aws.core.poison import PoisonRecord
from tq_aws.core.projections import ProjectionRow
from tq_aws.core.task import Entity, Task
from tq_aws.errors import CodecError


class Transport(Protocol):
    """Carries encoded tasks to consumers (Kinesis stream, SQS queue, memory queues)."""

    async def publish(self, tasks: Sequence[Task]) -> None:
        """Publish every task, keeping the order of tasks that share a partition key.

        Raises on failure; tasks before the failure may have been published (delivery is
        at-least-once, so the caller may simply publish again)."""
        ...


@dataclass(slots=True)
class Delivery:
    """One received record: the decoded task, or the codec error that prevented decoding."""

    queue_id: str
    """The queue id (memory), queue URL (SQS) or stream name (Kinesis) it came from."""
    data: bytes
    position: str
    """Where the record came from (queue and offset, shard and sequence number, message id)."""
    task: Task | None = None
    error: CodecError | None = None
    partition_key: str | None = None
    token: Any = None
    """Backend-specific handle used to acknowledge the record."""


class PollingSource(Protocol):
    """What an in-process worker pulls batches from (memory queues, SQS queues, Kinesis shards).

    A batch comes from one queue or shard, in order, so ordering per partition key holds."""

    async def receive(self, max_records: int) -> list[Delivery]:
        """The next batch of at most ``max_records`` records; empty when nothing is ready."""
        ...

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        """The batch's outcomes are recorded: never deliver these records again."""
        ...

    async def nack(self, deliveries: Sequence[Delivery]) -> None:
        """Give records back for redelivery, ahead of anything received after them."""
        ...


class ClaimState(StrEnum):
    """The answer of ``TaskStore.claim`` for one delivered task."""

    RUN = "run"
    """The stored copy was moved to ``processing``: run the task."""
    ABSENT = "absent"
    """No stored copy (never stored, or expired by TTL): run the task."""
    CANCELLED = "cancelled"
    """Cancelled before it started: do not run it."""
    DONE = "done"
    """The stored copy is terminal: this delivery is a duplicate."""
    STALE = "stale"
    """The stored copy is at a later attempt: this delivery is an old duplicate."""


@dataclass(slots=True)
class Claim:
    state: ClaimState
    stored: Task | None = None


class TaskStore(Protocol):
    """Durable task records, written only when asked or needed."""

    async def put(self, tasks: Sequence[Task]) -> list[bool]:
        """Insert or replace whole records, each only if the stored one is not terminal and not
        at a later attempt (``retry_count``); return which were written. Safe to repeat."""
        ...

    async def create(self, tasks: Sequence[Task]) -> list[bool]:
        """Insert each record only if no record has its id; return which were created."""
        ...

    async def get(self, task_id: str) -> Task | None: ...

    async def claim(self, tasks: Sequence[Task], now: datetime) -> dict[str, Claim]:
        """For each delivered task, atomically move its stored copy to ``processing`` when it is
        ``scheduled``/``processing`` at an attempt no later than the delivered one."""
        ...

    async def cancel(self, task_id: str, now: datetime) -> Task | None:
        """Move a ``scheduled`` record to ``cancelled``; return it, or ``None`` if it was not
        scheduled (never stored, started or finished)."""
        ...


class ProjectionStore(Protocol):
    """Entity status rows; every write is conditional (see ``core.projections.supersedes``)."""

    async def upsert(self, rows: Sequence[ProjectionRow]) -> None: ...

    async def for_entity(self, entity: Entity) -> list[ProjectionRow]: ...


@dataclass(slots=True, order=True)
class ScheduledTask:
    """A task to deliver at ``at``; ``name`` is deterministic so a repeated schedule is a no-op."""

    at: datetime
    name: str = field(compare=False)
    task: Task = field(compare=False)


class Scheduler(Protocol):
    """Delivers tasks later, at any distance in the future, without polling a store."""

    async def schedule(self, entries: Sequence[ScheduledTask]) -> None: ...

    async def cancel(self, names: Sequence[str]) -> None:
        """Drop pending entries by name; unknown names are ignored."""
        ...


class BlobStore(Protocol):
    """Large values kept out of records and items (claim check)."""

    async def put(self, key: str, data: bytes) -> str:
        """Store ``data``; return the reference to keep in its place."""
        ...

    async def get(self, ref: str) -> bytes: ...


class FlowStore(Protocol):
    """Flow barriers and step results. Every change is one conditional write (or one
    transaction), safe to repeat."""

    async def init(self, record: FlowRecord) -> bool:
        """Create the barrier if absent; return whether this call created it."""
        ...

    async def get(self, flow_id: str) -> FlowRecord | None: ...

    async def record_steps(
        self, flow_id: str, results: Sequence[StepResult]
    ) -> list[RecordOutcome]:
        """Record each step's terminal result: first write wins per step index, and only while
        the flow is open; the barrier's counters move with each recorded result, atomically."""
        ...

    async def results(self, flow_id: str) -> list[StepResult]:
        """Every recorded step result, sorted by step index."""
        ...

    async def close(
        self, flow_id: str, to: FlowState, *, expected_completed: int, now: datetime
    ) -> bool:
        """Move the flow ``open -> to`` if it is open and has exactly ``expected_completed``
        results; return whether this call moved it (so exactly one caller dispatches the join)."""
        ...

    async def release_results(self, flow_id: str) -> None:
        """Drop the step results of a closed flow once its join is dispatched."""
        ...


class PoisonStore(Protocol):
    """Records that could not be decoded, kept for operators (raw bytes, reason, position)."""

    async def record(self, records: Sequence[PoisonRecord]) -> None:
        """Keep each record unless one with its source and position is kept already (the
        first sighting wins). Safe to repeat."""
        ...

    async def recent(self, limit: int = 100) -> list[PoisonRecord]:
        """The most recently first seen records, newest first, at most ``limit``."""
        ...
