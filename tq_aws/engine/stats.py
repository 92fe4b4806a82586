"""Counters kept by a TaskQueue (what was added, run, retried, dropped, and why)."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(slots=True)
class Stats:
    """Cumulative counts since the TaskQueue was created."""

    added: int = 0
    """Tasks accepted by ``add_tasks`` (an executor's children and flow steps included)."""
    batches: int = 0
    """Delivered batches run."""
    executed: int = 0
    """Tasks that succeeded."""
    failed: int = 0
    """Tasks that failed for good (retries exhausted)."""
    retried: int = 0
    """Failed attempts that were scheduled for a retry."""
    ignored: int = 0
    """Tasks with no executor registered for their ``(queue_id, type)``."""
    cancelled: int = 0
    """Tasks cancelled by ``cancel`` before they started."""
    expired: int = 0
    """Tasks delivered at or after their ``expires_at``, not run."""
    held_back: int = 0
    """Deliveries that arrived before their ``execute_at`` and were scheduled again."""
    duplicates_dropped: int = 0
    """Deliveries not run: a second copy in one batch, or a stored task already finished or
    at a later attempt."""
    poison: int = 0
    """Records that could not be decoded, kept in the poison store."""
    projection_errors: int = 0
    """Projection writes that failed (the tasks still ran)."""
    flows_started: int = 0
    """Flows started by ``actions.start_flow``."""
    flows_closed: int = 0
    """Flows that closed (joined, aborted or timed out)."""
    flow_step_duplicates: int = 0
    """Step outcomes that reached a barrier which already had that step's result."""

    def as_dict(self) -> dict[str, int]:
        return asdict(self)
