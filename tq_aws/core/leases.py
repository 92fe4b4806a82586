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

import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from tq_aws.errors import InvalidSequenceNumberError

LEASE_SK = "LEASE"
SEQUENCE_WIDTH = 130
"""Kinesis sequence numbers are ``0|[1-9][0-9]{0,128}``: at most 129 digits."""


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
