"""``Engine``: the engine on its ports. Adds tasks, runs delivered batches, reads status.

It knows the ports only (``tq_aws.ports``), never a backend or a runtime: ``TaskQueue``
(``tq_aws.app``) fills the ports, and the runtimes (Lambda, ECS, the local loop) drive it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Awaitable, Sequence
from datetime import datetime
from typing import Any, TypeVar

from tq_aws.core import log_context
from tq_aws.core.claim_check import is_blob_ref
from tq_aws.core.executors import ExecutorRegistry
from tq_aws.core.flows import FlowStatus
from tq_aws.core.lifecycle import CONSUMER, FailureLog, LifecycleBus
from tq_aws.core.poison import PoisonRecord
from tq_aws.core.prepare import check_tasks, prepare_tasks
from tq_aws.core.projections import ProjectionRow, build_row
from tq_aws.core.runner import Runner
from tq_aws.core.task import Entity, Task
from tq_aws.engine import blobs
from tq_aws.engine.context import EngineContext, EngineSettings
from tq_aws.engine.dispatch import Dispatcher, already_exists, schedule_name
from tq_aws.engine.flows import FlowCoordinator
from tq_aws.engine.handoff import AsyncTaskManager
from tq_aws.engine.operator import Operator, log_action
from tq_aws.engine.processor import BatchProcessor
from tq_aws.engine.stats import Stats
from tq_aws.engine.worker_events import DEFAULT_HEARTBEAT_SECONDS, WorkerLifecycle, stop_reason
from tq_aws.errors import ConfigurationError
from tq_aws.ports import (
    BlobStore,
    Clock,
    DueScheduler,
    FlowStore,
    PoisonStore,
    PollingSource,
    Ports,
    ProjectionStore,
    Resources,
    Scheduler,
    TaskStore,
    Transport,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")

LOCAL_CONSUMER = "local"
"""The consumer id (and source name) of ``run_worker``'s polling of the app's source."""


def default_worker_id() -> str:
    """``<host>-<pid>-<ms>``: tells apart the processes of one deployment in logs and leases."""
    return f"{socket.gethostname()}-{os.getpid()}-{int(time.time() * 1000)}"


class Engine:
    """Adds tasks, runs batches and reads status over a ``Ports`` bundle.

    Args:
        ports: the backends.
        settings: batch size, result limit, processing grace, payload copies.
        worker_id: bound into every log context; defaults to ``<host>-<pid>-<ms>``.
        async_tasks: the ``AsyncTaskManager`` for executors with ``handoff_timeout``.
        resources: what the backends hold beyond the ports (AWS clients), closed by ``aclose``.
    """

    def __init__(
        self,
        ports: Ports,
        settings: EngineSettings | None = None,
        *,
        worker_id: str | None = None,
        async_tasks: AsyncTaskManager | None = None,
        resources: Resources | None = None,
    ):
        self.settings = settings or EngineSettings()
        self.batch_size = self.settings.batch_size
        self.worker_id = worker_id or default_worker_id()
        self.registry = ExecutorRegistry()
        self.events = LifecycleBus()
        """The lifecycle providers (``add_listener``) and what they cost: ``failures``."""
        self.events.add(FailureLog(), builtin=True)
        self.stats = Stats()
        self.async_tasks = async_tasks or AsyncTaskManager()
        self.resources: Resources | None = resources
        """What the backends hold beyond the ports (``AwsResources`` on AWS), or ``None``."""
        self._sync_loop: asyncio.AbstractEventLoop | None = None
        self._sync_thread: threading.Thread | None = None
        self._sync_lock = threading.Lock()
        log_context.install_record_factory()
        self.use_ports(ports)

    def use_ports(self, ports: Ports) -> None:
        """Wire the engine to ``ports`` (a wrapped copy of its own, for instance: the fault
        harness does this). Registered executors, listeners and counters are kept."""
        self.ports = ports
        self.clock: Clock = ports.clock
        self.transport: Transport = ports.transport
        self.task_store: TaskStore = ports.task_store
        self.projection_store: ProjectionStore = ports.projection_store
        self.flow_store: FlowStore = ports.flow_store
        self.scheduler: Scheduler = ports.scheduler
        self.blob_store: BlobStore = ports.blob_store
        self.poison_store: PoisonStore = ports.poison_store
        self.source: PollingSource | None = ports.source
        self.events.bind(
            worker_id=self.worker_id,
            now=self.clock.now,
            registry=self.registry,
            include_payload=self.settings.include_payload,
        )
        context = EngineContext(ports, self.registry, self.events, self.stats, self.settings)
        self._dispatcher = Dispatcher(context)
        self._runner = Runner(
            self.registry,
            self._prepare_children,
            worker_id=self.worker_id,
            now=self.clock.now,
            events=self.events,
            slow_callback_duration=self.settings.slow_callback_duration,
        )
        self.flows = FlowCoordinator(context, self._dispatcher)
        self.operator = Operator(context, self._dispatcher)
        self.processor = BatchProcessor(
            context,
            runner=self._runner,
            dispatcher=self._dispatcher,
            flows=self.flows,
            async_tasks=self.async_tasks,
        )

    def _prepare_children(
        self,
        tasks: Sequence[Task],
        context: Any,
        /,
        *,
        now: datetime | None = None,
        validate: bool = True,
        build: bool = True,
    ) -> list[Task]:
        at = self.clock.now() if now is None else now
        if not build:
            check_tasks(tasks, self.registry, at, inherit_context=context)
            return []
        return prepare_tasks(tasks, self.registry, at, inherit_context=context, validate=validate)

    # -- resources ------------------------------------------------------------------------

    async def ensure_resources(self) -> None:
        """Create the AWS resources that are missing (development and tests; production uses
        the templates). Nothing to do on the embedded default."""
        if self.resources is not None:
            await self.resources.ensure()

    async def aclose(self) -> None:
        """Close the AWS clients opened on the running event loop, and stop the private loop
        of ``add_tasks_sync`` (closing the clients it opened)."""
        if self.resources is not None:
            await self.resources.aclose()
        with self._sync_lock:
            loop, self._sync_loop = self._sync_loop, None
            thread, self._sync_thread = self._sync_thread, None
        if loop is not None:
            if self.resources is not None:
                done = asyncio.run_coroutine_threadsafe(self.resources.aclose(), loop)
                await asyncio.wrap_future(done)
            loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            await asyncio.to_thread(thread.join, 10)

    # -- producing ------------------------------------------------------------------------

    async def add_tasks(self, tasks: Sequence[Task]) -> list[str]:
        """Add tasks; return their ids in order.

        Due tasks are published; tasks with a future ``execute_at`` are stored ``scheduled``
        and delivered by the Scheduler; ``force_store`` tasks are stored too. The whole call is
        validated first: on ``TaskValidationError`` nothing is added.

        A task given an explicit ``id`` that a stored task already has is refused with
        ``TaskAlreadyExistsError`` naming the id (the stored task is left as it was).
        """
        prepared = prepare_tasks(tasks, self.registry, self.clock.now())
        explicit = {t.id or "": i for i, t in enumerate(tasks) if isinstance(t, Task) and t.id}
        if explicit:
            await self._refuse_existing(prepared, explicit)
        await self._dispatcher.dispatch(prepared, exclusive=explicit)
        return [t.id or "" for t in prepared]

    async def _refuse_existing(self, prepared: Sequence[Task], explicit: dict[str, int]) -> None:
        """Raise ``TaskAlreadyExistsError`` for the first explicit id already stored (one read
        per explicit id, before anything of the call is written)."""
        ids = list(explicit)
        found = await asyncio.gather(*(self.task_store.get(i) for i in ids))
        for task_id, stored in zip(ids, found, strict=True):
            if stored is not None:
                index = explicit[task_id]
                raise already_exists(prepared[index], index, stored)

    def add_tasks_sync(self, tasks: Sequence[Task]) -> list[str]:
        """``add_tasks`` for synchronous code (web apps, scripts): blocks until the tasks are
        accepted and returns their ids. Safe from any thread; it runs on a private event loop
        kept for the app, so AWS connections are reused across calls. Not for use inside a
        running event loop (await ``add_tasks`` there). The memory backends are not
        thread-safe: with them, do not run a worker in another thread at the same time."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            raise RuntimeError("add_tasks_sync inside a running event loop; await add_tasks")
        loop = self._private_loop()
        return asyncio.run_coroutine_threadsafe(self.add_tasks(tasks), loop).result()

    def run_sync(self, awaitable: Awaitable[T]) -> T:
        """Run ``awaitable`` on the app's private event loop (the one ``add_tasks_sync``
        uses) and return its result: how synchronous code (the status server's threads, the
        status Lambda handler) reads the async stores. Safe from any thread; it blocks the
        calling thread, so from a coroutine use ``await`` instead."""

        async def run() -> T:
            return await awaitable

        return asyncio.run_coroutine_threadsafe(run(), self._private_loop()).result()

    def _private_loop(self) -> asyncio.AbstractEventLoop:
        with self._sync_lock:
            if self._sync_loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=loop.run_forever, name="tq-aws-sync-producer", daemon=True
                )
                thread.start()
                self._sync_loop = loop
                self._sync_thread = thread
            return self._sync_loop

    # -- reading --------------------------------------------------------------------------

    async def get_task(self, task_id: str) -> Task | None:
        """The stored record of a task, or ``None`` when it was never stored."""
        task = await self.task_store.get(task_id)
        if task is not None and is_blob_ref(task.execution_result):
            result = await blobs.resolve(self.blob_store, task.execution_result)
            task = task.model_copy(update={"execution_result": result})
        return task

    async def entity_status(self, entity: Entity) -> list[ProjectionRow]:
        """The latest status row of every task (and flow) of ``entity``, oldest first."""
        rows = await self.projection_store.for_entity(entity)
        for i, row in enumerate(rows):
            if is_blob_ref(row.result):
                result = await blobs.resolve(self.blob_store, row.result)
                rows[i] = row.model_copy(update={"result": result})
        return rows

    async def flow_status(self, flow_id: str) -> FlowStatus | None:
        """A flow's state (``open``, ``joined``, ``aborted``, ``timed_out``), counts, times and
        join task id; ``None`` for an unknown flow."""
        return await self.flows.status(flow_id)

    async def cancel(self, task_id: str, *, actor: str | None = None) -> bool:
        """Cancel a stored task that has not started; return whether it was cancelled.

        A cancelled task reads ``cancelled`` and is never executed, even if its record was
        already on its way to a consumer. With ``actor`` (an operator's cancel: the status
        page, the CLI) the action is logged with who asked."""
        now = self.clock.now()
        task = await self.task_store.cancel(task_id, now)
        if actor is not None:
            outcome = "cancelled" if task is not None else "refused: not scheduled"
            log_action(actor, "cancel", task_id, outcome, now)
        if task is None:
            return False
        await self.scheduler.cancel([schedule_name(task)])
        if build_row(task, "cancelled", now) is not None:
            await self._dispatcher.project([task], "cancelled", now)
        self.stats.cancelled += 1
        await self.events.task_cancelled(task)
        return True

    # -- operator actions (status page, CLI) -------------------------------------------------

    async def retry_task(
        self, task_id: str, *, actor: str = "api", failed_attempt: int | None = None
    ) -> bool:
        """Run a failed task again as its next attempt; whether this call started it. A retry
        sent twice starts one attempt. See ``tq_aws.engine.operator.Operator.retry_task``."""
        return await self.operator.retry_task(task_id, actor=actor, failed_attempt=failed_attempt)

    async def retry_failed(
        self,
        task_type: str | None = None,
        queue_id: str | None = None,
        since: datetime | None = None,
        *,
        actor: str = "api",
        limit: int = 1000,
    ) -> int:
        """Retry the failed tasks (of entities) of this type / queue / since a time; return
        how many were started. See ``tq_aws.engine.operator.Operator.retry_failed``."""
        return await self.operator.retry_failed(
            task_type, queue_id, since, actor=actor, limit=limit
        )

    async def redrive_poison(
        self,
        keys: Sequence[str] | None = None,
        *,
        reason: str | None = None,
        queue_id: str | None = None,
        since: datetime | None = None,
        actor: str = "api",
    ) -> int:
        """Add the tasks of poison records that decode now (after a fix), chosen by ``keys``
        or by filter; return how many were added. A redrive sent twice adds each once. See
        ``tq_aws.engine.operator.Operator.redrive_poison``."""
        return await self.operator.redrive_poison(
            keys, reason=reason, queue_id=queue_id, since=since, actor=actor
        )

    def next_due(self) -> datetime | None:
        """When the Scheduler's earliest pending delivery is due (memory scheduler), or
        ``None``: lets tests and demos move a ManualClock straight to the next event."""
        if isinstance(self.scheduler, DueScheduler):
            return self.scheduler.next_due()
        return None

    @property
    def poison(self) -> list[PoisonRecord]:
        """Records this process could not decode, with their bytes, reason and position
        (``poison_records`` reads what every worker kept)."""
        return self.processor.poison

    async def poison_records(self, limit: int = 100) -> list[PoisonRecord]:
        """The poison records kept in the poison store by every worker, newest first: what
        ``tq-aws poison`` shows. A record delivered again is kept once."""
        return await self.poison_store.recent(limit)

    # -- running locally ------------------------------------------------------------------

    def _source(self) -> PollingSource:
        if self.source is None:
            raise ConfigurationError(
                "this TaskQueue has no polling source; pass source=... or run the Lambda runtime"
            )
        return self.source

    async def run_until_idle(self) -> int:
        """Fire due schedules and run every delivered batch until nothing is due at the clock's
        now. Never moves the clock. Returns the number of batches run.

        If a batch's outcome cannot be recorded, its records are given back for redelivery
        and the error is raised; calling again redelivers them."""
        source = self._source()
        scheduler = self.scheduler if isinstance(self.scheduler, DueScheduler) else None
        batches = 0
        while True:
            fired = await scheduler.fire_due(self.clock.now()) if scheduler is not None else 0
            deliveries = await source.receive(self.batch_size)
            if not deliveries:
                if fired:
                    continue
                if self.async_tasks.active:  # handed-off tasks may still add work
                    await self.async_tasks.wait_any()
                    continue
                if self.events.pending:  # the background work of async providers
                    await self.events.drain()
                return batches
            try:
                await self.processor.process(deliveries)
            except BaseException:
                await source.nack(deliveries)
                raise
            await source.ack(deliveries)
            batches += 1

    async def run_worker(
        self,
        stop: asyncio.Event,
        *,
        idle_sleep: float = 0.05,
        heartbeat_seconds: float | None = DEFAULT_HEARTBEAT_SECONDS,
    ) -> None:
        """Run until ``stop`` is set: batches as they come, schedules as they fall due.

        Sends ``worker_started`` and ``consumer_started`` (consumer ``local``) first, a
        ``worker_heartbeat`` every ``heartbeat_seconds`` (``None``: none), and
        ``consumer_stopped`` and ``worker_stopped`` at the end (reason ``error`` when it ends
        on an exception)."""
        life = WorkerLifecycle(
            self.events,
            queues=self.registry.queues(),
            consumers=[(LOCAL_CONSUMER, LOCAL_CONSUMER)],
            heartbeat_seconds=heartbeat_seconds,
        )
        await life.start()
        token = CONSUMER.set(LOCAL_CONSUMER)
        error: BaseException | None = None
        try:
            while not stop.is_set():
                await self.run_until_idle()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=idle_sleep)
        except BaseException as exc:
            error = exc
            raise
        finally:
            CONSUMER.reset(token)
            await life.stop(stop_reason(error))
