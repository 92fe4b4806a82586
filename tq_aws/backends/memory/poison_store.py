"""Memory poison store: records by source and position, the first sighting kept; failed
deliveries counted by source and position."""

from __future__ import annotations

from collections.abc import Sequence

from tq_aws.core.poison import PoisonRecord, poison_key


class MemoryPoisonStore:
    """Poison records kept in memory (the embedded default's ``PoisonStore``)."""

    def __init__(self) -> None:
        self._records: dict[str, PoisonRecord] = {}
        self._failures: dict[str, tuple[int, str]] = {}
        """Failed deliveries by poison key: the count and the token of the last one."""

    async def record(self, records: Sequence[PoisonRecord]) -> None:
        for record in records:
            self._records.setdefault(record.key, record)

    async def recent(self, limit: int = 100) -> list[PoisonRecord]:
        records = sorted(self._records.values(), key=lambda r: r.seen_at, reverse=True)
        return records[: max(0, limit)]

    async def count_failures(
        self, positions: Sequence[tuple[str, str]], *, token: str
    ) -> list[int]:
        counts = []
        for queue_id, position in positions:
            key = poison_key(queue_id, position)
            count, last = self._failures.get(key, (0, ""))
            if last != token:  # a repeat of the same failure counts once
                count += 1
                self._failures[key] = (count, token)
            counts.append(count)
        return counts
