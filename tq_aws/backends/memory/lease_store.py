"""Shard leases in memory, with the conditions of the DynamoDB store."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace

from tq_aws.core.leases import Lease, ShardSpec, pad_sequence, unpad_sequence

logger = logging.getLogger(__name__)


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

    def _repeated(self, lease: Lease, owner: str | None) -> Lease | None:
        """The stored lease when ``owner`` already holds it one write after ``lease``: the
        same call made again (as a retried request would be)."""
        current = self._current(lease)
        if (
            current is not None
            and owner is not None
            and current.owner == owner
            and current.counter == lease.counter + 1
        ):
            return current
        return None

    def _give(self, current: Lease, owner: str, *, now: float, lease_seconds: float) -> Lease:
        """Store ``current`` held by ``owner`` for ``lease_seconds`` from ``now``."""
        return self._put(
            replace(
                current,
                owner=owner,
                counter=current.counter + 1,
                expiry=now + lease_seconds,
                handover_to=None,
            )
        )

    async def take(
        self, lease: Lease, owner: str, *, now: float, lease_seconds: float
    ) -> Lease | None:
        repeated = self._repeated(lease, owner)
        if repeated is not None:
            return repeated
        current = self._current(lease)
        if current is None or current.counter != lease.counter or not current.takeable(now):
            return None
        return self._give(current, owner, now=now, lease_seconds=lease_seconds)

    async def renew(self, lease: Lease, *, now: float, lease_seconds: float) -> Lease | None:
        repeated = self._repeated(lease, lease.owner)
        if repeated is not None:
            return repeated
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
        repeated = self._repeated(lease, lease.handover_to)
        if repeated is not None:
            return repeated
        current = self._owned(lease)
        if current is None or lease.handover_to is None:
            return None
        if current.handover_to != lease.handover_to:
            return None
        return self._give(current, lease.handover_to, now=now, lease_seconds=lease_seconds)
