"""Built-in lifecycle providers on Powertools for AWS Lambda: structured log lines and EMF
metrics for every lifecycle event, in Lambda, on ECS or locally.

>>> app.add_listener(PowertoolsLoggerProvider(Logger(service="orders")))
>>> app.add_listener(PowertoolsMetricsProvider(Metrics(namespace="Orders", service="orders")))

``PowertoolsLoggerProvider`` writes one JSON line per event: ``message`` says what happened,
and the event's fields (``LifecycleEvent.fields()``: ``event``, ``task_id``, ``task_type``,
``queue_id``, ``attempt``, ``error``, ``next_attempt_at``, ``timing``...) are keys of the line.
Levels follow ``LOG_LEVELS`` (failures WARNING, tasks failed for good, ignored tasks and poison
ERROR, the busiest events DEBUG). The default failure lines (logger ``tq_aws.failures``) are
written anyway; silence that logger when this provider logs to the same place.

``PowertoolsMetricsProvider`` adds the metrics of ``METRICS`` to a Powertools ``Metrics``
(CloudWatch embedded metric format) and, by default, flushes them after each delivered batch,
heartbeat and worker stop, so long-running ECS workers publish as they go; with
``flush="never"`` the caller flushes (a Lambda handler decorated with
``@metrics.log_metrics``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any, Literal

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from tq_aws.core.lifecycle import events as ev
from tq_aws.runtimes.aws_lambda.observability import TaskLogContextFilter

logger = logging.getLogger(__name__)

DEBUG, INFO, WARNING, ERROR = logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR

LOG_LEVELS: dict[str, int] = {
    "task_scheduled": DEBUG,
    "task_started": DEBUG,
    "task_batch_started": DEBUG,
    "batch_started": DEBUG,
    "worker_heartbeat": DEBUG,
    "task_failed": WARNING,
    "flow_aborted": WARNING,
    "flow_timed_out": WARNING,
    "task_exhausted": ERROR,
    "task_ignored": ERROR,
    "record_poisoned": ERROR,
}
"""The level of each event's line; events not named here are INFO."""


def _summary(event: ev.LifecycleEvent) -> str:
    """The ``message`` of an event's line."""
    if isinstance(event, ev.TaskContext):
        text = f"{event.name} {event.task_id} ({event.queue_id}/{event.task_type})"
        if isinstance(event, ev.TaskFailed | ev.TaskExhausted):
            text += f": {event.error}"
        return text
    if isinstance(event, ev.FlowContext):
        return f"{event.name} {event.flow_id}"
    if isinstance(event, ev.ConsumerInfo):
        return f"{event.name} {event.consumer_id}"
    if isinstance(event, ev.RecordPoisoned):
        return f"{event.name} at {event.position} ({event.reason})"
    worker = getattr(event, "worker_id", "")
    return f"{event.name} {worker}".rstrip()


class PowertoolsLoggerProvider:
    """Logs every lifecycle event as one structured line through a Powertools ``Logger``.

    Args:
        logger: the Powertools ``Logger`` (default: one for ``service``).
        service: the service name of the default logger.
        levels: levels by event name, over ``LOG_LEVELS``.
        events: only these events (names); default: all.
    """

    name = "powertools-logger"

    def __init__(
        self,
        logger: Logger | None = None,
        *,
        service: str | None = None,
        levels: Mapping[str, int] | None = None,
        events: set[str] | None = None,
    ):
        self.logger = logger if logger is not None else Logger(service=service)
        for handler in self.logger.handlers:  # the task's log context as an object, once
            if not any(isinstance(f, TaskLogContextFilter) for f in handler.filters):
                handler.addFilter(TaskLogContextFilter())
        self.levels = {**LOG_LEVELS, **(levels or {})}
        self.events = set(events) if events is not None else None
        # the standard logger the Powertools one writes through (its handlers and level)
        self._log = logging.getLogger(self.logger.name)

    def on_event(self, event: ev.LifecycleEvent) -> None:
        if self.events is not None and event.name not in self.events:
            return
        level = self.levels.get(event.name, INFO)
        if self._log.isEnabledFor(level):
            self._log.log(level, _summary(event), extra=event.fields())


Unit = MetricUnit
_Metric = tuple[str, MetricUnit, Callable[[Any], float | None]]


def _one(event: Any) -> float:
    return 1.0


METRICS: dict[str, tuple[_Metric, ...]] = {
    "task_scheduled": (("TasksScheduled", Unit.Count, _one),),
    "task_started": (("TasksStarted", Unit.Count, _one),),
    "task_completed": (
        ("TasksCompleted", Unit.Count, _one),
        ("TaskProcessingTime", Unit.Milliseconds, lambda e: e.timing.processing_duration_ms),
        ("TaskQueuedTime", Unit.Milliseconds, lambda e: e.timing.queued_duration_ms),
    ),
    "task_failed": (
        ("TaskAttemptsFailed", Unit.Count, _one),
        ("TasksRetried", Unit.Count, lambda e: 1.0 if e.will_retry else None),
    ),
    "task_exhausted": (("TasksExhausted", Unit.Count, _one),),
    "task_ignored": (("TasksIgnored", Unit.Count, _one),),
    "task_expired": (("TasksExpired", Unit.Count, _one),),
    "task_cancelled": (("TasksCancelled", Unit.Count, _one),),
    "batch_completed": (
        ("Batches", Unit.Count, _one),
        ("BatchSize", Unit.Count, lambda e: float(e.batch_size)),
        ("BatchDuration", Unit.Milliseconds, lambda e: e.duration_ms),
    ),
    "record_poisoned": (("PoisonRecords", Unit.Count, _one),),
    "flow_started": (("FlowsStarted", Unit.Count, _one),),
    "flow_completed": (
        ("FlowsCompleted", Unit.Count, _one),
        ("FlowDuration", Unit.Milliseconds, lambda e: e.duration_ms),
    ),
    "flow_aborted": (("FlowsAborted", Unit.Count, _one),),
    "flow_timed_out": (("FlowsTimedOut", Unit.Count, _one),),
    "worker_heartbeat": (
        ("WorkerMemory", Unit.Megabytes, lambda e: e.memory_usage_mb),
        ("WorkerCpu", Unit.Percent, lambda e: e.cpu_percent),
    ),
}
"""The metrics each event adds: ``(name, unit, value of the event)``; ``None`` adds nothing."""

FLUSH_ON = frozenset({"batch_completed", "worker_heartbeat", "worker_stopped"})


class PowertoolsMetricsProvider:
    """Adds ``METRICS`` for each event to a Powertools ``Metrics`` (EMF).

    Args:
        metrics: the Powertools ``Metrics`` (default: one for ``namespace`` and ``service``).
        namespace: the CloudWatch namespace of the default one (default ``tq``).
        service: its ``service`` dimension.
        flush: ``"batch"`` flushes after each delivered batch, heartbeat and worker stop;
            ``"never"`` leaves flushing to the caller.
    """

    name = "powertools-metrics"

    def __init__(
        self,
        metrics: Metrics | None = None,
        *,
        namespace: str | None = None,
        service: str | None = None,
        flush: Literal["batch", "never"] = "batch",
    ):
        if metrics is None:
            metrics = Metrics(namespace=namespace or "tq", service=service)
        self.metrics = metrics
        self.flush = flush
        self._unflushed = 0

    def on_event(self, event: ev.LifecycleEvent) -> None:
        for name, unit, value_of in METRICS.get(event.name, ()):
            value = value_of(event)
            if value is not None:
                self.metrics.add_metric(name=name, unit=unit, value=value)
                self._unflushed += 1
        if self.flush == "batch" and event.name in FLUSH_ON:
            self.flush_metrics()

    def flush_metrics(self) -> None:
        """Write what was added as one EMF line (nothing when nothing was added)."""
        if self._unflushed:
            self._unflushed = 0
            self.metrics.flush_metrics()


__all__ = [
    "LOG_LEVELS",
    "METRICS",
    "PowertoolsLoggerProvider",
    "PowertoolsMetricsProvider",
]
