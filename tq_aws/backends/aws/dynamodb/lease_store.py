"""Shard leases as items of the stores' DynamoDB table (``tq_aws.core.leases`` describes the
item and the condition of every write)."""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from typing import Any

from pynamodb.attributes import (
    BooleanAttribute,
    NumberAttribute,
    UnicodeAttribute,
    UnicodeSetAttribute,
)
from pynamodb.models import Model

from tq_aws.backends.aws.clients import AwsSettings
from tq_aws.backends.aws.dynamodb.base import DynamoStore
from tq_aws.backends.aws.dynamodb.calls import gather_all, in_thread
from tq_aws.backends.aws.dynamodb.models import ConditionFailed, table_models
from tq_aws.core.leases import LEASE_SK, Lease, ShardSpec, lease_pk, pad_sequence, unpad_sequence

logger = logging.getLogger(__name__)


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


class DynamoLeaseStore(DynamoStore):
    """Leases as items of the stores' DynamoDB table (see the module docstring).

    Args:
        table: the table (``ensure_table`` creates it; the leases need nothing more).
        settings: region and endpoint.

    Example:
        >>> store = DynamoLeaseStore("tq", AwsSettings(region="eu-west-1"))
        >>> await store.create("tq-tasks", [ShardSpec("shardId-000000000000")])
    """

    def __init__(self, table: str, settings: AwsSettings):
        super().__init__(table, settings)
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
            return await self._put_item(item, self.model.pk.does_not_exist())

        return await gather_all(create_one(spec) for spec in shards)

    async def _update(self, lease: Lease, actions: list[Any], condition: Any) -> Lease:
        attributes = await self._update_item(
            lease_pk(lease.stream, lease.shard_id),
            LEASE_SK,
            actions,
            condition,
            return_values="ALL_NEW",
            old_on_failure=True,
        )
        return self._lease(lease.stream, attributes)

    def _old(self, lease: Lease, failed: ConditionFailed) -> Lease | None:
        return None if failed.old is None else self._lease(lease.stream, failed.old)

    def _owned(self, lease: Lease) -> Any:
        m = self.model
        return (m.owner == (lease.owner or "")) & (m.counter == lease.counter)

    def _given(self, lease: Lease, owner: str, *, now: float, lease_seconds: float) -> list[Any]:
        """The actions that make ``owner`` hold the lease for ``lease_seconds`` from ``now``."""
        m = self.model
        return [
            m.owner.set(owner),
            m.counter.set(lease.counter + 1),
            m.expiry.set(now + lease_seconds),
            m.handover_to.remove(),
        ]

    async def _move(
        self, lease: Lease, actions: list[Any], condition: Any, *, owner: str
    ) -> Lease | None:
        """The write of a new counter: the lease it leaves, or ``None`` if the condition did not
        hold, unless the old item shows ``owner`` one counter on, which is this very write,
        retried after its answer was lost."""
        try:
            return await self._update(lease, actions, condition)
        except ConditionFailed as failed:
            old = self._old(lease, failed)
            if old is not None and old.owner == owner and old.counter == lease.counter + 1:
                return old  # our own write, retried after its answer was lost
            return None

    async def take(
        self, lease: Lease, owner: str, *, now: float, lease_seconds: float
    ) -> Lease | None:
        m = self.model
        condition = (
            (m.counter == lease.counter)
            & (m.finished == False)  # noqa: E712 (a pynamodb condition, not a comparison)
            & (m.owner.does_not_exist() | (m.expiry <= now))
        )
        actions = self._given(lease, owner, now=now, lease_seconds=lease_seconds)
        return await self._move(lease, actions, condition, owner=owner)

    async def renew(self, lease: Lease, *, now: float, lease_seconds: float) -> Lease | None:
        if lease.owner is None:
            return None
        m = self.model
        actions = [m.counter.set(lease.counter + 1), m.expiry.set(now + lease_seconds)]
        return await self._move(lease, actions, self._owned(lease), owner=lease.owner)

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
        actions = self._given(lease, requester, now=now, lease_seconds=lease_seconds)
        return await self._move(lease, actions, condition, owner=requester)
