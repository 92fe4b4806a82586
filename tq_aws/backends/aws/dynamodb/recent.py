"""Reading the sparse ``recent`` index: one page of the overview's rows, newest first.

The index has ``RECENT_SHARDS`` partitions (``recent_pk``); each is sorted by ``recent_sk``
(last update time, then a digest). A page queries every shard newest first (``Query`` with
``ScanIndexForward=false``, never a ``Scan``) and merges them: a row is taken only once no
shard can still hold a newer unread one, so the merged order is exact. The cursor holds, per
shard, where its unread rows begin (an ``ExclusiveStartKey``), or that it is done.

Filters on status, task type and kind are ``FilterExpression``s (they cut what is returned, not
what is read); the time window is the key condition on ``recent_sk``.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tq_aws.backends.aws.dynamodb.calls import gather_all, in_thread
from tq_aws.backends.aws.dynamodb.models import (
    RECENT_INDEX,
    RECENT_PREFIX,
    RECENT_SHARDS,
    TableModels,
)
from tq_aws.core.recent import RecentFilter, decode_cursor, encode_cursor, time_key
from tq_aws.errors import InvalidQueryError

logger = logging.getLogger(__name__)

KEY_ATTRIBUTES = ("pk", "sk", "recent_pk", "recent_sk")
MAX_QUERIES_PER_SHARD = 4
"""A page stops after this many queries per shard (heavy filters): it may then hold fewer
rows than asked, with a cursor to go on."""
DONE = "done"


@dataclass(slots=True)
class _Shard:
    index: int
    resume: dict[str, Any] | None
    """Where this shard's unread (or unreturned) rows begin; ``None``: at the newest."""
    buffer: list[dict[str, Any]] = field(default_factory=list)
    """Rows read and not yet returned, newest first."""
    last_key: dict[str, Any] | None = None
    """``LastEvaluatedKey`` of the last query; ``None`` once the shard is read to its end."""
    read: bool = False
    queries: int = 0

    @property
    def more(self) -> bool:
        """Rows not read yet remain in the shard."""
        return not self.read or self.last_key is not None

    @property
    def horizon(self) -> str | None:
        """Every unread row of the shard is older than this ``recent_sk``."""
        return None if self.last_key is None else str(self.last_key["recent_sk"]["S"])


def _key_of(raw: dict[str, Any]) -> dict[str, Any]:
    return {name: raw[name] for name in KEY_ATTRIBUTES}


def _sort_key(raw: dict[str, Any]) -> str:
    return str(raw["recent_sk"]["S"])


def _shards_from(cursor: str | None) -> list[_Shard]:
    if cursor is None:
        return [_Shard(i, None) for i in range(RECENT_SHARDS)]
    state = decode_cursor(cursor).get("s")
    if not isinstance(state, dict) or set(state) != {str(i) for i in range(RECENT_SHARDS)}:
        raise InvalidQueryError(
            "cursor is not a cursor of this listing; pass the cursor a page returned",
            field="cursor",
        )
    shards = []
    for i in range(RECENT_SHARDS):
        position = state[str(i)]
        if position == DONE:
            continue
        if position is not None and (
            not isinstance(position, dict) or set(position) != set(KEY_ATTRIBUTES)
        ):
            raise InvalidQueryError(
                "cursor is not a cursor of this listing; pass the cursor a page returned",
                field="cursor",
            )
        shards.append(_Shard(i, position))
    return shards


def _query_kwargs(
    table: str, shard: int, where: RecentFilter, start: dict[str, Any] | None, limit: int
) -> dict[str, Any]:
    names = {"#rp": "recent_pk"}
    values: dict[str, Any] = {":rp": {"S": f"{RECENT_PREFIX}{shard}"}}
    key = "#rp = :rp"
    # recent_sk is "<time>#<digest>": ">= since" keeps rows at ``since``, "< until" (and the
    # BETWEEN's upper bound, below any "<until>#...") leaves out rows at ``until``.
    if where.since is not None and where.until is not None:
        values[":since"] = {"S": time_key(where.since)}
        values[":until"] = {"S": time_key(where.until)}
        key += " AND #rs BETWEEN :since AND :until"
    elif where.since is not None:
        values[":since"] = {"S": time_key(where.since)}
        key += " AND #rs >= :since"
    elif where.until is not None:
        values[":until"] = {"S": time_key(where.until)}
        key += " AND #rs < :until"
    if where.since is not None or where.until is not None:
        names["#rs"] = "recent_sk"
    filters = []
    for attribute, value in (
        ("status", where.status),
        ("task_type", where.task_type),
        ("kind", where.kind),
    ):
        if value is not None:
            names[f"#{attribute}"] = attribute
            values[f":{attribute}"] = {"S": value}
            filters.append(f"#{attribute} = :{attribute}")
    kwargs: dict[str, Any] = {
        "TableName": table,
        "IndexName": RECENT_INDEX,
        "KeyConditionExpression": key,
        "ExpressionAttributeNames": names,
        "ExpressionAttributeValues": values,
        "ScanIndexForward": False,
        "Limit": limit,
    }
    if filters:
        kwargs["FilterExpression"] = " AND ".join(filters)
    if start is not None:
        kwargs["ExclusiveStartKey"] = start
    return kwargs


async def recent_page(
    models: TableModels,
    where: RecentFilter,
    *,
    limit: int,
    cursor: str | None,
    requests: Counter[str],
    query: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> tuple[list[dict[str, Any]], str | None]:
    """The raw items of one page (newest first) and the cursor of the next (``None``: last).

    Args:
        models: the table's models (its connection runs the queries).
        where: the filter (status, task type, kind, time window).
        limit: the most rows to return.
        cursor: the previous page's cursor, or ``None`` for the first page.
        requests: counts one ``Query`` per query made.
        query: runs one ``Query`` (default: ``models.execute``); for tests.
    """
    run = query or (lambda kwargs: models.execute("Query", kwargs))
    shards = _shards_from(cursor)

    async def fetch(shard: _Shard) -> None:
        start = shard.last_key if shard.read else shard.resume
        requests["Query"] += 1
        shard.queries += 1
        data = await in_thread(run, _query_kwargs(models.table, shard.index, where, start, limit))
        shard.buffer.extend(data.get("Items", []))
        shard.last_key = data.get("LastEvaluatedKey")
        shard.read = True

    out: list[dict[str, Any]] = []
    await gather_all(fetch(s) for s in shards)
    while True:
        # A row may be returned once no shard with unread rows can hold a newer one.
        horizons = [h for s in shards if (h := s.horizon) is not None]
        bound = max(horizons) if horizons else None
        ready = [
            (raw, s) for s in shards for raw in s.buffer if bound is None or _sort_key(raw) >= bound
        ]
        ready.sort(key=lambda pair: _sort_key(pair[0]), reverse=True)
        for raw, shard in ready[: limit - len(out)]:
            shard.buffer.remove(raw)
            out.append(raw)
            shard.resume = _key_of(raw)
        for shard in shards:
            if not shard.buffer and shard.read:
                shard.resume = shard.last_key  # every row read was returned: go on from there
        if len(out) >= limit or bound is None:
            break
        blocking = [s for s in shards if s.horizon == bound and s.queries < MAX_QUERIES_PER_SHARD]
        if not blocking:
            break
        await gather_all(fetch(s) for s in blocking)
    return out, _next_cursor(shards)


def _next_cursor(shards: list[_Shard]) -> str | None:
    positions: dict[str, Any] = {str(i): DONE for i in range(RECENT_SHARDS)}
    for shard in shards:
        if shard.buffer or shard.more:
            positions[str(shard.index)] = shard.resume
    if all(p == DONE for p in positions.values()):
        return None
    return encode_cursor({"s": positions})
