"""The worker and consumer events of one worker loop (``Engine.run_worker``, ``EcsWorker.run``):
started, a heartbeat every ``heartbeat_seconds`` with the worker's totals, its memory and CPU
use, and stopped, with the consumers it ran."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import os
import resource
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from tq_aws.core.lifecycle import CONSUMER, LifecycleBus

if TYPE_CHECKING:
    from tq_aws.core.lifecycle.events import ConsumerInfo, StopReason

logger = logging.getLogger(__name__)

DEFAULT_HEARTBEAT_SECONDS = 5.0


def memory_usage_mb() -> float:
    """The process's resident memory in MiB (its peak where the current value is unknown)."""
    try:
        with open("/proc/self/statm") as statm:
            pages = int(statm.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


class CpuMeter:
    """CPU use of the process between two readings, in percent of one core."""

    def __init__(self) -> None:
        self._cpu = time.process_time()
        self._wall = time.monotonic()

    def read(self) -> float | None:
        cpu, wall = time.process_time(), time.monotonic()
        spent, elapsed = cpu - self._cpu, wall - self._wall
        self._cpu, self._wall = cpu, wall
        return round(spent / elapsed * 100.0, 1) if elapsed > 0 else None


def consumer_context(consumer_id: str) -> contextvars.Context:
    """A copy of the current context in which ``CONSUMER`` names ``consumer_id``: run a
    consumer's loop in it (``asyncio.create_task(..., context=...)``) and the events of the
    batches it delivers say so."""
    context = contextvars.copy_context()
    context.run(CONSUMER.set, consumer_id)
    return context


class WorkerLifecycle:
    """Sends one worker loop's events.

    Args:
        events: the app's bus.
        queues: the queues the worker has executors for (``enabled_queues``).
        consumers: ``(consumer_id, queue_id)`` of each consumer the loop runs.
        heartbeat_seconds: seconds between heartbeats (``None``: none).
    """

    def __init__(
        self,
        events: LifecycleBus,
        *,
        queues: Sequence[str],
        consumers: Sequence[tuple[str, str]],
        heartbeat_seconds: float | None = DEFAULT_HEARTBEAT_SECONDS,
    ):
        self.events = events
        self.queues = list(queues)
        self.consumers = list(consumers)
        self.heartbeat_seconds = heartbeat_seconds
        self._infos: list[ConsumerInfo] = []
        self._beat: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Worker started, then each consumer started; heartbeats begin."""
        await self.events.worker_started(self.queues)
        for consumer_id, queue_id in self.consumers:
            self._infos.append(await self.events.consumer_started(consumer_id, queue_id))
        if self.heartbeat_seconds is not None and self.heartbeat_seconds > 0:
            self._beat = asyncio.create_task(self._heartbeats(self.heartbeat_seconds))

    async def stop(self, reason: StopReason = "shutdown") -> None:
        """Heartbeats end; each consumer stopped, then the worker stopped; waits for the
        default-mode providers' awaitables."""
        beat, self._beat = self._beat, None
        if beat is not None:
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beat
        for info in self._infos:
            await self.events.consumer_stopped(info, reason)
        self._infos = []
        await self.events.worker_stopped(reason)
        await self.events.drain()

    async def _heartbeats(self, every: float) -> None:
        cpu = CpuMeter()
        while True:
            await asyncio.sleep(every)
            if not self.events.wants("worker_heartbeat"):
                continue
            try:
                await self.events.worker_heartbeat(memory_usage_mb(), cpu.read())
            except Exception:  # a heartbeat is never worth stopping a worker for
                logger.warning("worker heartbeat failed", exc_info=True)


def stop_reason(error: BaseException | None) -> StopReason:
    """``shutdown`` for a stop request or a cancellation, ``error`` for anything else."""
    if error is None or isinstance(error, asyncio.CancelledError | KeyboardInterrupt):
        return "shutdown"
    return "error"
