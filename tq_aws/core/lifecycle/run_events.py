"""The payloads of the other events: delivered batches, poison records, workers, consumers and
flows."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar

from tq_aws.core.flows import FailurePolicy, Join
from tq_aws.core.lifecycle.base import LifecycleEvent, StopReason
from tq_aws.core.task import Entity

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
