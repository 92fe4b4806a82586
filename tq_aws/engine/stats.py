"""Counters kept by a TaskQueue (what was added, run, retried, dropped, and why)."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(slots=True)
class Stats:
    """Cumulative counts since the TaskQueue was created."""

    added: int = 0
    batches: int = 0
    executed: int = 0
    failed: int = 0
    """Tasks that failed for good (retries exhausted)."""
    retried: int = 0
    ignored: int = 0
    cancelled: int = 0
    expired: int = 0
    held_back: int = 0
    """Deliveries that arrived before their ``execute_at`` and were scheduled again."""
    duplicates_dropped: int = 0
    poison: int = 0
    projection_errors: int = 0
    flows_started: int = 0
    flows_closed: int = 0
    flow_step_duplicates: int = 0
    """Step outcomes that reached a barrier which already had that step's result."""

    def as_dict(self) -> dict[str, int]:
        return asdict(self)
