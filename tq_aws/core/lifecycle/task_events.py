"""The payloads of task events: what happened to one task, or to a batch executor's call."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

from tq_aws.core.lifecycle.base import PRIVATE, LifecycleEvent
from tq_aws.core.task import Entity, Task


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskContext(LifecycleEvent):
    """What every task event says about its task (the reference's ``TaskContext``).

    ``attempt`` is 1 on the first run (``retry_count + 1``); ``max_retries`` is the task's
    ``retries`` or its executor's; ``scheduled_at`` is when the task was added;
    ``consumer_id`` names the consumer that delivered it (``None`` outside a worker);
    ``payload`` is the payload only with ``TaskQueue(include_payload=True)``."""

    task_id: str
    task_type: str
    queue_id: str
    attempt: int
    max_retries: int
    scheduled_at: datetime | None
    worker_id: str
    consumer_id: str | None = None
    partition_key: str | None = None
    entity: Entity | None = None
    flow_id: str | None = None
    """The flow this task is a step or the join of."""
    log_context: Mapping[str, str] = field(default_factory=dict)
    payload: Any = field(default=None, metadata=PRIVATE)
    task: Task = field(metadata=PRIVATE, repr=False)
    """The task as the event found it (the attempt that ran, the record that was stored)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskTiming:
    """How long a task waited and ran: ``queued`` from when it was added to when this attempt
    started, ``processing`` from that start to its outcome, ``total`` both."""

    queued_duration_ms: float
    processing_duration_ms: float
    total_duration_ms: float


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskScheduled(TaskContext):
    """The task was accepted: published, stored or scheduled (not for retries)."""

    name: ClassVar[str] = "task_scheduled"
    execute_at: datetime | None
    stored: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskStarted(TaskContext):
    """An attempt is about to run."""

    name: ClassVar[str] = "task_started"
    started_at: datetime
    queued_duration_ms: float


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskCompleted(TaskContext):
    """The attempt succeeded and its outcome is recorded."""

    name: ClassVar[str] = "task_completed"
    completed_at: datetime
    timing: TaskTiming
    result: Any = field(default=None, metadata=PRIVATE)
    """The value given to ``actions.success``, as the executor gave it."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskFailed(TaskContext):
    """The attempt failed: ``error`` is its real error (the exception's text or the
    ``actions.fail`` message); ``will_retry`` says whether another attempt is scheduled, due
    at ``next_attempt_at``; ``permanent`` that it failed for good before its retries ran out
    (``PermanentFailure``, ``fail(retry=False)``)."""

    name: ClassVar[str] = "task_failed"
    failed_at: datetime
    timing: TaskTiming
    error: str | None
    will_retry: bool
    next_attempt_at: datetime | None
    permanent: bool = False
    stack: str | None = field(default=None, metadata=PRIVATE)
    """The traceback of the exception that failed it, when there was one."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskExhausted(TaskContext):
    """The task failed for good after ``total_attempts`` attempts (every task whose retries
    ran out, or that failed permanently)."""

    name: ClassVar[str] = "task_exhausted"
    failed_at: datetime
    timing: TaskTiming
    error: str | None
    total_attempts: int
    permanent: bool = False
    stack: str | None = field(default=None, metadata=PRIVATE)


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskIgnored(TaskContext):
    """The task was not run (``reason``: ``unknown_executor``)."""

    name: ClassVar[str] = "task_ignored"
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskExpired(TaskContext):
    """The task was delivered after its ``expires_at`` and not run."""

    name: ClassVar[str] = "task_expired"
    expires_at: datetime | None


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskCancelled(TaskContext):
    """The task was cancelled before it started."""

    name: ClassVar[str] = "task_cancelled"
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskBatchStarted(LifecycleEvent):
    """A batch executor (``TaskQueue.batch_executor``) is about to get ``tasks`` in one call."""

    name: ClassVar[str] = "task_batch_started"
    task_type: str
    queue_id: str
    task_ids: tuple[str, ...]
    worker_id: str
    consumer_id: str | None
    started_at: datetime
    tasks: tuple[TaskContext, ...] = field(default=(), metadata=PRIVATE)


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskBatchCompleted(LifecycleEvent):
    """A batch executor returned: the ids it decided successful and the others (failed, or
    left undecided, which fails them)."""

    name: ClassVar[str] = "task_batch_completed"
    task_type: str
    queue_id: str
    task_ids: tuple[str, ...]
    worker_id: str
    consumer_id: str | None
    succeeded: tuple[str, ...]
    failed: tuple[str, ...]
    duration_ms: float
    tasks: tuple[TaskContext, ...] = field(default=(), metadata=PRIVATE)
