"""Memory scheduler: a timer heap on the injected clock.

Nothing fires by itself: the local runtime calls ``fire_due(now)``, which publishes every entry
due at ``now`` to the transport (as EventBridge Scheduler targets the stream or queue itself).
A fired entry is gone, like a one-time schedule with ``ActionAfterCompletion=DELETE``.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from datetime import datetime
from itertools import count

from tq_aws.ports import ScheduledTask, Transport


class MemoryScheduler:
    """Scheduler port on a heap; ``schedule`` of a name already pending is a no-op."""

    def __init__(self, transport: Transport) -> None:
        self._transport = transport
        self._heap: list[tuple[datetime, int, str]] = []
        self._pending: dict[str, ScheduledTask] = {}
        self._seq = count()

    async def schedule(self, entries: Sequence[ScheduledTask]) -> None:
        for entry in entries:
            if entry.name in self._pending:
                continue
            self._pending[entry.name] = entry
            heapq.heappush(self._heap, (entry.at, next(self._seq), entry.name))

    async def cancel(self, names: Sequence[str]) -> None:
        for name in names:
            self._pending.pop(name, None)

    async def fire_due(self, now: datetime) -> int:
        """Publish every entry due at ``now`` in due order; return how many fired."""
        due: list[ScheduledTask] = []
        while self._heap and self._heap[0][0] <= now:
            _, _, name = heapq.heappop(self._heap)
            entry = self._pending.pop(name, None)
            if entry is not None and entry.at <= now:
                due.append(entry)
            elif entry is not None:  # cancelled and scheduled again later under the same name
                self._pending[name] = entry
        if due:
            await self._transport.publish([e.task for e in due])
        return len(due)

    def next_due(self) -> datetime | None:
        """When the earliest pending entry is due, or ``None``."""
        while self._heap and self._heap[0][2] not in self._pending:
            heapq.heappop(self._heap)
        return self._heap[0][0] if self._heap else None

    def pending_names(self) -> list[str]:
        return sorted(self._pending)
