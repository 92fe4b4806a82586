"""ProjectionStore.recent contract: the overview's rows (failed task rows, flow rows) across
entities, newest first, filtered and paged by cursor; the same assertions over the memory store
and the DynamoDB store (moto), where it reads the sparse ``recent`` index and never scans."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.support.aws import REGION, unique
from tq_aws.backends.aws.clients import AwsSettings
from tq_aws.backends.aws.dynamodb import DynamoProjectionStore, ensure_table
from tq_aws.backends.memory import MemoryBlobStore, MemoryProjectionStore
from tq_aws.core.projections import RANKS, ProjectionRow
from tq_aws.core.recent import RecentFilter, RecentPage
from tq_aws.errors import InvalidQueryError

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(params=["memory", "dynamodb"])
def store(request: pytest.FixtureRequest) -> Iterator[Any]:
    if request.param == "memory":
        yield MemoryProjectionStore()
        return
    request.getfixturevalue("moto")
    settings = AwsSettings(region=REGION, max_attempts=1)
    table = unique("tq-recent")
    ensure_table(table, settings)
    yield DynamoProjectionStore(table, settings, blob_store=MemoryBlobStore())


def row(
    task_id: str,
    status: str,
    at: datetime,
    *,
    entity: str = "u-1",
    kind: str = "task",
    task_type: str = "send",
    generation: int = 0,
    **kw: Any,
) -> ProjectionRow:
    return ProjectionRow(
        entity_id=entity,
        entity_type="user",
        task_id=task_id,
        task_type=task_type,
        queue_id="q",
        status=status,
        rank=RANKS[status],
        version=int(at.timestamp() * 1_000_000),
        generation=generation,
        created_at=T0,
        updated_at=at,
        kind=kind,
        **kw,
    )


async def all_pages(store: Any, where: RecentFilter, limit: int) -> list[RecentPage]:
    pages = [await store.recent(where, limit=limit)]
    while pages[-1].cursor is not None:
        pages.append(await store.recent(where, limit=limit, cursor=pages[-1].cursor))
        assert len(pages) < 100
    return pages


def ids(page: RecentPage) -> list[str]:
    return [r.task_id for r in page.rows]


async def test_lists_failed_task_rows_and_flow_rows_newest_first(store: Any) -> None:
    await store.upsert(
        [
            row("t-ok", "executed", T0 + timedelta(seconds=1)),
            row("t-run", "processing", T0 + timedelta(seconds=2)),
            row("t-bad", "failed", T0 + timedelta(seconds=3), error="boom"),
            row("f-1", "processing", T0 + timedelta(seconds=4), kind="flow"),
            row("t-bad2", "failed", T0 + timedelta(seconds=5), entity="u-2"),
            row("f-2", "executed", T0 + timedelta(seconds=6), kind="flow", entity="u-3"),
        ]
    )
    page = await store.recent(RecentFilter())
    assert ids(page) == ["f-2", "t-bad2", "f-1", "t-bad"]
    assert page.cursor is None
    assert page.rows[-1].error == "boom"
    assert [r.kind for r in page.rows] == ["flow", "task", "flow", "task"]


async def test_filters_by_status_type_kind_and_time(store: Any) -> None:
    await store.upsert(
        [
            row("a", "failed", T0, task_type="send"),
            row("b", "failed", T0 + timedelta(minutes=1), task_type="bill"),
            row("c", "failed", T0 + timedelta(minutes=2), task_type="send", entity="u-2"),
            row("f", "executed", T0 + timedelta(minutes=3), kind="flow", task_type="join"),
            row("g", "failed", T0 + timedelta(minutes=4), kind="flow", task_type="join"),
        ]
    )
    assert ids(await store.recent(RecentFilter(status="failed"))) == ["g", "c", "b", "a"]
    assert ids(await store.recent(RecentFilter(task_type="send"))) == ["c", "a"]
    assert ids(await store.recent(RecentFilter(kind="flow"))) == ["g", "f"]
    assert ids(await store.recent(RecentFilter(kind="task", status="failed"))) == ["c", "b", "a"]
    window = RecentFilter(since=T0 + timedelta(minutes=1), until=T0 + timedelta(minutes=3))
    assert ids(await store.recent(window)) == ["c", "b"]  # since included, until left out
    assert ids(await store.recent(RecentFilter(since=T0 + timedelta(minutes=3)))) == ["g", "f"]
    assert ids(await store.recent(RecentFilter(until=T0 + timedelta(minutes=1)))) == ["a"]


async def test_a_row_leaves_the_listing_once_it_is_no_longer_failed(store: Any) -> None:
    await store.upsert([row("t-1", "failed", T0)])
    assert ids(await store.recent(RecentFilter())) == ["t-1"]
    # an operator's retry: the next generation starts at scheduled and supersedes the failure
    await store.upsert([row("t-1", "scheduled", T0 + timedelta(seconds=1), generation=1)])
    assert ids(await store.recent(RecentFilter())) == []
    [current] = await store.for_entity(row("t-1", "failed", T0).entity)
    assert (current.status, current.generation) == ("scheduled", 1)


async def test_a_flow_row_moves_to_the_top_when_it_changes(store: Any) -> None:
    await store.upsert([row("f-1", "processing", T0, kind="flow")])
    await store.upsert([row("t-1", "failed", T0 + timedelta(seconds=1))])
    assert ids(await store.recent(RecentFilter())) == ["t-1", "f-1"]
    await store.upsert([row("f-1", "executed", T0 + timedelta(seconds=2), kind="flow")])
    page = await store.recent(RecentFilter())
    assert ids(page) == ["f-1", "t-1"]
    assert page.rows[0].status == "executed"


@pytest.mark.parametrize("limit", [1, 3, 7])
async def test_pages_by_cursor_cover_every_row_once_in_order(store: Any, limit: int) -> None:
    rows = [
        row(f"t-{i:02d}", "failed", T0 + timedelta(seconds=i), entity=f"u-{i % 5}")
        for i in range(23)
    ]
    await store.upsert(rows)
    pages = await all_pages(store, RecentFilter(), limit)
    assert all(len(p.rows) <= limit for p in pages)
    listed = [task_id for p in pages for task_id in ids(p)]
    assert listed == [f"t-{i:02d}" for i in reversed(range(23))]


async def test_pages_with_a_filter_hold_only_matching_rows(store: Any) -> None:
    await store.upsert(
        [
            row(f"t-{i:02d}", "failed", T0 + timedelta(seconds=i), task_type=("a", "b")[i % 2])
            for i in range(20)
        ]
    )
    pages = await all_pages(store, RecentFilter(task_type="b"), 3)
    listed = [task_id for p in pages for task_id in ids(p)]
    assert listed == [f"t-{i:02d}" for i in reversed(range(20)) if i % 2]


async def test_a_limit_out_of_range_or_a_foreign_cursor_is_refused(store: Any) -> None:
    for limit in (0, 501, True):
        with pytest.raises(InvalidQueryError, match="limit=") as caught:
            await store.recent(RecentFilter(), limit=limit)
        assert caught.value.field == "limit"
    for cursor in ("not a cursor!", "e30", "WzFd"):  # garbage, {}, [1]
        with pytest.raises(InvalidQueryError, match="cursor") as caught:
            await store.recent(RecentFilter(), cursor=cursor)
        assert caught.value.field == "cursor"


# -- DynamoDB only -----------------------------------------------------------------------------


async def test_dynamodb_reads_the_index_by_query_only(store: Any) -> None:
    if not isinstance(store, DynamoProjectionStore):
        pytest.skip("DynamoDB store only")
    await store.upsert([row(f"t-{i}", "failed", T0 + timedelta(seconds=i)) for i in range(10)])
    store.requests.clear()
    page = await store.recent(RecentFilter(), limit=4)
    assert len(page.rows) == 4
    assert set(store.requests) == {"Query"}
    assert store.requests["Query"] >= 1


async def test_dynamodb_items_of_listed_rows_only_carry_the_index_keys(store: Any) -> None:
    if not isinstance(store, DynamoProjectionStore):
        pytest.skip("DynamoDB store only")
    await store.upsert(
        [
            row("t-ok", "executed", T0),
            row("t-bad", "failed", T0),
            row("f-1", "processing", T0, kind="flow"),
        ]
    )
    client = store.models.connection.connection.client
    items = client.scan(TableName=store.table)["Items"]  # the test's own look at the table
    indexed = {i["sk"]["S"] for i in items if "recent_pk" in i}
    assert indexed == {"TASK#t-bad", "TASK#f-1"}
