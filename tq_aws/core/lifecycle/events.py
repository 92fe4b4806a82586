"""The lifecycle events: one frozen dataclass per event, with the payload a provider receives.

A provider's method ``on_<name>`` receives the event whose ``name`` is ``<name>``
(``on_task_failed(event: TaskFailed)``); ``on_event`` receives every event. Times are aware UTC
datetimes from the app's clock, durations are milliseconds. ``fields()`` gives an event as
plain JSON data for a log line, without the task record, its payload or its result (the
attributes ``task``, ``payload`` and ``result`` hold those). Task events are defined in
``task_events``, the others in ``run_events``; this module names them all.
"""

from __future__ import annotations

from tq_aws.core.lifecycle.base import LifecycleEvent, StopReason
from tq_aws.core.lifecycle.run_events import (
    BatchCompleted,
    BatchStarted,
    ConsumerInfo,
    ConsumerStarted,
    ConsumerStopped,
    ConsumerTotals,
    FlowAborted,
    FlowClosed,
    FlowCompleted,
    FlowContext,
    FlowStarted,
    FlowTimedOut,
    RecordPoisoned,
    WorkerHeartbeat,
    WorkerInfo,
    WorkerStarted,
    WorkerStopped,
    WorkerTotals,
)
from tq_aws.core.lifecycle.task_events import (
    TaskBatchCompleted,
    TaskBatchStarted,
    TaskCancelled,
    TaskCompleted,
    TaskContext,
    TaskExhausted,
    TaskExpired,
    TaskFailed,
    TaskIgnored,
    TaskScheduled,
    TaskStarted,
    TaskTiming,
)

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

__all__ = [
    "EVENT_NAMES",
    "EVENT_TYPES",
    "BatchCompleted",
    "BatchStarted",
    "ConsumerInfo",
    "ConsumerStarted",
    "ConsumerStopped",
    "ConsumerTotals",
    "FlowAborted",
    "FlowClosed",
    "FlowCompleted",
    "FlowContext",
    "FlowStarted",
    "FlowTimedOut",
    "LifecycleEvent",
    "RecordPoisoned",
    "StopReason",
    "TaskBatchCompleted",
    "TaskBatchStarted",
    "TaskCancelled",
    "TaskCompleted",
    "TaskContext",
    "TaskExhausted",
    "TaskExpired",
    "TaskFailed",
    "TaskIgnored",
    "TaskScheduled",
    "TaskStarted",
    "TaskTiming",
    "WorkerHeartbeat",
    "WorkerInfo",
    "WorkerStarted",
    "WorkerStopped",
    "WorkerTotals",
]
