"""Retry policy: whether a failed attempt is retried, and when.

``delay = retry_after * (n + 1) ** 2`` seconds, capped at 300, where ``n`` is the number of
retries already made. A task may be retried while ``n < max_retries``, so ``max_retries = N``
gives at most ``N + 1`` attempts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from tq_aws.core.task import Task, TaskStatus

MAX_DELAY_SECONDS = 300.0
DEFAULT_RETRY_AFTER = 2.0


def backoff_seconds(retry_after: float, retries_made: int) -> float:
    """The delay before retry number ``retries_made + 1``."""
    return min(max(retry_after, 0.0) * (retries_made + 1) ** 2, MAX_DELAY_SECONDS)


def max_retries_for(task: Task, executor_retries: int) -> int:
    """The task's own ``retries`` if set, else the executor's."""
    return task.retries if task.retries is not None else executor_retries


@dataclass(frozen=True, slots=True)
class RetryPlan:
    """A failed attempt that will be retried: ``task`` is the next attempt, due at ``at``."""

    task: Task
    at: datetime
    delay: float


def plan_retry(
    task: Task, *, executor_retries: int, executor_retry_after: float, now: datetime
) -> RetryPlan | None:
    """Return the next attempt of a failed ``task``, or ``None`` when its retries are exhausted.

    The next attempt keeps every field of the task (``retries`` included) and its
    ``execution_stats`` (last error and stack), with ``retry_count`` incremented.
    """
    made = task.retry_count
    if made >= max_retries_for(task, executor_retries):
        return None
    base = task.retry_after if task.retry_after is not None else executor_retry_after
    delay = backoff_seconds(base, made)
    at = now + timedelta(seconds=delay)
    stats = {**task.execution_stats, "retry_count": made + 1}
    nxt = task.copy_with(
        **{
            "status": TaskStatus.SCHEDULED,
            "execute_at": at,
            "updated_at": now,
            "execution_stats": stats,
            "execution_result": None,
            "processing_started_at": None,
        }
    )
    return RetryPlan(task=nxt, at=at, delay=delay)
