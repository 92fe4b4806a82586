"""The bus's emitters of the events around tasks: delivered batches, poison records, flows,
workers and consumers (``LifecycleBus`` is made of these and of the task emitters)."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterable, Sequence
from contextvars import ContextVar
from datetime import datetime
from typing import TYPE_CHECKING, Any

from tq_aws.core.flow_steps import step_types
from tq_aws.core.flows import FlowRecord, FlowState, StepResult
from tq_aws.core.lifecycle.dispatch import EventDispatch
from tq_aws.core.lifecycle.tally import Totals
from tq_aws.core.poison import PoisonRecord
from tq_aws.core.task import Task

if TYPE_CHECKING:
    from tq_aws.core.lifecycle import events as ev
else:  # the event classes load with the first event built (``names``)
    from tq_aws.core.lifecycle.names import lazy_events as ev

CONSUMER: ContextVar[str | None] = ContextVar("tq_aws_consumer", default=None)
"""The consumer delivering the batch being processed (``None`` outside a worker)."""

_CLOSED: dict[FlowState, tuple[str, str]] = {
    FlowState.JOINED: ("flow_completed", "FlowCompleted"),
    FlowState.ABORTED: ("flow_aborted", "FlowAborted"),
    FlowState.TIMED_OUT: ("flow_timed_out", "FlowTimedOut"),
}
"""A closed flow's state -> its event's name and class (named: no event class is loaded
before an event is built)."""


class RunEmitters(EventDispatch):
    """Builds and delivers the events of batches, poison, flows, workers and consumers."""

    worker_id: str
    totals: Totals
    counts_totals: bool
    _now: Callable[[], datetime]
    _worker: dict[str, Any]
    _worker_info: ev.WorkerInfo | None

    @property
    def worker(self) -> ev.WorkerInfo:
        """The worker these events come from (built when first asked for)."""
        if self._worker_info is None:
            self._worker_info = ev.WorkerInfo(**self._worker)
        return self._worker_info

    def _set_worker(self, queues: Sequence[str]) -> None:
        """Note the worker's fields now (its start time is now); ``worker`` builds them."""
        self._worker = {
            "worker_id": self.worker_id,
            "hostname": socket.gethostname(),
            "pid": os.getpid(),
            "started_at": self._now(),
            "enabled_queues": tuple(queues),
        }
        self._worker_info = None

    # -- delivered batches and poison -----------------------------------------------------------

    async def batch_started(self, queue_id: str, tasks: Sequence[Task]) -> None:
        if "batch_started" not in self._routes:
            return
        await self.send(
            ev.BatchStarted(
                **self._worker_fields(),
                queue_id=queue_id,
                consumer_id=CONSUMER.get(),
                batch_size=len(tasks),
                task_types=tuple(dict.fromkeys(t.type for t in tasks)),
            )
        )

    async def batch_completed(
        self, queue_id: str, size: int, succeeded: int, failed: int, duration_s: float
    ) -> None:
        duration_ms = duration_s * 1000.0
        if self.counts_totals:
            self.totals.count(CONSUMER.get(), queue_id, succeeded, failed, duration_ms, self._now())
        if "batch_completed" not in self._routes:
            return
        await self.send(
            ev.BatchCompleted(
                **self._worker_fields(),
                queue_id=queue_id,
                consumer_id=CONSUMER.get(),
                batch_size=size,
                succeeded=succeeded,
                failed=failed,
                duration_ms=duration_ms,
            )
        )

    async def record_poisoned(self, records: Iterable[PoisonRecord]) -> None:
        if "record_poisoned" not in self._routes:
            return
        for record in records:
            await self.send(
                ev.RecordPoisoned(
                    queue_id=record.queue_id,
                    position=record.position,
                    reason=record.reason,
                    error=record.error,
                    size=len(record.data),
                    seen_at=record.seen_at,
                    worker_id=self.worker_id,
                    consumer_id=CONSUMER.get(),
                )
            )

    # -- flows ----------------------------------------------------------------------------------

    def _flow(self, record: FlowRecord) -> dict[str, Any]:
        return {
            "flow_id": record.flow_id,
            "total_steps": record.total,
            "join": record.join,
            "failure_policy": record.failure_policy,
            "entity": record.entity,
            "worker_id": self.worker_id,
            "consumer_id": CONSUMER.get(),
            "parent_task_id": record.parent_task_id,
        }

    async def flow_started(self, record: FlowRecord, steps: Sequence[Task]) -> None:
        if "flow_started" not in self._routes:
            return
        await self.send(
            ev.FlowStarted(
                **self._flow(record),
                started_at=record.started_at,
                step_types=step_types(steps),
                deadline=record.deadline,
            )
        )

    async def flow_closed(self, record: FlowRecord, results: Sequence[StepResult]) -> None:
        """The flow closed (``record.state``) with ``results``; its join is created."""
        closed = _CLOSED.get(record.state)
        if closed is None or closed[0] not in self._routes:
            return
        kind: type[ev.FlowClosed] = getattr(ev, closed[1])
        finished = record.finished_at or self._now()
        fields: dict[str, Any] = {
            **self._flow(record),
            "state": record.state.value,
            "started_at": record.started_at,
            "finished_at": finished,
            "duration_ms": max((finished - record.started_at).total_seconds() * 1000.0, 0.0),
            "steps_succeeded": record.succeeded,
            "steps_failed": record.failed,
            "steps_completed": record.completed,
            "join_task_id": record.join_task_id,
        }
        if kind is ev.FlowAborted:
            failed = [r.step_index for r in results if r.status == "fail"]
            fields["trigger_step_index"] = min(failed) if failed else None
        await self.send(kind(**fields))

    # -- workers and consumers ------------------------------------------------------------------

    def _worker_fields(self) -> dict[str, Any]:
        return self._worker

    async def worker_started(self, queues: Sequence[str]) -> None:
        """A worker loop starts: its start time and queues go on every later event."""
        self._set_worker(queues)
        self.totals.reset()
        if "worker_started" in self._routes:
            await self.send(ev.WorkerStarted(**self._worker_fields()))

    async def worker_heartbeat(self, memory_usage_mb: float, cpu_percent: float | None) -> None:
        if "worker_heartbeat" not in self._routes:
            return
        await self.send(
            ev.WorkerHeartbeat(
                **self._worker_fields(),
                stats=self.totals.worker(),
                memory_usage_mb=memory_usage_mb,
                cpu_percent=cpu_percent,
                active_consumers=self.totals.consumers(),
            )
        )

    async def worker_stopped(self, reason: ev.StopReason) -> None:
        if "worker_stopped" in self._routes:
            await self.send(
                ev.WorkerStopped(
                    **self._worker_fields(), reason=reason, final_stats=self.totals.worker()
                )
            )

    async def consumer_started(self, consumer_id: str, queue_id: str) -> ev.ConsumerInfo:
        """A consumer starts; returns its info (``consumer_stopped`` takes it back)."""
        self.totals.consumer(consumer_id, queue_id)
        info = ev.ConsumerInfo(
            consumer_id=consumer_id,
            queue_id=queue_id,
            worker_id=self.worker_id,
            started_at=self._now(),
        )
        if "consumer_started" in self._routes:
            await self.send(ev.ConsumerStarted(**_consumer_fields(info)))
        return info

    async def consumer_stopped(self, info: ev.ConsumerInfo, reason: ev.StopReason) -> None:
        if "consumer_stopped" in self._routes:
            await self.send(
                ev.ConsumerStopped(
                    **_consumer_fields(info),
                    reason=reason,
                    stats=self.totals.of_consumer(info.consumer_id),
                )
            )


def _consumer_fields(info: ev.ConsumerInfo) -> dict[str, Any]:
    return {
        "consumer_id": info.consumer_id,
        "queue_id": info.queue_id,
        "worker_id": info.worker_id,
        "started_at": info.started_at,
    }
