"""Memory poison store: records by source and position, the first sighting kept."""

from __future__ import annotations

from collections.abc import Sequence

from tq_aws.core.poison import PoisonRecord


class MemoryPoisonStore:
    """Poison records kept in memory (the embedded default's ``PoisonStore``)."""

    def __init__(self) -> None:
        self._records: dict[str, PoisonRecord] = {}

    async def record(self, records: Sequence[PoisonRecord]) -> None:
        for record in records:
            self._records.setdefault(record.key, record)

    async def recent(self, limit: int = 100) -> list[PoisonRecord]:
        records = sorted(self._records.values(), key=lambda r: r.seen_at, reverse=True)
        return records[: max(0, limit)]
