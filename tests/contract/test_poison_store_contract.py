"""PoisonStore contract: the same assertions over the memory store and the DynamoDB store
(moto)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.support.aws import REGION, unique
from tq_aws.backends.aws.clients import AwsSettings
from tq_aws.backends.aws.dynamodb import (
    DynamoPoisonStore,
    ensure_table,
)
from tq_aws.backends.memory import MemoryBlobStore, MemoryPoisonStore
from tq_aws.core.poison import PoisonRecord
from tq_aws.errors import ItemTooLargeError

ITEM_LIMIT = 4096
QUEUE = "tq-tasks"
# Not UTF-8, with a zero byte: the bytes must come back exactly as delivered.
RAW = b'\xff\xfe\x00{"task": \x80}\n'


@dataclass
class Backend:
    kind: str
    store: Any
    blobs: MemoryBlobStore


@pytest.fixture(params=["memory", "dynamodb"])
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    blobs = MemoryBlobStore()
    if request.param == "memory":
        yield Backend("memory", MemoryPoisonStore(), blobs)
        return
    request.getfixturevalue("moto")
    settings = AwsSettings(region=REGION, max_attempts=1)
    table = unique("tq-poison")
    ensure_table(table, settings)
    store = DynamoPoisonStore(table, settings, blob_store=blobs, item_limit=ITEM_LIMIT)
    yield Backend("dynamodb", store, blobs)


@pytest.fixture
def store(backend: Backend) -> Any:
    return backend.store


def today() -> datetime:
    """Midnight UTC today: the DynamoDB store lists records by day, back from today."""
    return datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def poison(
    position: str,
    seen_at: datetime,
    *,
    queue_id: str = QUEUE,
    error: str = "boom",
    data: bytes = RAW,
    reason: str = "malformed",
) -> PoisonRecord:
    return PoisonRecord(
        queue_id=queue_id,
        position=position,
        reason=reason,
        error=error,
        data=data,
        seen_at=seen_at,
    )


async def test_record_round_trip_keeps_exact_bytes(store: Any) -> None:
    record = poison("shardId-000000000000/4959", today() + timedelta(seconds=1, microseconds=7))
    await store.record([record])
    [found] = await store.recent()
    assert found == record
    assert found.data == RAW
    assert found.key == record.key


async def test_nothing_recorded_and_limit_zero(store: Any) -> None:
    assert await store.recent() == []
    await store.record([poison("p-1", today())])
    assert await store.recent(0) == []


async def test_first_sighting_wins_and_repeating_is_harmless(store: Any) -> None:
    first = poison("p-1", today() + timedelta(minutes=1), error="first")
    again = poison("p-1", today() + timedelta(minutes=2), error="again", reason="invalid_task")
    await store.record([first])
    await store.record([again])
    await store.record([first])
    assert await store.recent() == [first]
    # Within one call too: the first occurrence is the one kept.
    other = poison("p-2", today() + timedelta(minutes=3), error="other")
    await store.record([other, other.model_copy(update={"error": "later"}), other])
    assert await store.recent() == [other, first]


async def test_a_record_seen_again_on_a_later_day_is_listed_once(store: Any) -> None:
    yesterday = poison("p-1", today() - timedelta(hours=1), error="yesterday")
    await store.record([yesterday])
    await store.record([poison("p-1", today() + timedelta(hours=1), error="today")])
    assert await store.recent() == [yesterday]


async def test_recent_is_newest_first_and_honours_limit(store: Any) -> None:
    records = [poison(f"p-{i}", today() + timedelta(seconds=i)) for i in range(6)]
    await store.record([records[i] for i in (3, 0, 5, 1, 4, 2)])
    newest_first = records[::-1]
    assert await store.recent() == newest_first
    assert await store.recent(2) == newest_first[:2]
    assert await store.recent(6) == newest_first
    assert await store.recent(100) == newest_first


async def test_same_position_on_different_sources_is_distinct(store: Any) -> None:
    on_a = poison("0", today() + timedelta(seconds=1), queue_id="queue-a")
    on_b = poison("0", today() + timedelta(seconds=2), queue_id="queue-b")
    assert on_a.key != on_b.key
    await store.record([on_a, on_b])
    assert await store.recent() == [on_b, on_a]


# -- DynamoDB only -----------------------------------------------------------------------------


def dynamo(backend: Backend) -> DynamoPoisonStore:
    if backend.kind != "dynamodb":
        pytest.skip("DynamoDB store only")
    store: DynamoPoisonStore = backend.store
    return store


async def test_large_data_goes_to_the_blob_store(backend: Backend) -> None:
    store = dynamo(backend)
    data = bytes(range(256)) * (2 * ITEM_LIMIT // 256)
    big = poison("p-big", today(), data=data)
    await store.record([big])
    assert len(backend.blobs._blobs) == 1
    assert await store.recent() == [big]
    bare = DynamoPoisonStore(store.models.table, AwsSettings(region=REGION), item_limit=ITEM_LIMIT)
    with pytest.raises(ItemTooLargeError, match="blob_store="):
        await bare.record([poison("p-big-2", today(), data=data)])
    assert [r.position for r in await store.recent()] == ["p-big"]


async def test_records_of_two_days_both_come_back(backend: Backend) -> None:
    store = dynamo(backend)
    now = datetime.now(UTC)
    older = poison("p-old", now - timedelta(days=1))
    newer = poison("p-new", now)
    await store.record([older, newer])
    assert await store.recent() == [newer, older]
    assert await store.recent(1) == [newer]


async def test_one_conditional_put_per_record_and_a_query_per_day(backend: Backend) -> None:
    store = dynamo(backend)
    records = [poison(f"p-{i}", today() + timedelta(seconds=i)) for i in range(5)]
    await store.record([*records, records[0]])  # the repeat within the call is not sent
    await store.record(records[:2])  # refused by their condition
    assert store.requests == {"PutItem": 7}
    assert store.writes == 5
    assert len(await store.recent(3)) == 3
    assert store.requests["Query"] == 1  # today's partition holds enough
    store.requests.clear()
    assert len(await store.recent()) == 5
    assert store.requests["Query"] == 15  # today and 14 days back (ttl_days=14)


async def test_failed_deliveries_are_counted_per_position_and_a_repeat_counts_once(
    store: Any,
) -> None:
    a, b = (QUEUE, "tq-tasks/shardId-0/1"), (QUEUE, "tq-tasks/shardId-0/2")
    assert await store.count_failures([a, b], token="t-1") == [1, 1]
    assert await store.count_failures([a], token="t-2") == [2]
    # the same failure told twice (an answer lost, the call made again) counts once
    assert await store.count_failures([a], token="t-2") == [2]
    assert await store.count_failures([a, b], token="t-3") == [3, 2]
    assert await store.count_failures([("other-stream", a[1])], token="t-3") == [1]
    assert await store.recent() == []  # counting keeps no poison record
