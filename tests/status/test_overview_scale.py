"""The overview stays an index read with many rows: thousands of projection rows on DynamoDB
(moto), read page by page through the cursor, newest first, by ``Query`` on the ``recent``
index only (a botocore hook counts every call the store's client makes: no ``Scan``)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from tests.status.shop import close, new_app, url_event
from tests.support.aws import REGION, unique
from tq_aws.backends.aws.clients import AwsSettings
from tq_aws.backends.aws.dynamodb import DynamoProjectionStore, ensure_table
from tq_aws.backends.aws.dynamodb.models import RECENT_SHARDS
from tq_aws.backends.aws.dynamodb.recent import MAX_QUERIES_PER_SHARD
from tq_aws.core.projections import RANKS, ProjectionRow
from tq_aws.core.recent import RecentFilter
from tq_aws.testing import ManualClock

T0 = datetime(2026, 3, 1, tzinfo=UTC)
FAILED, FLOWS, EXECUTED = 2000, 300, 200
"""2,500 rows: the overview lists the failed task rows and the flow rows (2,300)."""


def rows() -> list[ProjectionRow]:
    out = []
    for i in range(FAILED + FLOWS + EXECUTED):
        # of every 25 rows: 3 flow rows, 2 executed task rows, 20 failed task rows
        if i % 25 in (0, 12, 20):
            kind, status, task_type = "flow", ("processing", "executed", "failed")[i % 3], "ship"
        elif i % 25 in (5, 15):
            kind, status, task_type = "task", "executed", "pay"
        else:
            kind, status, task_type = "task", "failed", ("pay", "pack")[i % 2]
        at = T0 + timedelta(seconds=i)
        out.append(
            ProjectionRow(
                entity_id=f"o-{i % 500}",
                entity_type="order",
                task_id=f"t-{i:05d}",
                task_type=task_type,
                queue_id="shop",
                status=status,
                rank=RANKS[status],
                version=i,
                error="card declined" if status == "failed" else None,
                created_at=at,
                updated_at=at,
                kind=kind,
            )
        )
    return out


@pytest.fixture
def loaded(moto: None) -> Iterator[tuple[DynamoProjectionStore, list[ProjectionRow], Counter[str]]]:
    """A table holding the rows, written with BatchWriteItem (25 items a call) as the store
    encodes them, and a counter of every call the store's own client makes from then on."""
    settings = AwsSettings(region=REGION, max_attempts=1)
    table = unique("tq-scale")
    ensure_table(table, settings)
    store = DynamoProjectionStore(table, settings)
    written = rows()
    import asyncio

    async def encode() -> list[Any]:
        return [await store._encode(r) for r in written]

    items = asyncio.run(encode())
    client = boto3.client("dynamodb", region_name=REGION)
    for start in range(0, len(items), 25):
        batch = [{"PutRequest": {"Item": item.serialize()}} for item in items[start : start + 25]]
        client.batch_write_item(RequestItems={table: batch})
    calls: Counter[str] = Counter()

    def count(model: Any, **_: Any) -> None:
        calls[model.name] += 1

    store.models.connection.connection.client.meta.events.register("before-call.dynamodb", count)
    yield store, written, calls


def listed(written: list[ProjectionRow], where: RecentFilter) -> list[str]:
    return [
        r.task_id
        for r in sorted(written, key=lambda r: r.updated_at, reverse=True)
        if where.matches(r)
    ]


async def test_every_page_by_cursor_newest_first_by_index_queries_only(
    loaded: tuple[DynamoProjectionStore, list[ProjectionRow], Counter[str]],
) -> None:
    store, written, calls = loaded
    where = RecentFilter()
    expected = listed(written, where)
    assert len(expected) == FAILED + FLOWS
    seen: list[str] = []
    queries_per_page = []
    cursor = None
    while True:
        before = calls["Query"]
        page = await store.recent(where, limit=250, cursor=cursor)
        queries_per_page.append(calls["Query"] - before)
        seen.extend(r.task_id for r in page.rows)
        assert len(page.rows) == 250 or page.cursor is None
        cursor = page.cursor
        if cursor is None:
            break
    assert seen == expected  # every row once, newest first, across the index's shards
    assert len(queries_per_page) == 10
    assert set(calls) == {"Query"}  # no Scan, no GetItem: the index alone
    assert max(queries_per_page) <= RECENT_SHARDS * MAX_QUERIES_PER_SHARD


async def test_filtered_pages_by_status_type_and_time(
    loaded: tuple[DynamoProjectionStore, list[ProjectionRow], Counter[str]],
) -> None:
    store, written, calls = loaded
    for where in (
        RecentFilter(task_type="pack"),
        RecentFilter(kind="flow", status="failed"),
        RecentFilter(since=T0 + timedelta(seconds=1000), until=T0 + timedelta(seconds=1400)),
    ):
        seen: list[str] = []
        cursor = None
        while True:
            page = await store.recent(where, limit=250, cursor=cursor)
            seen.extend(r.task_id for r in page.rows)
            cursor = page.cursor
            if cursor is None:
                break
        assert seen == listed(written, where), where
    assert set(calls) == {"Query"}


async def test_the_overview_api_on_many_rows(
    loaded: tuple[DynamoProjectionStore, list[ProjectionRow], Counter[str]], clock: ManualClock
) -> None:
    store, written, calls = loaded
    app = new_app(clock, projection_store=store)
    try:
        handler = app.status_handler()
        response = handler(url_event("GET", "/", query={"kind": "task", "limit": "50"}), None)
        body = json.loads(response["body"])
        assert [r["task_id"] for r in body["rows"]] == listed(written, RecentFilter(kind="task"))[
            :50
        ]
        second = handler(
            url_event("GET", "/", query={"kind": "task", "limit": "50", "cursor": body["cursor"]}),
            None,
        )
        assert [r["task_id"] for r in json.loads(second["body"])["rows"]] == listed(
            written, RecentFilter(kind="task")
        )[50:100]
        assert set(calls) == {"Query"}
    finally:
        close(app)
