"""The failures every app logs by default, on the logger ``tq_aws.failures``:

- one WARNING line per failed attempt: task id, type, queue, attempt, error, and when the next
  attempt is due (or that none is left);
- one ERROR line when a task failed for good (its retries ran out, or it failed permanently);
- one ERROR line when a task is ignored (no executor for its queue and type);
- one ERROR line when a record is kept in the poison store.

Each line also carries its values as fields of the record (``extra=``): ``tq_event``,
``task_id``, ``task_type``, ``queue_id``, ``attempt``, ``max_retries``, ``error``,
``next_attempt_at``..., so a JSON formatter (Powertools Logger) writes them as keys. Silence or
route them with standard logging configuration, e.g.
``logging.getLogger("tq_aws.failures").setLevel(logging.CRITICAL)``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tq_aws.core.lifecycle.events import (
        RecordPoisoned,
        TaskContext,
        TaskExhausted,
        TaskFailed,
        TaskIgnored,
    )


FAILURE_LOGGER = "tq_aws.failures"


def _task_fields(event: TaskContext) -> dict[str, Any]:
    return {
        "task_id": event.task_id,
        "task_type": event.task_type,
        "queue_id": event.queue_id,
        "attempt": event.attempt,
        "max_retries": event.max_retries,
    }


def _label(event: TaskContext) -> str:
    return f"task {event.task_id} ({event.queue_id}/{event.task_type})"


class FailureLog:
    """The built-in provider of the default failure lines (see the module docstring)."""

    name = "tq_aws.failures"

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.logger = logger or logging.getLogger(FAILURE_LOGGER)

    def on_task_failed(self, event: TaskFailed) -> None:
        log = self.logger
        if not log.isEnabledFor(logging.WARNING):
            return
        due = event.next_attempt_at
        extra = {
            "tq_event": event.name,
            **_task_fields(event),
            "error": event.error,
            "will_retry": event.will_retry,
            "next_attempt_at": due.isoformat() if due is not None else None,
            "permanent": event.permanent,
        }
        if due is not None:
            then = f"next attempt at {due.isoformat()}"
        elif event.permanent:
            then = "failed permanently, no retry"
        else:
            then = "no retries left"
        log.warning(
            "%s attempt %d of %d failed: %s; %s",
            _label(event),
            event.attempt,
            event.max_retries + 1,
            event.error,
            then,
            extra=extra,
        )

    def on_task_exhausted(self, event: TaskExhausted) -> None:
        log = self.logger
        if not log.isEnabledFor(logging.ERROR):
            return
        how = "failed permanently" if event.permanent else "failed for good"
        log.error(
            "%s %s after %d attempt(s): %s",
            _label(event),
            how,
            event.total_attempts,
            event.error,
            extra={
                "tq_event": event.name,
                **_task_fields(event),
                "error": event.error,
                "total_attempts": event.total_attempts,
                "permanent": event.permanent,
            },
        )

    def on_task_ignored(self, event: TaskIgnored) -> None:
        log = self.logger
        if not log.isEnabledFor(logging.ERROR):
            return
        log.error(
            "%s ignored: %s (register an executor for %s/%s)",
            _label(event),
            event.reason,
            event.queue_id,
            event.task_type,
            extra={"tq_event": event.name, **_task_fields(event), "reason": event.reason},
        )

    def on_record_poisoned(self, event: RecordPoisoned) -> None:
        log = self.logger
        if not log.isEnabledFor(logging.ERROR):
            return
        log.error(
            "record at %s of %s parked in the poison store (%s): %s",
            event.position,
            event.queue_id,
            event.reason,
            event.error,
            extra={
                "tq_event": event.name,
                "queue_id": event.queue_id,
                "position": event.position,
                "reason": event.reason,
                "error": event.error,
                "size": event.size,
            },
        )
