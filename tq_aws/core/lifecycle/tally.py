"""What the events remember between them: when each running attempt started (for the timing
of its outcome) and what each worker and consumer ran (for heartbeats and stops)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tq_aws.core.lifecycle import events as ev
else:  # the event classes load with the first event built (``names``)
    from tq_aws.core.lifecycle.names import lazy_events as ev

MAX_REMEMBERED_STARTS = 100_000
"""Start times kept at most (an attempt whose outcome never comes, a crashed batch, must not
grow the map forever): the oldest are forgotten first."""


class StartTimes:
    """The start time of each running attempt, by task id."""

    def __init__(self, limit: int = MAX_REMEMBERED_STARTS) -> None:
        self._starts: dict[str, datetime] = {}
        self._limit = limit

    def __len__(self) -> int:
        return len(self._starts)

    def remember(self, task_id: str, at: datetime) -> None:
        starts = self._starts
        starts.pop(task_id, None)
        starts[task_id] = at
        if len(starts) > self._limit:
            del starts[next(iter(starts))]

    def forget(self, task_id: str) -> None:
        self._starts.pop(task_id, None)

    def timing(
        self, task_id: str, created_at: datetime | None, now: datetime, *, forget: bool = True
    ) -> ev.TaskTiming:
        """The attempt's timing (forgetting its start unless told not to); an attempt whose
        start is unknown started ``now``, as in the reference."""
        starts = self._starts
        started = (starts.pop(task_id, None) if forget else starts.get(task_id)) or now
        created = created_at or started
        return ev.TaskTiming(
            queued_duration_ms=_ms(started - created),
            processing_duration_ms=_ms(now - started),
            total_duration_ms=_ms(now - created),
        )


def _ms(delta: timedelta) -> float:
    return max(delta.total_seconds() * 1000.0, 0.0)


@dataclass(slots=True)
class _Counts:
    processed: int = 0
    succeeded: int = 0
    failed: int = 0
    busy_ms: float = 0.0
    last_at: datetime | None = None


class Totals:
    """What the worker and each consumer ran, counted at the end of each delivered batch."""

    def __init__(self) -> None:
        self._worker = _Counts()
        self._consumers: dict[str, tuple[str, _Counts]] = {}

    def reset(self) -> None:
        """Start counting again (a worker loop starts)."""
        self._worker = _Counts()
        self._consumers = {}

    def consumer(self, consumer_id: str, queue_id: str) -> None:
        """Know a consumer before its first batch."""
        self._consumers.setdefault(consumer_id, (queue_id, _Counts()))

    def count(
        self,
        consumer_id: str | None,
        queue_id: str,
        succeeded: int,
        failed: int,
        duration_ms: float,
        at: datetime,
    ) -> None:
        for counts in self._targets(consumer_id, queue_id):
            counts.processed += succeeded + failed
            counts.succeeded += succeeded
            counts.failed += failed
            counts.busy_ms += duration_ms
            counts.last_at = at

    def _targets(self, consumer_id: str | None, queue_id: str) -> list[_Counts]:
        if consumer_id is None:
            return [self._worker]
        if consumer_id not in self._consumers:
            self._consumers[consumer_id] = (queue_id, _Counts())
        return [self._worker, self._consumers[consumer_id][1]]

    def worker(self) -> ev.WorkerTotals:
        c = self._worker
        return ev.WorkerTotals(
            tasks_processed=c.processed,
            tasks_succeeded=c.succeeded,
            tasks_failed=c.failed,
            avg_processing_ms=c.busy_ms / c.processed if c.processed else None,
        )

    def consumers(self) -> tuple[ev.ConsumerTotals, ...]:
        return tuple(self.of_consumer(cid) for cid in self._consumers)

    def of_consumer(self, consumer_id: str) -> ev.ConsumerTotals:
        queue_id, c = self._consumers.get(consumer_id, ("", _Counts()))
        return ev.ConsumerTotals(
            consumer_id=consumer_id,
            queue_id=queue_id,
            tasks_processed=c.processed,
            tasks_succeeded=c.succeeded,
            tasks_failed=c.failed,
            last_task_at=c.last_at,
        )
