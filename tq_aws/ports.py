"""Ports: the interfaces the engine and the runtimes talk to, and ``Ports``, the bundle of them an
app is wired with. Each port has a memory backend (``backends.memory``) and an AWS backend
(``backends.aws``); one contract test suite (``tests/contract``) runs against both.

Abilities that only some backends have are small runtime-checkable protocols
(``PollingSource``, ``DueScheduler``), tested with ``isinstance`` rather than probed by name."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable

from tq_aws.core.codec import decode_task
from tq_aws.core.flows import FlowRecord, FlowState, RecordOutcome, StepResult
from tq_aws.core.leases import Lease, ShardSpec
from tq_aws.core.poison import PoisonRecord
from tq_aws.core.projections import ProjectionRow
from tq_aws.core.recent import RecentFilter, RecentPage
from tq_aws.core.task import Entity, Task
from tq_aws.errors import CodecError


class Clock(Protocol):
    """Source of the current time (timezone-aware UTC). Every "now" in tq-aws comes from one
    injected clock (``tq_aws.testing.ManualClock`` in tests)."""

    def now(self) -> datetime: ...


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
    deliveries: int | None = None
    """How many times the source has delivered this record, this time included, when it says
    (SQS ``ApproximateReceiveCount``); ``None`` when it does not (Kinesis)."""

    @classmethod
    def decode(
        cls,
        queue_id: str,
        data: bytes,
        position: str,
        *,
        partition_key: str | None = None,
        token: Any = None,
        deliveries: int | None = None,
    ) -> Delivery:
        """The delivery of a received record: its task decoded, or the codec error kept in
        ``error`` (a poison record) so that it never stops the records behind it."""
        delivery = cls(queue_id, data, position, None, None, partition_key, token, deliveries)
        try:
            delivery.task = decode_task(data)
        except CodecError as exc:
            delivery.error = exc
        return delivery


@runtime_checkable
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

    async def reopen(self, task: Task, *, failed_attempt: int) -> bool:
        """Replace a ``failed`` record that ended at attempt ``failed_attempt`` (its
        ``retry_count``) with ``task``, its next attempt; return whether it was replaced.

        One conditional write: a repeat (the record is no longer failed at that attempt)
        changes nothing, so an operator's retry sent twice starts one new attempt."""
        ...


class ProjectionStore(Protocol):
    """Entity status rows; every write is conditional (see ``core.projections.supersedes``)."""

    async def upsert(self, rows: Sequence[ProjectionRow]) -> None: ...

    async def for_entity(self, entity: Entity) -> list[ProjectionRow]: ...

    async def recent(
        self, where: RecentFilter, *, limit: int = 50, cursor: str | None = None
    ) -> RecentPage:
        """One page of failed task rows and flow rows across entities, newest first (by
        ``updated_at``), that ``where`` accepts; ``cursor`` is the previous page's. Reads an
        index (no table scan); the page may hold fewer than ``limit`` rows and still have a
        next one.

        Raises:
            InvalidQueryError: ``limit`` out of 1..500, or a cursor not made by this store.
        """
        ...


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


@runtime_checkable
class DueScheduler(Protocol):
    """A scheduler whose due entries the app delivers itself: the memory scheduler, and the
    EventBridge scheduler on an emulator (which never fires schedules)."""

    async def fire_due(self, now: datetime) -> int:
        """Deliver every entry due at ``now``; return how many."""
        ...

    def next_due(self) -> datetime | None:
        """When the earliest pending entry is due, or ``None``."""
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

    async def count_failures(
        self, positions: Sequence[tuple[str, str]], *, token: str
    ) -> list[int]:
        """Count one more failed delivery of each ``(queue_id, position)`` and return each
        one's count so far (this one included). ``token`` names this failure: a repeat with
        the same token counts nothing more (safe to repeat)."""
        ...


class LeaseStore(Protocol):
    """Shard leases; every method is one conditional write (or a read) per lease."""

    async def create(self, stream: str, shards: Sequence[ShardSpec]) -> list[bool]:
        """Create each absent lease (free, counter 0); return which this call created."""
        ...

    async def get_all(self, stream: str, shard_ids: Sequence[str]) -> dict[str, Lease]:
        """The leases of these shards that exist (strongly consistent)."""
        ...

    async def take(
        self, lease: Lease, owner: str, *, now: float, lease_seconds: float
    ) -> Lease | None:
        """Take a free or expired lease at the counter seen in ``lease``; ``None`` when taken
        by someone else first, renewed meanwhile, or finished."""
        ...

    async def renew(self, lease: Lease, *, now: float, lease_seconds: float) -> Lease | None:
        """Extend a held lease (counter + 1); ``None`` when it is no longer held as ``lease``
        says (taken over): stop processing the shard."""
        ...

    async def checkpoint(self, lease: Lease, sequence: str) -> Lease | None:
        """Move the checkpoint forward to ``sequence`` (a lower one leaves it as is); ``None``
        when the lease is no longer held as ``lease`` says."""
        ...

    async def release(self, lease: Lease) -> bool:
        """Give a held lease up (no owner, expired); return whether this call did."""
        ...

    async def finish(self, lease: Lease) -> bool:
        """Mark a closed shard read to its end as finished (and release it); return whether
        it is finished."""
        ...

    async def request_handover(self, lease: Lease, requester: str, *, now: float) -> bool:
        """Ask the owner seen in ``lease`` to hand the lease over once its batch is done."""
        ...

    async def hand_over(self, lease: Lease, *, now: float, lease_seconds: float) -> Lease | None:
        """Give a held lease to the worker that asked for it (``lease.handover_to``), as if it
        had taken it (counter + 1, a fresh expiry); ``None`` when the lease is no longer held
        as ``lease`` says."""
        ...


class Resources(Protocol):
    """What a backend set holds beyond its ports: clients to close, and resources it can
    create for development and tests (``TaskQueue.ensure_resources``)."""

    async def ensure(self) -> None: ...

    async def aclose(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Ports:
    """Every port an app is wired with. ``TaskQueue`` fills it (memory defaults, or the AWS
    backends from ``backends.aws.factory``); the engine and the runtimes read only this.

    Wrap a port with ``dataclasses.replace(ports, task_store=Wrapped(ports.task_store))`` and
    hand the result to ``TaskQueue.use_ports``: the fault harness does this."""

    clock: Clock
    transport: Transport
    task_store: TaskStore
    projection_store: ProjectionStore
    flow_store: FlowStore
    scheduler: Scheduler
    blob_store: BlobStore
    poison_store: PoisonStore
    source: PollingSource | None = None
    """What ``run_until_idle`` pulls batches from (``None``: only the Lambda runtime runs)."""
    lease_store: LeaseStore | None = None
    """Shard leases for the ECS worker's Kinesis consumer."""
