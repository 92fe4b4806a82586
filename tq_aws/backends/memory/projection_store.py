"""Memory projection store: rows by entity, replaced only when the new row supersedes."""

from __future__ import annotations

from collections.abc import Sequence

from tq_aws.core.projections import ProjectionRow, supersedes
from tq_aws.core.recent import (
    RecentFilter,
    RecentPage,
    check_limit,
    decode_cursor,
    encode_cursor,
    time_key,
)
from tq_aws.core.task import Entity
from tq_aws.errors import InvalidQueryError

_Key = tuple[str, str, str, str]


def _recent_key(row: ProjectionRow) -> _Key:
    return (time_key(row.updated_at), row.entity_type, row.entity_id, row.task_id)


class MemoryProjectionStore:
    """Entity status rows. ``calls`` counts upsert calls (one per stage per batch)."""

    def __init__(self) -> None:
        self._rows: dict[tuple[str, str], dict[str, ProjectionRow]] = {}
        self.calls = 0
        self.writes = 0

    async def upsert(self, rows: Sequence[ProjectionRow]) -> None:
        self.calls += 1
        for row in rows:
            bucket = self._rows.setdefault((row.entity_type, row.entity_id), {})
            if supersedes(row, bucket.get(row.task_id)):
                bucket[row.task_id] = row.model_copy()
                self.writes += 1

    async def for_entity(self, entity: Entity) -> list[ProjectionRow]:
        # list() of a dict view is one C call: a snapshot even if another thread writes
        rows = list(self._rows.get((entity.type, entity.id), {}).values())
        return sorted((r.model_copy() for r in rows), key=lambda r: (r.created_at, r.task_id))

    async def recent(
        self, where: RecentFilter, *, limit: int = 50, cursor: str | None = None
    ) -> RecentPage:
        """Failed task rows and flow rows that ``where`` accepts, newest first (ties by entity
        and id), ``limit`` at a time."""
        check_limit(limit)
        after: _Key | None = None
        if cursor is not None:
            state = decode_cursor(cursor)
            key = state.get("after")
            if not (
                isinstance(key, list) and len(key) == 4 and all(isinstance(k, str) for k in key)
            ):
                raise InvalidQueryError(
                    "cursor is not a cursor of this listing; pass the cursor a page returned",
                    field="cursor",
                )
            after = (key[0], key[1], key[2], key[3])
        found = [
            row
            for bucket in list(self._rows.values())
            for row in list(bucket.values())
            if where.matches(row) and (after is None or _recent_key(row) < after)
        ]
        found.sort(key=_recent_key, reverse=True)
        page = [r.model_copy() for r in found[:limit]]
        more = len(found) > limit
        next_cursor = encode_cursor({"after": list(_recent_key(page[-1]))}) if more else None
        return RecentPage(page, next_cursor)
