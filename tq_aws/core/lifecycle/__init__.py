"""Lifecycle events: what happens to tasks, batches, flows, workers and consumers, told to
providers as it happens.

A provider is any object with some of the methods ``on_<event>`` (``on_task_failed``,
``on_worker_heartbeat``...; ``on_event`` gets every event), plain or ``async def``; give it to
``TaskQueue.add_listener``. Each method receives the event's frozen payload
(``tq_aws.core.lifecycle.events``). ``LifecycleListener`` is an optional base class naming them.

- Default mode: methods are called where the event happens and an ``async def`` method runs in
  the background, never awaited; ``add_listener(provider, mode="sync")`` awaits it before the
  engine goes on.
- A provider that raises never disturbs processing: its first failure per method is logged
  (logger ``tq_aws.core.lifecycle.dispatch``) with its name, and every failure is counted in
  ``app.events.failures``.
- Every app logs failed attempts, tasks failed for good, ignored tasks and poison records on the
  logger ``tq_aws.failures`` (``FailureLog``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from tq_aws.core.lifecycle.base import LifecycleEvent
from tq_aws.core.lifecycle.bus import LifecycleBus
from tq_aws.core.lifecycle.dispatch import LifecycleMode
from tq_aws.core.lifecycle.failure_log import FAILURE_LOGGER, FailureLog
from tq_aws.core.lifecycle.listener import LifecycleListener
from tq_aws.core.lifecycle.names import EVENT_NAMES, EVENTS_MODULE
from tq_aws.core.lifecycle.run_emitters import CONSUMER

if TYPE_CHECKING:
    from tq_aws.core.lifecycle.events import (
        EVENT_TYPES,
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
        WorkerHeartbeat,
        WorkerInfo,
        WorkerStarted,
        WorkerStopped,
        WorkerTotals,
    )

__all__ = [
    "CONSUMER",
    "EVENT_NAMES",
    "EVENT_TYPES",
    "FAILURE_LOGGER",
    "BatchCompleted",
    "BatchStarted",
    "ConsumerInfo",
    "ConsumerStarted",
    "ConsumerStopped",
    "ConsumerTotals",
    "FailureLog",
    "FlowAborted",
    "FlowClosed",
    "FlowCompleted",
    "FlowContext",
    "FlowStarted",
    "FlowTimedOut",
    "LifecycleBus",
    "LifecycleEvent",
    "LifecycleListener",
    "LifecycleMode",
    "RecordPoisoned",
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

_EVENTS = frozenset(name for name in __all__ if name not in globals())
"""The names of ``__all__`` that ``events`` holds, loaded on first use."""


def __getattr__(name: str) -> Any:
    """The event classes (and ``EVENT_TYPES``) load on first use: see ``names``."""
    if name in _EVENTS:
        value = getattr(importlib.import_module(EVENTS_MODULE), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
