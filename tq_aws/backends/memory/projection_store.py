"""Memory projection store: rows by entity, replaced only when the new row supersedes."""

from __future__ import annotations

from collections.abc import Sequence

from tq_aws.core.projections import ProjectionRow, supersedes
from tq_aws.core.task import Entity


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
        rows = self._rows.get((entity.type, entity.id), {}).values()
        return sorted((r.model_copy() for r in rows), key=lambda r: (r.created_at, r.task_id))
