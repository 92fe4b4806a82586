"""An item's values: times as ISO-8601 strings, when an item expires, the stores' limits, and a
JSON document too large for an item, whose largest fields ``pack`` moves to the blob store.

A moved field holds the claim-check marker of ``tq_aws.core.claim_check`` (the shape the engine
uses for results), but a store reads back only the fields it moved itself: those listed in the
item's ``blobs``.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pydantic_core

from tq_aws.backends.aws.dynamodb.calls import gather_all
from tq_aws.core.claim_check import MARKER, blob_ref
from tq_aws.core.limits import DYNAMODB_MAX_ITEM_BYTES
from tq_aws.core.task import to_utc
from tq_aws.errors import ConfigurationError, ItemTooLargeError
from tq_aws.ports import BlobStore

logger = logging.getLogger(__name__)

DYNAMODB_ITEM_MAX = DYNAMODB_MAX_ITEM_BYTES
"""The largest ``item_limit`` accepted: DynamoDB's item limit is 400 KB, attribute names and
the attributes beside the JSON included (``tq_aws.core.limits``)."""


def iso(value: datetime | None) -> str | None:
    return None if value is None else to_utc(value).isoformat()


def from_iso(value: str | None) -> datetime | None:
    return None if value is None else to_utc(datetime.fromisoformat(value))


def expiry(ttl_days: float | None, *times: datetime | None) -> datetime | None:
    """When an item written now expires: ``ttl_days`` after the latest of now (wall clock: TTL
    runs on real time) and ``times`` (a task due later must outlive its due time)."""
    if ttl_days is None:
        return None
    latest = datetime.now(UTC)
    for value in times:
        if value is not None and to_utc(value) > latest:
            latest = to_utc(value)
    return latest + timedelta(days=ttl_days)


def validate_limits(item_limit: int, ttl_days: float | None) -> None:
    if isinstance(item_limit, bool) or not isinstance(item_limit, int):
        raise ConfigurationError(f"item_limit={item_limit!r}; give a whole number of bytes")
    if not 1024 <= item_limit <= DYNAMODB_ITEM_MAX:
        raise ConfigurationError(
            f"item_limit={item_limit!r}; give 1024 to {DYNAMODB_ITEM_MAX} bytes (DynamoDB items "
            "are at most 400 KB; keep room for the other attributes)"
        )
    if ttl_days is not None and (
        isinstance(ttl_days, bool) or not isinstance(ttl_days, int | float) or ttl_days <= 0
    ):
        raise ConfigurationError(
            f"ttl_days={ttl_days!r}; give days > 0, or None to keep items forever"
        )


async def pack(
    doc: str,
    fields: Sequence[str],
    *,
    blob_store: BlobStore | None,
    blob_key: str,
    limit: int,
    item_key: str,
) -> tuple[str, list[str]]:
    """Fit a JSON object into ``limit`` bytes: move its largest ``fields`` to the blob store,
    one at a time, until it fits. Returns the JSON to store and the fields moved.

    Blob keys are ``<blob_key>/<field>/<sha256 of the value>``: a write whose condition fails
    must not replace the blob that the stored item points to.

    Raises:
        ItemTooLargeError: no blob store, or still too large once the fields are moved.
    """
    size = len(doc.encode())
    if size <= limit:
        return doc, []
    if blob_store is None:
        raise ItemTooLargeError(
            f"{item_key}: {size} bytes of JSON, over item_limit={limit}; give the store a "
            "blob_store= (e.g. S3BlobStore) to keep large values out of the item",
            key=item_key,
            size=size,
            limit=limit,
        )
    data = json.loads(doc)
    values = {f: pydantic_core.to_json(data[f]) for f in fields if data.get(f) is not None}
    moved: list[str] = []
    for field in sorted(values, key=lambda f: len(values[f]), reverse=True):
        blob = values[field]
        digest = hashlib.sha256(blob).hexdigest()[:32]
        ref = await blob_store.put(f"{blob_key}/{field}/{digest}", blob)
        data[field] = blob_ref(ref, len(blob))
        moved.append(field)
        doc = pydantic_core.to_json(data).decode()
        size = len(doc.encode())
        if size <= limit:
            return doc, moved
    raise ItemTooLargeError(
        f"{item_key}: {size} bytes of JSON even with {', '.join(moved) or 'nothing'} in the blob "
        f"store, over item_limit={limit}; the other fields are too large to store",
        key=item_key,
        size=size,
        limit=limit,
    )


async def unpack(doc: str, moved: Iterable[str] | None, blob_store: BlobStore | None) -> Any:
    """The JSON object ``pack`` stored, with the moved fields read back from the blob store."""
    data = json.loads(doc)
    fields = sorted(moved or ())
    if not fields:
        return data
    if blob_store is None:
        raise ConfigurationError(
            f"an item keeps {', '.join(fields)} in the blob store, but this store has no "
            "blob_store=; configure the blob store the items were written with"
        )
    blobs = await gather_all(blob_store.get(data[f][MARKER]) for f in fields)
    for field, blob in zip(fields, blobs, strict=True):
        data[field] = json.loads(blob)
    return data
