"""PoisonStore on DynamoDB: one item per (day first seen, source and position), and one
counter of failed deliveries per source and position."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pydantic_core

from tq_aws.backends.aws.clients import AwsSettings
from tq_aws.backends.aws.dynamodb.base import DEFAULT_ITEM_LIMIT, DynamoStore
from tq_aws.backends.aws.dynamodb.calls import gather_all, in_thread
from tq_aws.backends.aws.dynamodb.items import expiry
from tq_aws.backends.aws.dynamodb.models import TTL_ATTRIBUTE, ConditionFailed, poison_pk
from tq_aws.core.poison import PoisonRecord, poison_key
from tq_aws.ports import BlobStore

logger = logging.getLogger(__name__)

LARGE_FIELDS = ("data",)
DEFAULT_WINDOW_DAYS = 14
"""How far back ``recent`` looks when items never expire (``ttl_days=None``)."""
DELIVERY_PREFIX = "DELIVERY#"
DELIVERY_SK = "DELIVERY"
COUNTER_TTL_DAYS = 8.0
"""Failed-delivery counters outlive a Kinesis stream's default retention (1 day) and the
longest SQS retention (14 days is not needed: SQS counts its own receives)."""


class DynamoPoisonStore(DynamoStore):
    """Poison records in DynamoDB (pk ``POISON#<yyyy-mm-dd of seen_at, UTC>``, sk the record's
    ``key``), with the semantics of ``MemoryPoisonStore`` within one day.

    Each record is one ``PutItem`` with ``attribute_not_exists(pk)``: the first sighting of a
    source and position on a day is kept, and repeating a call changes nothing. A sighting on a
    later UTC day lands in that day's partition as a second item; ``recent`` shows such a
    record once, with the earliest sighting among the days it reads. Partitioning by day keeps
    ``recent`` to a few queries without an index: it reads whole days, newest first, from today
    back ``ttl_days`` (14 if ``None``), so a record whose ``seen_at`` is older than that is kept
    but not listed.

    Args:
        table: the table (create it with ``ensure_table``).
        settings: region and endpoint.
        blob_store: where a record's ``data`` goes when its JSON is over ``item_limit``;
            without one, such a record raises ``ItemTooLargeError``.
        item_limit: the largest record JSON kept in the item, in bytes.
        ttl_days: records expire this many days after they are written (or after ``seen_at``
            if later); ``None`` keeps them.
        now: the clock ``recent`` counts days back from (the app's clock, so that records
            seen under a test's ``ManualClock`` are found); default the real UTC time.

    Example:
        >>> store = DynamoPoisonStore("tq", AwsSettings())
        >>> await store.record(records)
        >>> [r.reason for r in await store.recent(10)]
        ['unknown_version']
    """

    def __init__(
        self,
        table: str,
        settings: AwsSettings,
        *,
        blob_store: BlobStore | None = None,
        item_limit: int = DEFAULT_ITEM_LIMIT,
        ttl_days: float | None = 14,
        now: Callable[[], datetime] | None = None,
    ):
        super().__init__(
            table, settings, blob_store=blob_store, item_limit=item_limit, ttl_days=ttl_days
        )
        self._now = now or _utc_now

    async def record(self, records: Sequence[PoisonRecord]) -> None:
        """Keep each record unless one with its source and position is kept already for its
        day (the first sighting wins). Safe to repeat."""
        # A repeat within one call is dropped here, as in memory: the first occurrence wins.
        first: dict[str, PoisonRecord] = {}
        for record in records:
            first.setdefault(record.key, record)
        await gather_all(self._put(record) for record in first.values())

    async def recent(self, limit: int = 100) -> list[PoisonRecord]:
        """The most recently first seen records, newest first (ties by key), at most
        ``limit``."""
        if limit <= 0:
            return []
        window = DEFAULT_WINDOW_DAYS if self.ttl_days is None else self.ttl_days
        today = self._now().astimezone(UTC).date()
        found: dict[str, PoisonRecord] = {}
        for back in range(math.ceil(window) + 1):
            for record in await self._day(today - timedelta(days=back)):
                kept = found.get(record.key)
                # A record seen again on a later day has an item per day: keep the earliest.
                if kept is None or record.seen_at < kept.seen_at:
                    found[record.key] = record
            # Older days hold only older sightings: once a whole day brings the count to
            # ``limit``, the newest ``limit`` are known.
            if len(found) >= limit:
                break
        ordered = sorted(found.values(), key=lambda r: (r.seen_at, r.key), reverse=True)
        return ordered[:limit]

    async def count_failures(
        self, positions: Sequence[tuple[str, str]], *, token: str
    ) -> list[int]:
        """Count one more failed delivery of each ``(queue_id, position)`` (item
        ``DELIVERY#<poison key>``/``DELIVERY``, one conditional ``UpdateItem`` each) and return
        each count so far. The write only applies when the item's last token is not ``token``,
        so a repeated call (a lost answer sent again) counts once."""
        return await gather_all(self._count(q, p, token) for q, p in positions)

    async def _count(self, queue_id: str, position: str, token: str) -> int:
        ttl = expiry(self.ttl_days if self.ttl_days is not None else COUNTER_TTL_DAYS)
        values: dict[str, Any] = {":one": {"N": "1"}, ":zero": {"N": "0"}, ":token": {"S": token}}
        update = "SET #n = if_not_exists(#n, :zero) + :one, #t = :token"
        names = {"#n": "failures", "#t": "last_token"}
        if ttl is not None:
            update += ", #ttl = :ttl"
            names["#ttl"] = TTL_ATTRIBUTE
            values[":ttl"] = {"N": str(int(ttl.timestamp()))}
        kwargs = {
            "TableName": self.table,
            "Key": {
                "pk": {"S": DELIVERY_PREFIX + poison_key(queue_id, position)},
                "sk": {"S": DELIVERY_SK},
            },
            "UpdateExpression": update,
            "ConditionExpression": "attribute_not_exists(#t) OR #t <> :token",
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
            "ReturnValues": "ALL_NEW",
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }
        self.requests["UpdateItem"] += 1
        try:
            data = await in_thread(self.models.execute, "UpdateItem", kwargs)
        except ConditionFailed as failed:  # this failure was counted already
            return int((failed.old or {}).get("failures", {}).get("N", "1"))
        self.writes += 1
        return int(data["Attributes"]["failures"]["N"])

    async def _day(self, day: date) -> list[PoisonRecord]:
        raws = await self._query(poison_pk(day), sk_prefix=None)
        return await gather_all(self._decode(raw) for raw in raws)

    async def _put(self, record: PoisonRecord) -> bool:
        item = await self._encode(record)
        return await self._put_item(item, self.models.poison.pk.does_not_exist())

    async def _encode(self, record: PoisonRecord) -> Any:
        pk = poison_pk(record.seen_at.date())
        sk = record.key
        doc, blobs = await self._pack(
            record.model_dump_json(),
            LARGE_FIELDS,
            blob_key=f"poison/{record.key}",
            item_key=f"{pk} {sk}",
        )
        return self.models.poison(
            pk,
            sk,
            # Fixed width (always microseconds), so the strings sort as the times do.
            seen_at=record.seen_at.isoformat(timespec="microseconds"),
            reason=record.reason,
            doc=doc,
            blobs=blobs,
            ttl=expiry(self.ttl_days, record.seen_at),
        )

    async def _decode(self, raw: dict[str, Any]) -> PoisonRecord:
        item = self.models.poison.from_raw_data(raw)
        data = await self._unpack(item)
        # Through JSON: ``data`` is base64 in the JSON, decoded by the model's JSON mode.
        return PoisonRecord.model_validate_json(pydantic_core.to_json(data))


def _utc_now() -> datetime:
    return datetime.now(UTC)
