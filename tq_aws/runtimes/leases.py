"""Shard leases for Kinesis workers: who reads which shard, and how far it got.

One lease per shard, an item of the stores' table (``pk = LEASE#<stream>#<shard>``,
``sk = LEASE``):

| attribute | holds |
|---|---|
| ``owner`` | the worker id holding the lease (absent: free) |
| ``counter`` | incremented by every take and renew: the fencing token of the owner's writes |
| ``expiry`` | epoch seconds; past it, any worker may take the lease |
| ``checkpoint`` | the last sequence number processed, zero-padded to 130 digits so that it
  compares as a number (moto's sequence numbers are small counters, AWS's 56 digits) |
| ``parents`` | the shard's parent shard ids (after a reshard) |
| ``finished`` | the shard is closed and was read to its end |
| ``handover_to`` | a worker asked the owner to hand the lease over (balancing) |
| ``start_at`` | epoch seconds to start at when there is no checkpoint (``LATEST``) |

Every change is one conditional write, safe to repeat:

- create: absent;
- take: the counter the taker saw, not finished, and free (no owner, or expired);
- renew, checkpoint, release, finish: ``owner = me AND counter = mine``; a checkpoint moreover
  only moves forward;
- request a handover: the owner the requester saw, no request pending, not expired;
- hand over: ``owner = me AND counter = mine AND handover_to = requester``: the requester
  becomes the owner (counter + 1, fresh expiry), so the lease is never free in between (a
  free lease would count no live worker for the requester, and others could take it).

A write whose first attempt applied but whose answer was lost is retried by botocore and then
fails its condition; the old item returned with the failure tells that case apart (the owner is
still this worker), so it is not mistaken for a lost lease.

``plan_round`` decides, from one read of every lease, what a worker takes or asks for.
"""

from __future__ import annotations

import functools
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from pynamodb.attributes import (
    BooleanAttribute,
    NumberAttribute,
    UnicodeAttribute,
    UnicodeSetAttribute,
)
from pynamodb.models import Model

from tq_aws.backends.aws.clients import AwsSettings
from tq_aws.backends.aws.dynamodb.models import (
    ConditionFailed,
    TableModels,
    gather_all,
    in_thread,
    table_models,
)
from tq_aws.errors import TqError

LEASE_SK = "LEASE"
SEQUENCE_WIDTH = 130
"""Kinesis sequence numbers are ``0|[1-9][0-9]{0,128}``: at most 129 digits."""


class InvalidSequenceNumberError(TqError, ValueError):
    """A checkpoint that is not a Kinesis sequence number (decimal digits, at most 129)."""


def lease_pk(stream: str, shard_id: str) -> str:
    return f"LEASE#{stream}#{shard_id}"


def pad_sequence(sequence: str) -> str:
    """The sequence number as a fixed-width string that sorts as the number does."""
    if not isinstance(sequence, str) or not sequence.isdigit() or len(sequence) >= SEQUENCE_WIDTH:
        raise InvalidSequenceNumberError(
            f"checkpoint={sequence!r}; give the record's SequenceNumber (decimal digits, at most "
            f"{SEQUENCE_WIDTH - 1})"
        )
    return sequence.zfill(SEQUENCE_WIDTH)


def unpad_sequence(padded: str) -> str:
    return padded.lstrip("0") or "0"


@dataclass(frozen=True, slots=True)
class Lease:
    """A snapshot of one shard's lease (see the module docstring for the fields)."""

    stream: str
    shard_id: str
    owner: str | None = None
    counter: int = 0
    expiry: float = 0.0
    checkpoint: str | None = None
    parents: tuple[str, ...] = ()
    finished: bool = False
    handover_to: str | None = None
    start_at: float | None = None

    def held(self, now: float) -> bool:
        """Owned and not expired at ``now``."""
        return self.owner is not None and self.expiry > now

    def takeable(self, now: float) -> bool:
        """Not finished, and free or expired at ``now``."""
        return not self.finished and not self.held(now)


@dataclass(frozen=True, slots=True)
class ShardSpec:
    """What a lease is created with: the shard, its parents, and where to start reading
    when nothing is checkpointed (``start_at`` epoch seconds, ``None``: the shard's start)."""

    shard_id: str
    parents: tuple[str, ...] = ()
    start_at: float | None = None


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


# -- planning -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RoundPlan:
    """What a worker does in one balancing round."""

    share: int
    """The fair number of leases: ``ceil(active shards / live workers)``."""
    live_workers: int
    take: list[Lease] = field(default_factory=list)
    handover: Lease | None = None
    """A lease to ask its owner for (at most one per round)."""


def parents_done(lease: Lease, leases: Mapping[str, Lease]) -> bool:
    """Every parent is finished, or no longer listed (trimmed: read long ago)."""
    return all(p not in leases or leases[p].finished for p in lease.parents)


def plan_round(
    leases: Mapping[str, Lease], me: str, now: float, *, held: int, requested: int = 0
) -> RoundPlan:
    """Decide what to take and whom to ask, from one read of every lease of the stream.

    Args:
        leases: shard id -> lease, for every listed shard.
        me: this worker's id.
        now: epoch seconds.
        held: leases this worker holds now.
        requested: handovers this worker asked for and still waits for.

    Live workers are the owners of unexpired leases and the workers waiting for a handover,
    plus this one. The fair share is ``ceil(active / live)``, where active shards are those
    not finished whose parents are finished. Below its share a worker takes free or expired
    leases; when there are none, it asks the most-loaded owner for one lease, only if that
    owner holds at least two more than this worker does (so two workers never trade a lease
    back and forth).
    """
    active = [
        lease
        for _, lease in sorted(leases.items())
        if not lease.finished and parents_done(lease, leases)
    ]
    owners = Counter(lease.owner for lease in active if lease.held(now))
    live = set(owners) | {me}
    live |= {lease.handover_to for lease in active if lease.held(now) and lease.handover_to}
    share = math.ceil(len(active) / len(live)) if active else 0
    plan = RoundPlan(share=share, live_workers=len(live))
    mine = held + requested
    if mine >= share:
        return plan
    free = [lease for lease in active if lease.takeable(now)]
    if free:
        return replace(plan, take=free[: share - mine])
    others = [(count, owner) for owner, count in owners.items() if owner != me and owner]
    if not others:
        return plan
    count, victim = max(others)
    if count - mine < 2:
        return plan
    candidates = [
        lease
        for lease in active
        if lease.owner == victim and lease.held(now) and lease.handover_to is None
    ]
    return replace(plan, handover=candidates[-1]) if candidates else plan


# -- memory ---------------------------------------------------------------------------------


class MemoryLeaseStore:
    """Leases in a dict, with the conditions of the DynamoDB store (for tests and for workers
    sharing one process). Each method runs without awaiting, so each is atomic."""

    def __init__(self) -> None:
        self._items: dict[tuple[str, str], Lease] = {}

    async def create(self, stream: str, shards: Sequence[ShardSpec]) -> list[bool]:
        out = []
        for spec in shards:
            key = (stream, spec.shard_id)
            if key in self._items:
                out.append(False)
                continue
            self._items[key] = Lease(
                stream, spec.shard_id, parents=tuple(spec.parents), start_at=spec.start_at
            )
            out.append(True)
        return out

    async def get_all(self, stream: str, shard_ids: Sequence[str]) -> dict[str, Lease]:
        return {s: self._items[(stream, s)] for s in shard_ids if (stream, s) in self._items}

    def _current(self, lease: Lease) -> Lease | None:
        return self._items.get((lease.stream, lease.shard_id))

    def _owned(self, lease: Lease) -> Lease | None:
        current = self._current(lease)
        if (
            current is None
            or lease.owner is None
            or current.owner != lease.owner
            or current.counter != lease.counter
        ):
            return None
        return current

    def _put(self, lease: Lease) -> Lease:
        self._items[(lease.stream, lease.shard_id)] = lease
        return lease

    async def take(
        self, lease: Lease, owner: str, *, now: float, lease_seconds: float
    ) -> Lease | None:
        current = self._current(lease)
        if current is not None and current.owner == owner and current.counter == lease.counter + 1:
            return current  # a repeated take (as a retried request would be)
        if current is None or current.counter != lease.counter or not current.takeable(now):
            return None
        return self._put(
            replace(
                current,
                owner=owner,
                counter=current.counter + 1,
                expiry=now + lease_seconds,
                handover_to=None,
            )
        )

    async def renew(self, lease: Lease, *, now: float, lease_seconds: float) -> Lease | None:
        current = self._current(lease)
        if (
            current is not None
            and lease.owner is not None
            and current.owner == lease.owner
            and current.counter == lease.counter + 1
        ):
            return current  # a repeated renewal (as a retried request would be)
        current = self._owned(lease)
        if current is None:
            return None
        return self._put(replace(current, counter=current.counter + 1, expiry=now + lease_seconds))

    async def checkpoint(self, lease: Lease, sequence: str) -> Lease | None:
        padded = pad_sequence(sequence)
        current = self._owned(lease)
        if current is None:
            return None
        if current.checkpoint is not None and pad_sequence(current.checkpoint) >= padded:
            return current
        return self._put(replace(current, checkpoint=unpad_sequence(padded)))

    async def release(self, lease: Lease) -> bool:
        current = self._owned(lease)
        if current is None:
            return False
        self._put(replace(current, owner=None, expiry=0.0, handover_to=None))
        return True

    async def finish(self, lease: Lease) -> bool:
        current = self._current(lease)
        if current is not None and current.finished:
            return True
        current = self._owned(lease)
        if current is None:
            return False
        self._put(replace(current, finished=True, owner=None, expiry=0.0, handover_to=None))
        return True

    async def request_handover(self, lease: Lease, requester: str, *, now: float) -> bool:
        current = self._current(lease)
        if (
            current is None
            or current.owner is None
            or current.owner != lease.owner
            or current.handover_to is not None
            or current.finished
            or not current.held(now)
        ):
            return False
        self._put(replace(current, handover_to=requester))
        return True

    async def hand_over(self, lease: Lease, *, now: float, lease_seconds: float) -> Lease | None:
        current = self._current(lease)
        if (
            current is not None
            and lease.handover_to is not None
            and current.owner == lease.handover_to
            and current.counter == lease.counter + 1
        ):
            return current  # repeated
        current = self._owned(lease)
        if current is None or lease.handover_to is None:
            return None
        if current.handover_to != lease.handover_to:
            return None
        return self._put(
            replace(
                current,
                owner=lease.handover_to,
                counter=current.counter + 1,
                expiry=now + lease_seconds,
                handover_to=None,
            )
        )


# -- DynamoDB -------------------------------------------------------------------------------


@functools.lru_cache(maxsize=128)
def lease_model(table: str, settings: AwsSettings) -> Any:
    """The pynamodb model of lease items of ``table``, sharing the stores' connection."""
    models = table_models(table, settings)
    namespace: dict[str, Any] = {
        "__module__": __name__,
        "__qualname__": "LeaseItem",
        "Meta": models.task.Meta,
        "pk": UnicodeAttribute(hash_key=True),
        "sk": UnicodeAttribute(range_key=True),
        "owner": UnicodeAttribute(null=True),
        "counter": NumberAttribute(),
        "expiry": NumberAttribute(),
        "checkpoint": UnicodeAttribute(null=True),
        "parents": UnicodeSetAttribute(null=True),
        "finished": BooleanAttribute(),
        "handover_to": UnicodeAttribute(null=True),
        "start_at": NumberAttribute(null=True),
    }
    model: Any = type("LeaseItem", (Model,), namespace)
    model._connection = models.connection  # one botocore client for the table
    return model


class DynamoLeaseStore:
    """Leases as items of the stores' DynamoDB table (see the module docstring).

    Args:
        table: the table (``ensure_table`` creates it; the leases need nothing more).
        settings: region and endpoint.

    Example:
        >>> store = DynamoLeaseStore("tq", AwsSettings(region="eu-west-1"))
        >>> await store.create("tq-tasks", [ShardSpec("shardId-000000000000")])
    """

    def __init__(self, table: str, settings: AwsSettings):
        self.table = table
        self.models: TableModels = table_models(table, settings)
        self.model = lease_model(table, settings)

    # -- reading --------------------------------------------------------------------------

    def _lease(self, stream: str, raw: dict[str, Any]) -> Lease:
        item = self.model.from_raw_data(raw)
        return self._from_item(stream, item)

    @staticmethod
    def _from_item(stream: str, item: Any) -> Lease:
        shard_id = str(item.pk)[len(lease_pk(stream, "")) :]
        return Lease(
            stream=stream,
            shard_id=shard_id,
            owner=item.owner,
            counter=int(item.counter),
            expiry=float(item.expiry),
            checkpoint=None if item.checkpoint is None else unpad_sequence(item.checkpoint),
            parents=tuple(sorted(item.parents or ())),
            finished=bool(item.finished),
            handover_to=item.handover_to,
            start_at=None if item.start_at is None else float(item.start_at),
        )

    async def get_all(self, stream: str, shard_ids: Sequence[str]) -> dict[str, Lease]:
        """One ``BatchGetItem`` per 100 leases (pynamodb retries unprocessed keys)."""
        keys = [(lease_pk(stream, s), LEASE_SK) for s in shard_ids]
        if not keys:
            return {}
        items = await in_thread(lambda: list(self.model.batch_get(keys, consistent_read=True)))
        leases = [self._from_item(stream, item) for item in items]
        return {lease.shard_id: lease for lease in leases}

    # -- writing --------------------------------------------------------------------------

    async def create(self, stream: str, shards: Sequence[ShardSpec]) -> list[bool]:
        """One conditional ``PutItem`` per lease (concurrently): absent only."""

        async def create_one(spec: ShardSpec) -> bool:
            item = self.model(
                lease_pk(stream, spec.shard_id),
                LEASE_SK,
                counter=0,
                expiry=0,
                finished=False,
                parents=set(spec.parents) or None,
                start_at=spec.start_at,
            )
            kwargs = item.get_save_kwargs_from_instance(condition=self.model.pk.does_not_exist())
            try:
                await in_thread(self.models.execute, "PutItem", kwargs)
            except ConditionFailed:
                return False
            return True

        return await gather_all(create_one(spec) for spec in shards)

    async def _update(self, lease: Lease, actions: list[Any], condition: Any) -> Lease:
        kwargs = self.models.connection.get_operation_kwargs(
            lease_pk(lease.stream, lease.shard_id),
            LEASE_SK,
            actions=actions,
            condition=condition,
            return_values="ALL_NEW",
            return_values_on_condition_failure="ALL_OLD",
        )
        data = await in_thread(self.models.execute, "UpdateItem", kwargs)
        return self._lease(lease.stream, dict(data["Attributes"]))

    def _old(self, lease: Lease, failed: ConditionFailed) -> Lease | None:
        return None if failed.old is None else self._lease(lease.stream, failed.old)

    def _owned(self, lease: Lease) -> Any:
        m = self.model
        return (m.owner == (lease.owner or "")) & (m.counter == lease.counter)

    async def take(
        self, lease: Lease, owner: str, *, now: float, lease_seconds: float
    ) -> Lease | None:
        m = self.model
        condition = (
            (m.counter == lease.counter)
            & (m.finished == False)  # noqa: E712 (a pynamodb condition, not a comparison)
            & (m.owner.does_not_exist() | (m.expiry <= now))
        )
        actions = [
            m.owner.set(owner),
            m.counter.set(lease.counter + 1),
            m.expiry.set(now + lease_seconds),
            m.handover_to.remove(),
        ]
        try:
            return await self._update(lease, actions, condition)
        except ConditionFailed as failed:
            old = self._old(lease, failed)
            if old is not None and old.owner == owner and old.counter == lease.counter + 1:
                return old  # our own write, retried after its answer was lost
            return None

    async def renew(self, lease: Lease, *, now: float, lease_seconds: float) -> Lease | None:
        if lease.owner is None:
            return None
        m = self.model
        actions = [m.counter.set(lease.counter + 1), m.expiry.set(now + lease_seconds)]
        try:
            return await self._update(lease, actions, self._owned(lease))
        except ConditionFailed as failed:
            old = self._old(lease, failed)
            if old is not None and old.owner == lease.owner and old.counter == lease.counter + 1:
                return old
            return None

    async def checkpoint(self, lease: Lease, sequence: str) -> Lease | None:
        padded = pad_sequence(sequence)
        if lease.owner is None:
            return None
        m = self.model
        condition = self._owned(lease) & (m.checkpoint.does_not_exist() | (m.checkpoint < padded))
        try:
            return await self._update(lease, [m.checkpoint.set(padded)], condition)
        except ConditionFailed as failed:
            old = self._old(lease, failed)
            if old is not None and old.owner == lease.owner and old.counter == lease.counter:
                return old  # already there (or past): still ours
            return None

    async def release(self, lease: Lease) -> bool:
        if lease.owner is None:
            return False
        m = self.model
        actions = [m.owner.remove(), m.handover_to.remove(), m.expiry.set(0)]
        try:
            await self._update(lease, actions, self._owned(lease))
        except ConditionFailed:
            return False
        return True

    async def finish(self, lease: Lease) -> bool:
        if lease.owner is None:
            return False
        m = self.model
        actions = [m.finished.set(True), m.owner.remove(), m.handover_to.remove(), m.expiry.set(0)]
        try:
            await self._update(lease, actions, self._owned(lease))
        except ConditionFailed as failed:
            old = self._old(lease, failed)
            return old is not None and old.finished
        return True

    async def request_handover(self, lease: Lease, requester: str, *, now: float) -> bool:
        if lease.owner is None:
            return False
        m = self.model
        condition = (
            (m.owner == lease.owner)
            & m.handover_to.does_not_exist()
            & (m.finished == False)  # noqa: E712
            & (m.expiry > now)
        )
        try:
            await self._update(lease, [m.handover_to.set(requester)], condition)
        except ConditionFailed:
            return False
        return True

    async def hand_over(self, lease: Lease, *, now: float, lease_seconds: float) -> Lease | None:
        requester = lease.handover_to
        if lease.owner is None or requester is None:
            return None
        m = self.model
        condition = self._owned(lease) & (m.handover_to == requester)
        actions = [
            m.owner.set(requester),
            m.counter.set(lease.counter + 1),
            m.expiry.set(now + lease_seconds),
            m.handover_to.remove(),
        ]
        try:
            return await self._update(lease, actions, condition)
        except ConditionFailed as failed:
            old = self._old(lease, failed)
            if old is not None and old.owner == requester and old.counter == lease.counter + 1:
                return old
            return None


__all__ = [
    "LEASE_SK",
    "DynamoLeaseStore",
    "InvalidSequenceNumberError",
    "Lease",
    "LeaseStore",
    "MemoryLeaseStore",
    "RoundPlan",
    "ShardSpec",
    "lease_pk",
    "pad_sequence",
    "plan_round",
]
