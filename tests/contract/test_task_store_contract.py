"""TaskStore contract: the same assertions over the memory store and the DynamoDB store (moto)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import boto3
import pytest

from tests.support.aws import REGION, unique
from tq_aws.backends.aws.clients import AwsSettings
from tq_aws.backends.aws.dynamodb import (
    DynamoTaskStore,
    ensure_table,
)
from tq_aws.backends.memory import MemoryBlobStore, MemoryTaskStore
from tq_aws.core.task import Entity, Task, TaskStatus
from tq_aws.errors import ConfigurationError, ItemTooLargeError
from tq_aws.ports import ClaimState

NOW = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
ITEM_LIMIT = 4096
"""The DynamoDB store's item limit here: a 'large' value is a few KB, not hundreds."""


@dataclass
class Backend:
    kind: str
    store: Any
    blobs: MemoryBlobStore


@pytest.fixture(params=["memory", "dynamodb"])
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    blobs = MemoryBlobStore()
    if request.param == "memory":
        yield Backend("memory", MemoryTaskStore(), blobs)
        return
    request.getfixturevalue("moto")
    settings = AwsSettings(region=REGION, max_attempts=1)
    table = unique("tq-tasks")
    ensure_table(table, settings)
    yield Backend(
        "dynamodb",
        DynamoTaskStore(table, settings, blob_store=blobs, item_limit=ITEM_LIMIT),
        blobs,
    )


@pytest.fixture
def store(backend: Backend) -> Any:
    return backend.store


def task(
    tid: str, *, attempt: int = 0, status: TaskStatus = TaskStatus.SCHEDULED, **kw: Any
) -> Task:
    stats = {"retry_count": attempt} if attempt else {}
    return Task(
        id=tid,
        type="t",
        queue_id="q",
        status=status,
        created_at=NOW,
        updated_at=NOW,
        execution_stats={**stats, **kw.pop("execution_stats", {})},
        **kw,
    )


async def test_put_get_round_trip_with_datetimes_and_entity(store: Any) -> None:
    full = Task(
        id="t-full",
        type="send",
        queue_id="emails",
        payload={"to": "a@b.c", "n": [1, 2.5, None, {"deep": True}], "empty": {}},
        execute_at=NOW + timedelta(hours=1),
        created_at=datetime(2026, 3, 1, 13, 0, 0, 123456, tzinfo=timezone(timedelta(hours=1))),
        updated_at=NOW,
        expires_at=NOW + timedelta(days=2),
        retries=3,
        retry_after=1.5,
        force_store=True,
        execution_stats={"retry_count": 1, "last_error": "boom"},
        partition_key="user-7",
        metadata={"log_context": {"request_id": "r-1"}},
        task_group="g",
        task_hash="h",
        execution_result={"ok": 1},
        entity=Entity(id="u-1", type="user"),
    )
    assert await store.put([full]) == [True]
    got = await store.get("t-full")
    assert got == full.model_copy(update={"stored": True})
    assert got.created_at == NOW  # the same instant, read back in UTC
    assert got.created_at.utcoffset() == timedelta(0)
    assert got.entity == Entity(id="u-1", type="user")
    assert await store.get("t-missing") is None


async def test_get_returns_a_copy(store: Any) -> None:
    await store.put([task("t-1", payload={"a": 1})])
    got = await store.get("t-1")
    got.payload["a"] = 2
    assert (await store.get("t-1")).payload == {"a": 1}


async def test_put_replaces_until_terminal_and_never_goes_back_an_attempt(store: Any) -> None:
    assert await store.put([task("t-1", attempt=1, payload="a1")]) == [True]
    assert await store.put([task("t-1", attempt=0, payload="a0")]) == [False]  # earlier
    assert await store.put([task("t-1", attempt=1, payload="a1 again")]) == [True]  # same
    assert await store.put([task("t-1", attempt=2, payload="a2")]) == [True]  # later
    done = task("t-1", attempt=2, status=TaskStatus.EXECUTED, execution_result="r")
    assert await store.put([done]) == [True]
    assert await store.put([task("t-1", attempt=3, payload="a3")]) == [False]  # terminal stays
    got = await store.get("t-1")
    assert (got.status, got.retry_count, got.execution_result) == (TaskStatus.EXECUTED, 2, "r")


async def test_put_many_reports_each_and_applies_one_id_in_order(store: Any) -> None:
    await store.put([task("t-done", status=TaskStatus.FAILED)])
    written = await store.put(
        [
            task("t-a", payload=1),
            task("t-done", payload="again"),
            task("t-a", status=TaskStatus.EXECUTED, payload=2),
            task("t-a", payload=3),  # after the terminal record of the same call: refused
            task("t-b", payload=4),
        ]
    )
    assert written == [True, False, True, False, True]
    assert (await store.get("t-a")).status is TaskStatus.EXECUTED
    assert (await store.get("t-a")).payload == 2
    assert (await store.get("t-b")).payload == 4
    assert (await store.get("t-done")).status is TaskStatus.FAILED


async def test_create_only_if_absent(store: Any) -> None:
    assert await store.create([task("t-1", payload="first"), task("t-2")]) == [True, True]
    assert await store.create([task("t-1", payload="second"), task("t-3")]) == [False, True]
    assert (await store.get("t-1")).payload == "first"
    assert await store.create([task("t-4", payload="x"), task("t-4", payload="y")]) == [
        True,
        False,
    ]
    assert (await store.get("t-4")).payload == "x"
    assert (await store.get("t-1")).stored is True


async def test_a_stored_task_needs_an_id(store: Any) -> None:
    nameless = Task(type="t", queue_id="q")
    with pytest.raises(ValueError, match="id"):
        await store.put([nameless])
    with pytest.raises(ValueError, match="id"):
        await store.create([nameless])


async def test_claim_absent_and_scheduled(store: Any) -> None:
    await store.put([task("t-1", payload="p")])
    later = NOW + timedelta(minutes=5)
    claims = await store.claim([task("t-1"), task("t-none")], later)
    assert set(claims) == {"t-1", "t-none"}
    assert claims["t-none"].state is ClaimState.ABSENT
    assert claims["t-none"].stored is None
    assert claims["t-1"].state is ClaimState.RUN
    stored = await store.get("t-1")
    assert stored.status is TaskStatus.PROCESSING
    assert stored.processing_started_at == later
    assert stored.updated_at == later
    assert stored.execution_stats == {"retry_count": 0}
    assert stored.payload == "p"


async def test_claim_processing_again_and_a_later_attempt(store: Any) -> None:
    await store.put([task("t-1", execution_stats={"last_error": "e"})])
    await store.claim([task("t-1")], NOW)
    again = await store.claim([task("t-1")], NOW + timedelta(seconds=1))
    assert again["t-1"].state is ClaimState.RUN  # a processing copy at the same attempt
    later = await store.claim([task("t-1", attempt=2)], NOW + timedelta(seconds=2))
    assert later["t-1"].state is ClaimState.RUN
    stored = await store.get("t-1")
    assert stored.retry_count == 2
    assert stored.execution_stats == {"last_error": "e", "retry_count": 2}
    stale = await store.claim([task("t-1", attempt=1)], NOW + timedelta(seconds=3))
    assert stale["t-1"].state is ClaimState.STALE
    assert stale["t-1"].stored == stored
    assert await store.get("t-1") == stored  # a refused claim changes nothing


async def test_claim_stale_cancelled_and_done(store: Any) -> None:
    await store.put(
        [
            task("t-stale", attempt=3),
            task("t-cancel"),
            task("t-done", status=TaskStatus.EXECUTED, execution_result={"r": 1}),
            task("t-ignored", status=TaskStatus.IGNORED),
        ]
    )
    await store.cancel("t-cancel", NOW)
    delivered = [task("t-stale", attempt=2), task("t-cancel"), task("t-done"), task("t-ignored")]
    claims = await store.claim(delivered, NOW)
    assert claims["t-stale"].state is ClaimState.STALE
    assert claims["t-stale"].stored.retry_count == 3
    assert claims["t-cancel"].state is ClaimState.CANCELLED
    assert claims["t-cancel"].stored.status is TaskStatus.CANCELLED
    assert claims["t-done"].state is ClaimState.DONE
    assert claims["t-done"].stored.execution_result == {"r": 1}
    assert claims["t-ignored"].state is ClaimState.DONE
    for tid in ("t-stale", "t-done"):  # nothing moved
        assert (await store.get(tid)).status is not TaskStatus.PROCESSING


async def test_put_after_a_claim_replaces_the_claimed_copy(store: Any) -> None:
    await store.put([task("t-1")])
    await store.claim([task("t-1")], NOW)
    retry = task("t-1", attempt=1, execution_stats={"last_error": "x"})
    assert await store.put([retry]) == [True]
    assert await store.get("t-1") == retry.model_copy(update={"stored": True})


async def test_cancel_only_from_scheduled(store: Any) -> None:
    await store.put(
        [task("t-1", payload="p"), task("t-run"), task("t-done", status=TaskStatus.EXECUTED)]
    )
    await store.claim([task("t-run")], NOW)
    later = NOW + timedelta(minutes=1)
    cancelled = await store.cancel("t-1", later)
    assert cancelled is not None
    assert (cancelled.status, cancelled.updated_at, cancelled.payload) == (
        TaskStatus.CANCELLED,
        later,
        "p",
    )
    assert await store.get("t-1") == cancelled
    assert await store.cancel("t-1", later) is None  # once
    assert await store.cancel("t-run", later) is None  # started
    assert await store.cancel("t-done", later) is None  # finished
    assert await store.cancel("t-never", later) is None  # never stored
    assert (await store.get("t-run")).status is TaskStatus.PROCESSING
    assert await store.put([task("t-1", attempt=1)]) == [False]  # cancelled is terminal


async def test_large_payload_and_result_round_trip(store: Any) -> None:
    payload = {"blob": "p" * 3 * ITEM_LIMIT, "n": 1}
    result = ["r" * 2 * ITEM_LIMIT]
    big = task("t-big", payload=payload, execution_result=result)
    assert await store.put([big]) == [True]
    assert await store.get("t-big") == big.model_copy(update={"stored": True})
    await store.put([task("t-big", status=TaskStatus.EXECUTED, payload=payload)])
    claims = await store.claim([task("t-big")], NOW)
    assert claims["t-big"].state is ClaimState.DONE
    assert claims["t-big"].stored.payload == payload
    cancelled = await store.create([task("t-big2", payload=payload)])
    assert cancelled == [True]
    assert (await store.cancel("t-big2", NOW)).payload == payload


# -- DynamoDB only -----------------------------------------------------------------------------


def dynamo(backend: Backend) -> DynamoTaskStore:
    if backend.kind != "dynamodb":
        pytest.skip("DynamoDB store only")
    store: DynamoTaskStore = backend.store
    return store


def raw_item(store: DynamoTaskStore, tid: str) -> dict[str, Any]:
    return dict(store.models.connection.get_item(f"TASK#{tid}", "TASK")["Item"])


async def test_large_values_live_in_the_blob_store(backend: Backend) -> None:
    store = dynamo(backend)
    big = task("t-big", payload="p" * 3 * ITEM_LIMIT, execution_result="small")
    await store.put([big])
    item = raw_item(store, "t-big")
    assert item["blobs"] == {"SS": ["payload"]}
    assert len(item["doc"]["S"]) < ITEM_LIMIT
    assert '"$tq_blob":"memory://tasks/t-big/payload/' in item["doc"]["S"]
    assert len(backend.blobs._blobs) == 1
    # A refused put must not change what the stored item points to.
    await store.put([task("t-big", status=TaskStatus.FAILED, payload="q" * 3 * ITEM_LIMIT)])
    await store.put([task("t-big", payload="z" * 3 * ITEM_LIMIT)])
    assert (await store.get("t-big")).payload == "q" * 3 * ITEM_LIMIT


async def test_too_large_without_a_blob_store_is_a_typed_error(backend: Backend) -> None:
    store = dynamo(backend)
    bare = DynamoTaskStore(store.models.table, AwsSettings(region=REGION), item_limit=ITEM_LIMIT)
    with pytest.raises(ItemTooLargeError, match="blob_store=") as info:
        await bare.put([task("t-big", payload="p" * 2 * ITEM_LIMIT)])
    assert (info.value.key, info.value.limit) == ("TASK#t-big", ITEM_LIMIT)
    assert info.value.size > ITEM_LIMIT
    # Even with a blob store, other fields cannot move.
    with pytest.raises(ItemTooLargeError, match="other fields"):
        await store.put([task("t-meta", metadata={"x": "m" * 2 * ITEM_LIMIT})])
    assert await store.get("t-meta") is None


async def test_items_carry_condition_attributes_and_ttl(backend: Backend) -> None:
    store = dynamo(backend)
    due = datetime.now(UTC) + timedelta(days=100)
    await store.put([task("t-1", attempt=2, execute_at=due)])
    item = raw_item(store, "t-1")
    assert item["status"] == {"S": "scheduled"}
    assert item["retry_count"] == {"N": "2"}
    expires = datetime.fromtimestamp(int(item["ttl"]["N"]), UTC)
    assert due + timedelta(days=29) < expires <= due + timedelta(days=30)
    assert store.requests["PutItem"] == 1


async def test_store_configuration_checks(backend: Backend) -> None:
    store = dynamo(backend)
    settings = AwsSettings(region=REGION)
    with pytest.raises(ConfigurationError, match="item_limit"):
        DynamoTaskStore(store.models.table, settings, item_limit=500_000)
    with pytest.raises(ConfigurationError, match="ttl_days"):
        DynamoTaskStore(store.models.table, settings, ttl_days=0)
    with pytest.raises(ConfigurationError, match="table"):
        DynamoTaskStore("t", settings)


def test_ensure_table_is_idempotent_and_turns_on_ttl(moto: None) -> None:
    settings = AwsSettings(region=REGION, max_attempts=1)
    table = unique("tq-table")
    assert ensure_table(table, settings) is True
    assert ensure_table(table, settings) is False
    client = boto3.client("dynamodb", region_name=REGION)
    description = client.describe_table(TableName=table)["Table"]
    assert description["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    assert {k["AttributeName"]: k["KeyType"] for k in description["KeySchema"]} == {
        "pk": "HASH",
        "sk": "RANGE",
    }
    ttl = client.describe_time_to_live(TableName=table)["TimeToLiveDescription"]
    assert (ttl["TimeToLiveStatus"], ttl["AttributeName"]) == ("ENABLED", "ttl")


def test_ensure_table_refuses_a_table_of_another_shape(moto: None) -> None:
    settings = AwsSettings(region=REGION, max_attempts=1)
    client = boto3.client("dynamodb", region_name=REGION)
    client.create_table(
        TableName="tq-other-keys",
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    with pytest.raises(ConfigurationError, match="'pk'"):
        ensure_table("tq-other-keys", settings)
    ensure_table("tq-other-ttl", settings)
    client.update_time_to_live(
        TableName="tq-other-ttl",
        TimeToLiveSpecification={"Enabled": False, "AttributeName": "ttl"},
    )
    client.update_time_to_live(
        TableName="tq-other-ttl",
        TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires"},
    )
    with pytest.raises(ConfigurationError, match="TTL on 'expires'"):
        ensure_table("tq-other-ttl", settings)
