"""``LifecycleListener``: an optional base class for providers, naming every hook.

A provider needs no base class: any object with some ``on_<event>`` methods will do
(``tq_aws.core.lifecycle.events`` lists the events). Subclassing ``LifecycleListener`` gives the
names and signatures to override; the hooks it does not override are never called.

The first hooks below keep the arguments they had before events were typed
(``on_task_failed(task, error, will_retry, next_attempt_at)``); a provider may write any of
them in the one-argument form instead and gets the event (``on_task_failed(event)``): see
``tq_aws.core.lifecycle.routing`` for how the form is told apart.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any

from tq_aws.core.lifecycle.base import LifecycleEvent
from tq_aws.core.task import Task

if TYPE_CHECKING:
    from tq_aws.core.lifecycle.events import (
        ConsumerStarted,
        ConsumerStopped,
        FlowAborted,
        FlowCompleted,
        FlowTimedOut,
        RecordPoisoned,
        TaskBatchCompleted,
        TaskBatchStarted,
        WorkerHeartbeat,
        WorkerStarted,
        WorkerStopped,
    )

logger = logging.getLogger(__name__)


class LifecycleListener:
    """No-op base: every hook does nothing until overridden (and is then never called)."""

    # -- hooks with their arguments of before typed events (or the event: see above) --------

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

    # -- hooks that receive their event ---------------------------------------------------------

    def on_task_batch_started(self, event: TaskBatchStarted) -> None:
        """A batch executor is about to get its tasks in one call."""

    def on_task_batch_completed(self, event: TaskBatchCompleted) -> None:
        """A batch executor returned."""

    def on_record_poisoned(self, event: RecordPoisoned) -> None:
        """A delivered record was kept in the poison store."""

    def on_worker_started(self, event: WorkerStarted) -> None:
        """A worker loop started."""

    def on_worker_heartbeat(self, event: WorkerHeartbeat) -> None:
        """A running worker's periodic report."""

    def on_worker_stopped(self, event: WorkerStopped) -> None:
        """A worker loop ended."""

    def on_consumer_started(self, event: ConsumerStarted) -> None:
        """A consumer of a worker started reading."""

    def on_consumer_stopped(self, event: ConsumerStopped) -> None:
        """A consumer of a worker stopped."""

    def on_flow_completed(self, event: FlowCompleted) -> None:
        """A flow joined (also given to ``on_flow_closed``)."""

    def on_flow_aborted(self, event: FlowAborted) -> None:
        """A flow aborted (also given to ``on_flow_closed``)."""

    def on_flow_timed_out(self, event: FlowTimedOut) -> None:
        """A flow timed out (also given to ``on_flow_closed``)."""

    def on_event(self, event: LifecycleEvent) -> None:
        """Every event, after its own hook."""
