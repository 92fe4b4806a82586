"""What an ECS worker counts while it runs, and the report ``EcsWorker.run`` returns."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class WorkerStats:
    """Counters of one worker's run."""

    batches: int = 0
    records: int = 0
    failed_batches: int = 0
    checkpoints: int = 0
    leases_taken: int = 0
    leases_lost: int = 0
    leases_handed_over: int = 0
    leases_released: int = 0
    handovers_requested: int = 0
    shards_finished: int = 0
    sqs_heartbeats: int = 0
    sqs_handed_back: int = 0
    cancelled_at_grace: int = 0
    records_parked: int = 0
    """Records settled after ``max_deliveries`` failed deliveries: recorded when run alone,
    else parked in the poison store."""


@dataclass(frozen=True, slots=True)
class WorkerReport:
    """What a worker did, returned by ``run`` once it has stopped.

    Attributes:
        stats: the counters.
        abandoned_task_ids: handed-off tasks still running at the end of the grace (their
            stored record and delivery watchdog bring them back).
    """

    stats: WorkerStats
    abandoned_task_ids: list[str] = field(default_factory=list)


__all__ = ["WorkerReport", "WorkerStats"]
