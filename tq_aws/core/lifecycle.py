"""Lifecycle events: subclass ``LifecycleListener``, override what you need, and pass it to
``TaskQueue.add_listener``. Listeners are called synchronously; an exception in one is logged
and never disturbs processing."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from tq_aws.core.task import Task

logger = logging.getLogger(__name__)


class LifecycleListener:
    """No-op base: every hook does nothing until overridden."""

    def on_task_scheduled(self, task: Task) -> None:
        """The task was accepted (published, stored or scheduled)."""

    def on_task_started(self, task: Task) -> None:
        """An attempt is about to run."""

    def on_task_completed(self, task: Task, result: Any) -> None:
        """The task was executed; its outcome is recorded."""

    def on_task_failed(
        self, task: Task, error: str | None, will_retry: bool, next_attempt_at: datetime | None
    ) -> None:
        """An attempt failed (``task`` is that attempt, with its ``execution_stats``);
        ``will_retry`` says whether another is scheduled, and ``next_attempt_at`` when."""

    def on_task_exhausted(self, task: Task, error: str | None, attempts: int) -> None:
        """The task failed for good after ``attempts`` attempts."""

    def on_task_ignored(self, task: Task, reason: str) -> None:
        """The task was not run (``unknown_executor``)."""

    def on_task_cancelled(self, task: Task) -> None:
        """The task was cancelled before it started."""

    def on_task_expired(self, task: Task) -> None:
        """The task was delivered after its ``expires_at`` and not run."""

    def on_flow_started(self, flow_id: str, total: int) -> None:
        """A flow's barrier was created and its steps dispatched."""

    def on_flow_closed(self, flow_id: str, state: str, succeeded: int, failed: int) -> None:
        """A flow closed (``joined``, ``aborted`` or ``timed_out``) and its join was dispatched."""

    def on_batch_started(self, queue_id: str, size: int) -> None:
        """A delivered batch is about to run."""

    def on_batch_completed(
        self, queue_id: str, size: int, succeeded: int, failed: int, duration_s: float
    ) -> None:
        """A delivered batch was run and post-processed."""


class LifecycleBus(LifecycleListener):
    """Fans every event out to the registered listeners, isolating their errors."""

    def __init__(self) -> None:
        self.listeners: list[LifecycleListener] = []

    def __bool__(self) -> bool:
        return bool(self.listeners)

    def _emit(self, name: str, *args: Any) -> None:
        for listener in self.listeners:
            try:
                getattr(listener, name)(*args)
            except Exception:
                logger.exception("lifecycle listener %r failed in %s", listener, name)

    def on_task_scheduled(self, task: Task) -> None:
        self._emit("on_task_scheduled", task)

    def on_task_started(self, task: Task) -> None:
        self._emit("on_task_started", task)

    def on_task_completed(self, task: Task, result: Any) -> None:
        self._emit("on_task_completed", task, result)

    def on_task_failed(
        self, task: Task, error: str | None, will_retry: bool, next_attempt_at: datetime | None
    ) -> None:
        self._emit("on_task_failed", task, error, will_retry, next_attempt_at)

    def on_task_exhausted(self, task: Task, error: str | None, attempts: int) -> None:
        self._emit("on_task_exhausted", task, error, attempts)

    def on_task_ignored(self, task: Task, reason: str) -> None:
        self._emit("on_task_ignored", task, reason)

    def on_task_cancelled(self, task: Task) -> None:
        self._emit("on_task_cancelled", task)

    def on_task_expired(self, task: Task) -> None:
        self._emit("on_task_expired", task)

    def on_flow_started(self, flow_id: str, total: int) -> None:
        self._emit("on_flow_started", flow_id, total)

    def on_flow_closed(self, flow_id: str, state: str, succeeded: int, failed: int) -> None:
        self._emit("on_flow_closed", flow_id, state, succeeded, failed)

    def on_batch_started(self, queue_id: str, size: int) -> None:
        self._emit("on_batch_started", queue_id, size)

    def on_batch_completed(
        self, queue_id: str, size: int, succeeded: int, failed: int, duration_s: float
    ) -> None:
        self._emit("on_batch_completed", queue_id, size, succeeded, failed, duration_s)
