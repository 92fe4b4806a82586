"""Shared helpers for the test suite (``from tests.support.events import ...``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from tq_aws import Entity, LifecycleListener, Task

USER = Entity(id="u-1", type="user")


def make_task(type: str = "t", queue_id: str = "q", **fields: Any) -> Task:
    """A task with the given type and queue (``t`` on ``q`` unless told otherwise)."""
    return Task(type=type, queue_id=queue_id, **fields)


@dataclass
class EventRecorder(LifecycleListener):
    """A lifecycle listener that keeps every event as ``(name, args...)``."""

    events: list[tuple[Any, ...]] = field(default_factory=list)

    def names(self) -> list[str]:
        return [e[0] for e in self.events]

    def of(self, name: str) -> list[tuple[Any, ...]]:
        return [e for e in self.events if e[0] == name]

    def on_task_scheduled(self, task: Task) -> None:
        self.events.append(("scheduled", task.id))

    def on_task_started(self, task: Task) -> None:
        self.events.append(("started", task.id))

    def on_task_completed(self, task: Task, result: Any) -> None:
        self.events.append(("completed", task.id, result))

    def on_task_failed(
        self, task: Task, error: str | None, will_retry: bool, next_attempt_at: datetime | None
    ) -> None:
        self.events.append(("failed", task.id, error, will_retry, next_attempt_at))

    def on_task_exhausted(self, task: Task, error: str | None, attempts: int) -> None:
        self.events.append(("exhausted", task.id, error, attempts))

    def on_task_ignored(self, task: Task, reason: str) -> None:
        self.events.append(("ignored", task.id, reason))

    def on_task_cancelled(self, task: Task) -> None:
        self.events.append(("cancelled", task.id))

    def on_task_expired(self, task: Task) -> None:
        self.events.append(("expired", task.id))

    def on_batch_started(self, queue_id: str, size: int) -> None:
        self.events.append(("batch_started", queue_id, size))

    def on_batch_completed(
        self, queue_id: str, size: int, succeeded: int, failed: int, duration_s: float
    ) -> None:
        self.events.append(("batch_completed", queue_id, size, succeeded, failed))


class WorkerKilled(BaseException):
    """Stands for the worker dying mid-batch (not an ``Exception``, so nothing swallows it)."""
