"""``tq-aws worker --local``: the app's own backends polled in this process, one batch at a
time, stopping between batches when asked.

``TaskQueue.run_worker`` checks its stop event only once everything due has run; here the
event is checked after every batch, so SIGTERM never waits for a backlog to drain.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from tq_aws.app import TaskQueue
from tq_aws.ports import DueScheduler, PollingSource
from tq_aws.runtimes.ecs.timing import backoff, pause

logger = logging.getLogger(__name__)


async def _idle(app: TaskQueue, stop: asyncio.Event, idle_sleep: float) -> None:
    """Wait for a handed-off task to finish (it may add work), ``idle_sleep``, or ``stop``."""
    if not app.async_tasks.active:
        await pause(stop, idle_sleep)
        return
    stopped = asyncio.create_task(stop.wait())
    finished = asyncio.create_task(app.async_tasks.wait_any())
    try:
        await asyncio.wait([stopped, finished], return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
        finished.cancel()


async def run_local(
    app: TaskQueue,
    source: PollingSource,
    stop: asyncio.Event,
    *,
    grace_seconds: float = 30.0,
    idle_sleep: float = 0.05,
) -> int:
    """Fire due schedules and run delivered batches until ``stop`` is set, checking it after
    each batch; then give handed-off tasks ``grace_seconds``. Returns the batches run.

    A batch whose outcomes cannot be recorded is given back (``nack``) for redelivery and
    the worker backs off, doubling up to 30 s, with one log line per failure."""
    scheduler = app.scheduler if isinstance(app.scheduler, DueScheduler) else None
    batches = failures = 0
    while not stop.is_set():
        try:
            fired = await scheduler.fire_due(app.clock.now()) if scheduler is not None else 0
            deliveries = await source.receive(app.batch_size)
        except Exception as exc:
            failures += 1
            delay = backoff(failures)
            logger.warning(
                "receiving a batch failed (%s); again in %.1f s", exc, delay, exc_info=True
            )
            await pause(stop, delay)
            continue
        if not deliveries:
            if not fired:
                await _idle(app, stop, idle_sleep)
            continue
        try:
            await app.processor.process(deliveries)
        except Exception as exc:
            failures += 1
            delay = backoff(failures)
            with contextlib.suppress(Exception):
                await source.nack(deliveries)
            logger.warning(
                "batch of %d record(s) not recorded (%s); handed back, again in %.1f s",
                len(deliveries),
                exc,
                delay,
                exc_info=True,
            )
            await pause(stop, delay)
            continue
        except BaseException:
            await source.nack(deliveries)
            raise
        failures = 0
        await source.ack(deliveries)
        batches += 1
        logger.info("batch %d: %d record(s) run", batches, len(deliveries))
    result = await app.async_tasks.shutdown(grace_seconds)
    if result.abandoned_task_ids:
        logger.warning(
            "%d handed-off task(s) still running after %.1f s: %s",
            len(result.abandoned_task_ids),
            grace_seconds,
            result.abandoned_task_ids,
        )
    return batches


__all__ = ["run_local"]
