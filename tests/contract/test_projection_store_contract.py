"""ProjectionStore contract: the same assertions over the memory store and the DynamoDB store
(moto)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.support.aws import REGION, unique
from tq_aws.backends.aws.clients import AwsSettings
from tq_aws.backends.aws.dynamodb import (
    DynamoProjectionStore,
    ensure_table,
)
from tq_aws.backends.memory import MemoryBlobStore, MemoryProjectionStore
from tq_aws.core.projections import RANKS, ProjectionRow
from tq_aws.core.task import Entity
from tq_aws.errors import ItemTooLargeError

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
USER = Entity(id="u-1", type="user")
ITEM_LIMIT = 4096


@dataclass
class Backend:
    kind: str
    store: Any
    blobs: MemoryBlobStore


@pytest.fixture(params=["memory", "dynamodb"])
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    blobs = MemoryBlobStore()
    if request.param == "memory":
        yield Backend("memory", MemoryProjectionStore(), blobs)
        return
    request.getfixturevalue("moto")
    settings = AwsSettings(region=REGION, max_attempts=1)
    table = unique("tq-projections")
    ensure_table(table, settings)
    store = DynamoProjectionStore(table, settings, blob_store=blobs, item_limit=ITEM_LIMIT)
    yield Backend("dynamodb", store, blobs)


@pytest.fixture
def store(backend: Backend) -> Any:
    return backend.store


def row(
    status: str,
    version: int,
    *,
    task_id: str = "t-1",
    entity: Entity = USER,
    created: datetime = T0,
    **kw: Any,
) -> ProjectionRow:
    return ProjectionRow(
        entity_id=entity.id,
        entity_type=entity.type,
        task_id=task_id,
        task_type="send",
        queue_id="q",
        status=status,
        rank=RANKS[status],
        version=version,
        created_at=created,
        updated_at=created + timedelta(microseconds=version),
        **kw,
    )


async def only(store: Any, entity: Entity = USER) -> ProjectionRow:
    [found] = await store.for_entity(entity)
    return found


async def test_row_round_trip(store: Any) -> None:
    full = row(
        "failed",
        7,
        error="boom",
        result={"partial": [1, 2.5, None]},
        payload={"to": "a@b.c"},
    )
    await store.upsert([full])
    assert await store.for_entity(USER) == [full]
    assert await store.for_entity(Entity(id="u-2", type="user")) == []


async def test_row_kind_round_trip(store: Any) -> None:
    """A flow's own row stays a flow row; every other row is a task row."""
    await store.upsert([row("processing", 1, task_id="f-1", kind="flow"), row("executed", 2)])
    kinds = {r.task_id: r.kind for r in await store.for_entity(USER)}
    assert kinds == {"f-1": "flow", "t-1": "task"}
    await store.upsert([row("executed", 3, task_id="f-1", kind="flow")])
    assert [(r.kind, r.status) for r in await store.for_entity(USER) if r.task_id == "f-1"] == [
        ("flow", "executed")
    ]


@pytest.mark.parametrize("one_call", [False, True], ids=["call-per-row", "one-call"])
async def test_every_order_of_scheduled_processing_terminal_ends_terminal(
    store: Any, one_call: bool
) -> None:
    rows = [row("scheduled", 1), row("processing", 2), row("executed", 3)]
    for n, order in enumerate(itertools.permutations(rows)):
        entity = Entity(id=f"u-{n}", type="user")
        ordered = [r.model_copy(update={"entity_id": entity.id}) for r in order]
        if one_call:
            await store.upsert(ordered)
        else:
            for r in ordered:
                await store.upsert([r])
        final = await only(store, entity)
        assert (final.status, final.version) == ("executed", 3), order


async def test_the_first_terminal_status_stays(store: Any) -> None:
    rows = [row("processing", 1), row("executed", 2), row("failed", 3), row("cancelled", 4)]
    for n, order in enumerate(itertools.permutations(rows)):
        entity = Entity(id=f"u-{n}", type="user")
        ordered = [r.model_copy(update={"entity_id": entity.id}) for r in order]
        await store.upsert(ordered)
        first_terminal = next(r for r in ordered if r.rank == 2)
        final = await only(store, entity)
        assert (final.status, final.version) == (first_terminal.status, first_terminal.version)


async def test_same_rank_newer_version_replaces_non_terminal_only(store: Any) -> None:
    await store.upsert([row("processing", 5, error="five")])
    await store.upsert([row("processing", 3, error="three")])  # older: refused
    assert (await only(store)).error == "five"
    await store.upsert([row("processing", 5, error="five again")])  # same version: refused
    assert (await only(store)).error == "five"
    await store.upsert([row("processing", 6, error="six")])  # newer: replaces
    assert (await only(store)).error == "six"
    await store.upsert([row("scheduled", 9)])  # lower rank, newer version: refused
    assert (await only(store)).status == "processing"
    await store.upsert([row("executed", 10, result=1)])
    await store.upsert([row("executed", 20, result=2)])  # terminal: never replaced
    await store.upsert([row("processing", 30)])
    final = await only(store)
    assert (final.status, final.result) == ("executed", 1)


async def test_for_entity_orders_by_created_at_then_task_id(store: Any) -> None:
    other = Entity(id="u-2", type="user")
    await store.upsert(
        [
            row("scheduled", 1, task_id="t-c", created=T0 + timedelta(seconds=2)),
            row("scheduled", 1, task_id="t-b", created=T0),
            row("processing", 1, task_id="t-a", created=T0 + timedelta(seconds=1)),
            row("scheduled", 1, task_id="t-0", created=T0),
            row("scheduled", 1, task_id="t-x", entity=other),
        ]
    )
    assert [r.task_id for r in await store.for_entity(USER)] == ["t-0", "t-b", "t-a", "t-c"]
    assert [r.task_id for r in await store.for_entity(other)] == ["t-x"]


async def test_entities_whose_keys_join_alike_stay_apart(store: Any) -> None:
    left, right = Entity(id="c", type="a#b"), Entity(id="b#c", type="a")
    await store.upsert(
        [row("scheduled", 1, task_id="t-l", entity=left), row("failed", 1, entity=right)]
    )
    assert [r.task_id for r in await store.for_entity(left)] == ["t-l"]
    assert [r.task_id for r in await store.for_entity(right)] == ["t-1"]


async def test_large_result_and_payload_round_trip(store: Any) -> None:
    big = row("executed", 1, result="r" * 2 * ITEM_LIMIT, payload={"p": "p" * 2 * ITEM_LIMIT})
    await store.upsert([big])
    assert await store.for_entity(USER) == [big]


async def test_upsert_counts_calls(store: Any) -> None:
    await store.upsert([row("scheduled", 1), row("scheduled", 1, task_id="t-2")])
    await store.upsert([row("executed", 2)])
    assert store.calls == 2
    assert store.writes == 3


# -- DynamoDB only -----------------------------------------------------------------------------


def dynamo(backend: Backend) -> DynamoProjectionStore:
    if backend.kind != "dynamodb":
        pytest.skip("DynamoDB store only")
    store: DynamoProjectionStore = backend.store
    return store


async def test_one_conditional_put_per_row_and_a_query_per_read(backend: Backend) -> None:
    store = dynamo(backend)
    rows = [row("scheduled", 1, task_id=f"t-{i}") for i in range(7)]
    await store.upsert(rows)
    await store.upsert([row("scheduled", 0, task_id="t-0")])  # refused by its condition
    assert store.requests == {"PutItem": 8}
    assert store.writes == 7
    assert len(await store.for_entity(USER)) == 7
    assert store.requests["Query"] == 1


async def test_large_rows_keep_their_values_in_the_blob_store(backend: Backend) -> None:
    store = dynamo(backend)
    await store.upsert([row("executed", 1, result="r" * 2 * ITEM_LIMIT)])
    assert len(backend.blobs._blobs) == 1
    bare = DynamoProjectionStore(
        store.models.table, AwsSettings(region=REGION), item_limit=ITEM_LIMIT
    )
    with pytest.raises(ItemTooLargeError, match="blob_store="):
        await bare.upsert([row("executed", 1, task_id="t-2", result="r" * 2 * ITEM_LIMIT)])
    assert [r.task_id for r in await store.for_entity(USER)] == ["t-1"]
