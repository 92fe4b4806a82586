"""The ECS worker: what it consumes, starting its loops, and draining when asked to stop.

``request_stop()`` (SIGTERM in the CLI): no new reads, takes or receives; running batches get
``grace_seconds`` to finish and be checkpointed or deleted; handed-off tasks get what is left of
the grace (``AsyncTaskManager.shutdown``). Prefetched SQS messages not yet started go back at
once (visibility 0). What is still running at the end of the grace is cancelled and handed
back: SQS messages to visibility 0, shards without a checkpoint. Leases are released, so other
workers take the shards at once instead of after ``lease_seconds``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from tq_aws.backends.aws.clients import AwsClients
from tq_aws.backends.aws.dynamodb.lease_store import DynamoLeaseStore
from tq_aws.backends.aws.factory import AwsResources
from tq_aws.engine.worker_events import (
    DEFAULT_HEARTBEAT_SECONDS,
    WorkerLifecycle,
    consumer_context,
)
from tq_aws.errors import ConfigurationError
from tq_aws.ports import DueScheduler, LeaseStore
from tq_aws.runtimes.ecs.options import InitialPosition, WorkerOptions
from tq_aws.runtimes.ecs.shard_leases import ShardLeases
from tq_aws.runtimes.ecs.sqs_consumer import SqsConsumer
from tq_aws.runtimes.ecs.stats import WorkerReport, WorkerStats
from tq_aws.runtimes.ecs.timing import pause

if TYPE_CHECKING:
    from tq_aws.engine.engine import Engine

logger = logging.getLogger(__name__)


class EcsWorker:
    """A worker for the Kinesis stream and SQS queues of an AWS TaskQueue (see
    ``tq_aws.runtimes.ecs``).

    Args:
        app: the TaskQueue (``TaskQueue.aws(...)`` or ``TaskQueue.from_env()``): its executors,
            engine and ``resources`` (stream, queues, table, clients).
        worker_id: this worker's lease owner name; unique per process (default:
            ``app.worker_id``, ``<host>-<pid>-<ms>``).
        lease_seconds, renew_every, poll_interval, sqs_wait_seconds, sqs_visibility_timeout,
            heartbeat_every, grace_seconds, shard_refresh_seconds, initial_position: the
            options (``WorkerOptions``, which says what each means), kept in ``options``.
        stream, queue_urls, clients: override what ``app.resources`` gives.
        lease_store: override the lease store (default: ``DynamoLeaseStore`` on the app's
            table).
        lifecycle_heartbeat: seconds between ``worker_heartbeat`` lifecycle events (``None``:
            none). The worker also sends ``worker_started``/``worker_stopped`` and, for the
            stream (consumer ``kinesis:<stream>``) and each queue (``sqs:<queue name>``),
            ``consumer_started``/``consumer_stopped``.

    Example:
        >>> app = TaskQueue.from_env()
        >>> worker = EcsWorker(app, lease_seconds=10, grace_seconds=30)
        >>> loop.add_signal_handler(signal.SIGTERM, worker.request_stop)
        >>> report = await worker.run()
    """

    def __init__(
        self,
        app: Engine,
        *,
        worker_id: str | None = None,
        lease_seconds: float = 10.0,
        renew_every: float = 3.0,
        poll_interval: float = 1.0,
        sqs_wait_seconds: int = 20,
        sqs_visibility_timeout: int = 60,
        heartbeat_every: float | None = None,
        grace_seconds: float = 30.0,
        shard_refresh_seconds: float = 30.0,
        initial_position: InitialPosition = "TRIM_HORIZON",
        stream: str | None = None,
        queue_urls: Sequence[str] | None = None,
        clients: AwsClients | None = None,
        lease_store: LeaseStore | None = None,
        lifecycle_heartbeat: float | None = DEFAULT_HEARTBEAT_SECONDS,
    ):
        self.lifecycle_heartbeat = lifecycle_heartbeat
        self.options = WorkerOptions(
            lease_seconds=lease_seconds,
            renew_every=renew_every,
            poll_interval=poll_interval,
            sqs_wait_seconds=sqs_wait_seconds,
            sqs_visibility_timeout=sqs_visibility_timeout,
            heartbeat_every=heartbeat_every,
            grace_seconds=grace_seconds,
            shard_refresh_seconds=shard_refresh_seconds,
            initial_position=initial_position,
        )
        resources = app.resources if isinstance(app.resources, AwsResources) else None
        if stream is None and queue_urls is None and resources is None:
            raise ConfigurationError(
                "the app has no AWS resources: build it with TaskQueue.aws(...) or "
                "TaskQueue.from_env() (TQ_STREAM / TQ_QUEUE_URL), or give stream= / queue_urls="
            )
        self.app = app
        self.worker_id = worker_id or app.worker_id
        if stream is None and resources is not None:
            stream = resources.routing.stream
        if queue_urls is None and resources is not None:
            queue_urls = resources.routing.queue_urls()
        self.stream = stream
        self.queue_urls = list(queue_urls or ())
        if not self.stream and not self.queue_urls:
            raise ConfigurationError("nothing to consume: give a stream or SQS queue URLs")
        if clients is None:
            if resources is None:
                raise ConfigurationError("give clients= (AwsClients) when the app has no resources")
            clients = resources.clients
        self.clients: AwsClients = clients
        if self.stream and lease_store is None:
            if resources is None:
                raise ConfigurationError("give lease_store= when the app has no resources")
            lease_store = DynamoLeaseStore(resources.table, resources.settings)
        self.leases: LeaseStore | None = lease_store
        self.stats = WorkerStats()
        self._shards: ShardLeases | None = None
        if self.stream and lease_store is not None:
            self._shards = ShardLeases(
                app,
                stream=self.stream,
                store=lease_store,
                clients=clients,
                options=self.options,
                stats=self.stats,
                worker_id=self.worker_id,
            )
        self._stop = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._draining = asyncio.Event()

    # -- control ------------------------------------------------------------------------------

    def request_stop(self) -> None:
        """Ask the worker to stop (from a signal handler or any thread): it drains within the
        grace period and ``run`` returns."""
        loop = self._loop
        if loop is None:
            self._stop.set()
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._stop.set()
        else:
            loop.call_soon_threadsafe(self._stop.set)

    @property
    def stopping(self) -> bool:
        """A stop was requested and the worker is draining (or has stopped)."""
        return self._draining.is_set()

    @property
    def held_shards(self) -> list[str]:
        """Shard ids whose lease this worker holds and reads."""
        return self._shards.held_shards if self._shards is not None else []

    async def run(self, stop: asyncio.Event | None = None) -> WorkerReport:
        """Consume until ``stop`` is set or ``request_stop()`` is called, then drain (see the
        module docstring) and return what was done.

        Raises:
            Exception: a background loop ended on an unexpected error (after draining).
        """
        self._loop = asyncio.get_running_loop()
        consumers = self._consumers()
        life = WorkerLifecycle(
            self.app.events,
            queues=self.app.registry.queues(),
            consumers=list(consumers.values()),
            heartbeat_seconds=self.lifecycle_heartbeat,
        )
        await life.start()
        background: list[asyncio.Task[None]] = []
        if self._shards is not None:
            # the lease loop's shard readers inherit the consumer from its context
            context = consumer_context(consumers[self.stream or ""][0])
            background.append(context.run(self._shards.start))
        for url in self.queue_urls:
            consumer = SqsConsumer(
                self.app,
                url,
                clients=self.clients,
                options=self.options,
                stats=self.stats,
                draining=self._draining,
            )
            background.append(
                asyncio.create_task(
                    consumer.run(),
                    name=f"tq-sqs {url}",
                    context=consumer_context(consumers[url][0]),
                )
            )
        scheduler = self.app.scheduler
        if isinstance(scheduler, DueScheduler):
            background.append(asyncio.create_task(self._fire_schedules(scheduler)))
        waiters = [asyncio.create_task(self._stop.wait())]
        if stop is not None:
            waiters.append(asyncio.create_task(stop.wait()))
        logger.info(
            "worker %s started: stream=%s queues=%s", self.worker_id, self.stream, self.queue_urls
        )
        try:
            await asyncio.wait([*waiters, *background], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
        crashed = [
            error
            for t in background
            if t.done() and not t.cancelled() and (error := t.exception()) is not None
        ]
        try:
            report = await self._drain(background)
        finally:
            await life.stop("error" if crashed else "shutdown")
        if crashed:
            raise crashed[0]
        return report

    def _consumers(self) -> dict[str, tuple[str, str]]:
        """``(consumer id, what it reads)`` of the stream and of each queue URL."""
        out: dict[str, tuple[str, str]] = {}
        if self._shards is not None and self.stream:
            out[self.stream] = (f"kinesis:{self.stream}", self.stream)
        for url in self.queue_urls:
            name = url.rstrip("/").rsplit("/", 1)[-1]
            out[url] = (f"sqs:{name}", name)
        return out

    async def _drain(self, background: list[asyncio.Task[None]]) -> WorkerReport:
        loop = asyncio.get_running_loop()
        grace = self.options.grace_seconds
        deadline = loop.time() + grace
        logger.info("worker %s stopping: draining within %.1f s", self.worker_id, grace)
        self._draining.set()
        shards = self._shards
        if shards is not None:
            shards.stop_reading()
        handed_off = asyncio.create_task(self.app.async_tasks.shutdown(grace))
        work = background[1:] if shards is not None else background  # the lease loop first
        # Shard readers may still be starting from a take that was in flight: wait for those
        # too, until none is left or the grace is over.
        while True:
            pending = [t for t in work if not t.done()]
            if shards is not None:
                pending += shards.busy()
            remaining = deadline - loop.time()
            if not pending or remaining <= 0:
                break
            await asyncio.wait(pending, timeout=remaining)
        for task in pending:
            task.cancel()
            self.stats.cancelled_at_grace += 1
        if pending:
            logger.warning(
                "worker %s: %d reader(s) still busy after the grace; handed back",
                self.worker_id,
                len(pending),
            )
            await asyncio.gather(*pending, return_exceptions=True)
        # The lease loop renewed the leases while the batches drained; now stop it, then give
        # back every lease still held.
        if shards is not None:
            await shards.close()
        result = await handed_off
        if result.abandoned_task_ids:
            logger.warning(
                "worker %s: %d handed-off task(s) still running after the grace: %s",
                self.worker_id,
                len(result.abandoned_task_ids),
                result.abandoned_task_ids,
            )
        logger.info("worker %s stopped: %s", self.worker_id, self.stats)
        return WorkerReport(self.stats, list(result.abandoned_task_ids))

    # -- schedules (emulators only) -----------------------------------------------------------

    async def _fire_schedules(self, scheduler: DueScheduler) -> None:
        while not self._draining.is_set():
            try:
                await scheduler.fire_due(self.app.clock.now())
            except Exception:
                logger.warning("firing due schedules failed", exc_info=True)
            await pause(self._draining, self.options.poll_interval)


__all__ = ["EcsWorker"]
