"""The lifecycle events: one frozen dataclass per event, with the payload a provider receives.

A provider's method ``on_<name>`` receives the event whose ``name`` is ``<name>``
(``on_task_failed(event: TaskFailed)``); ``on_event`` receives every event. Times are aware UTC
datetimes from the app's clock, durations are milliseconds. ``fields()`` gives an event as
plain JSON data for a log line, without the task record, its payload or its result (the
attributes ``task``, ``payload`` and ``result`` hold those).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any, ClassVar, Literal

from pydantic import BaseModel

from tq_aws.core.flows import FailurePolicy, Join
from tq_aws.core.task import Entity, Task

_PRIVATE = {"private": True}
"""Field metadata of what ``fields()`` leaves out (the record, user payloads and results)."""

StopReason = Literal["shutdown", "error", "idle_timeout"]


@dataclass(frozen=True, slots=True, kw_only=True)
class LifecycleEvent:
    """Base of every event: ``name`` is the event's name, and the provider method that
    receives it is ``on_<name>``."""

    name: ClassVar[str] = ""

    def fields(self) -> dict[str, Any]:
        """The event as plain JSON data (``event`` is its name), without the task record, its
        payload or its result."""
        out: dict[str, Any] = {"event": self.name} if self.name else {}
        for f in dataclasses.fields(self):
            if not f.metadata.get("private"):
                out[f.name] = _plain(getattr(self, f.name))
        return out


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, LifecycleEvent):
        return value.fields()
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(v) for v in value]
    return str(value)


# -- tasks ---------------------------------------------------------------------------------------


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
    payload: Any = field(default=None, metadata=_PRIVATE)
    task: Task = field(metadata=_PRIVATE, repr=False)
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
    result: Any = field(default=None, metadata=_PRIVATE)
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
    stack: str | None = field(default=None, metadata=_PRIVATE)
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
    stack: str | None = field(default=None, metadata=_PRIVATE)


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
    tasks: tuple[TaskContext, ...] = field(default=(), metadata=_PRIVATE)


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
    tasks: tuple[TaskContext, ...] = field(default=(), metadata=_PRIVATE)


# -- workers, consumers and delivered batches ----------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerInfo(LifecycleEvent):
    """The process that runs batches: ``started_at`` is when its worker loop started (or the
    app was made, outside a worker); ``enabled_queues`` the queues it has executors for."""

    worker_id: str
    hostname: str
    pid: int
    started_at: datetime
    enabled_queues: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerTotals:
    """What a worker ran since it started (the reference's ``WorkerStats``); the average is
    the batches' run time per task."""

    tasks_processed: int = 0
    tasks_succeeded: int = 0
    tasks_failed: int = 0
    avg_processing_ms: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ConsumerTotals:
    """What one consumer delivered and how it ended (the reference's ``ConsumerStats``)."""

    consumer_id: str
    queue_id: str
    tasks_processed: int = 0
    tasks_succeeded: int = 0
    tasks_failed: int = 0
    last_task_at: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerStarted(WorkerInfo):
    """A worker loop started (``TaskQueue.run_worker``, ``EcsWorker.run``)."""

    name: ClassVar[str] = "worker_started"


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerHeartbeat(WorkerInfo):
    """Sent every heartbeat interval while a worker runs: its totals, its resident memory,
    its CPU use since the last heartbeat, and every consumer it runs."""

    name: ClassVar[str] = "worker_heartbeat"
    stats: WorkerTotals
    memory_usage_mb: float
    cpu_percent: float | None = None
    active_consumers: tuple[ConsumerTotals, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerStopped(WorkerInfo):
    """A worker loop ended: ``shutdown`` when asked to stop, ``error`` when a loop of it
    failed."""

    name: ClassVar[str] = "worker_stopped"
    reason: StopReason
    final_stats: WorkerTotals


@dataclass(frozen=True, slots=True, kw_only=True)
class ConsumerInfo(LifecycleEvent):
    """One consumer of a worker: ``queue_id`` is what it reads (the stream name, the SQS
    queue name, or ``local`` for the app's polling source)."""

    consumer_id: str
    queue_id: str
    worker_id: str
    started_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class ConsumerStarted(ConsumerInfo):
    """A consumer started reading."""

    name: ClassVar[str] = "consumer_started"


@dataclass(frozen=True, slots=True, kw_only=True)
class ConsumerStopped(ConsumerInfo):
    """A consumer stopped, with what it delivered."""

    name: ClassVar[str] = "consumer_stopped"
    reason: StopReason
    stats: ConsumerTotals


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchStarted(WorkerInfo):
    """A delivered batch is about to run: ``queue_id`` of its first task, its size and the
    task types in it."""

    name: ClassVar[str] = "batch_started"
    queue_id: str
    consumer_id: str | None
    batch_size: int
    task_types: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchCompleted(WorkerInfo):
    """A delivered batch was run and its outcomes recorded: ``succeeded`` and ``failed``
    count attempts (retried ones are failed)."""

    name: ClassVar[str] = "batch_completed"
    queue_id: str
    consumer_id: str | None
    batch_size: int
    succeeded: int
    failed: int
    duration_ms: float


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordPoisoned(LifecycleEvent):
    """A delivered record that is not a task (or could never be recorded) was kept in the
    poison store; ``queue_id`` and ``position`` say where it came from."""

    name: ClassVar[str] = "record_poisoned"
    queue_id: str
    position: str
    reason: str
    error: str
    size: int
    seen_at: datetime
    worker_id: str
    consumer_id: str | None = None


# -- flows ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class FlowContext(LifecycleEvent):
    """What every flow event says about its flow."""

    flow_id: str
    total_steps: int
    join: Join
    failure_policy: FailurePolicy
    entity: Entity | None
    worker_id: str
    consumer_id: str | None = None
    parent_task_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class FlowStarted(FlowContext):
    """A flow's barrier was created and its steps dispatched; ``step_types`` are the steps'
    types, each once, in order of first appearance."""

    name: ClassVar[str] = "flow_started"
    started_at: datetime
    step_types: tuple[str, ...]
    deadline: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class FlowClosed(FlowContext):
    """Base of the three ways a flow closes (``on_flow_closed`` receives each of them); its
    join was dispatched."""

    state: str
    started_at: datetime
    finished_at: datetime
    duration_ms: float
    steps_succeeded: int
    steps_failed: int
    steps_completed: int
    join_task_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class FlowCompleted(FlowClosed):
    """Every step finished and the flow joined."""

    name: ClassVar[str] = "flow_completed"


@dataclass(frozen=True, slots=True, kw_only=True)
class FlowAborted(FlowClosed):
    """More steps failed than the flow tolerates; ``trigger_step_index`` is the failed step
    with the lowest index among the results it closed with."""

    name: ClassVar[str] = "flow_aborted"
    trigger_step_index: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class FlowTimedOut(FlowClosed):
    """The flow's deadline passed before its steps finished."""

    name: ClassVar[str] = "flow_timed_out"


EVENT_TYPES: tuple[type[LifecycleEvent], ...] = (
    TaskScheduled,
    TaskStarted,
    TaskCompleted,
    TaskFailed,
    TaskExhausted,
    TaskIgnored,
    TaskExpired,
    TaskCancelled,
    TaskBatchStarted,
    TaskBatchCompleted,
    BatchStarted,
    BatchCompleted,
    RecordPoisoned,
    WorkerStarted,
    WorkerHeartbeat,
    WorkerStopped,
    ConsumerStarted,
    ConsumerStopped,
    FlowStarted,
    FlowCompleted,
    FlowAborted,
    FlowTimedOut,
)
"""Every event, in the order of a task's life, then workers, then flows."""

EVENT_NAMES: tuple[str, ...] = tuple(e.name for e in EVENT_TYPES)
