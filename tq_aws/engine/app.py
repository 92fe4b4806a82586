"""``TaskQueue``: register executors, add tasks, run them, read their status."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

from pydantic import BaseModel

from tq_aws.backends.memory import (
    MemoryBlobStore,
    MemoryFlowStore,
    MemoryPoisonStore,
    MemoryProjectionStore,
    MemoryScheduler,
    MemoryTaskStore,
    MemoryTransport,
)
from tq_aws.clock import Clock, SystemClock
from tq_aws.core import log_context
from tq_aws.core.executors import ExecutorKind, ExecutorRegistry, PartitionKeyFn, make_spec
from tq_aws.core.flows import FlowStatus
from tq_aws.core.lifecycle import LifecycleBus, LifecycleListener
from tq_aws.core.poison import PoisonRecord
from tq_aws.core.prepare import prepare_tasks
from tq_aws.core.projections import ProjectionRow, build_row
from tq_aws.core.retry import DEFAULT_RETRY_AFTER
from tq_aws.core.runner import Runner
from tq_aws.core.task import Entity, Task
from tq_aws.engine import blobs
from tq_aws.engine.dispatch import Dispatcher, schedule_name
from tq_aws.engine.flows import FlowCoordinator
from tq_aws.engine.handoff import AsyncTaskManager
from tq_aws.engine.processor import BatchProcessor
from tq_aws.engine.stats import Stats
from tq_aws.errors import ConfigurationError
from tq_aws.ports import (
    BlobStore,
    FlowStore,
    PoisonStore,
    PollingSource,
    ProjectionStore,
    Scheduler,
    TaskStore,
    Transport,
)

logger = logging.getLogger("tq_aws")

F = TypeVar("F", bound=Callable[..., Any])


def _worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{int(time.time() * 1000)}"


class TaskQueue:
    """The task queue: executors, producers and the local runtime in one object.

    With no arguments it runs on the embedded in-memory backends and the real clock.

    Args:
        clock: the source of "now" (``tq_aws.testing.ManualClock`` in tests).
        batch_size: how many records one delivered batch holds at most.
        transport, task_store, projection_store, flow_store, scheduler, blob_store,
            poison_store: backends for the ports; each defaults to its memory backend.
        source: what ``run_until_idle`` and ``run_worker`` pull batches from; defaults to the
            transport when it can be polled (the memory transport can).
        result_limit: results larger than this many bytes (JSON) go to the blob store.
        processing_grace: seconds; when > 0, the ``processing`` row of an entity task is
            written only if its batch is still running after this long, so a quick task costs
            one projection write less. A task that fails and will retry still shows
            ``processing``. 0 (default) writes it before the task runs.
        include_payload: copy task payloads into projection rows.
        worker_id: bound into every log context; defaults to ``<host>-<pid>-<ms>``.
        async_tasks: the ``AsyncTaskManager`` for executors with ``handoff_timeout``.

    Example:
        >>> app = TaskQueue()
        >>> @app.executor("emails", "send", retries=2)
        ... async def send(task, actions):
        ...     actions.success(task, {"message_id": "m-1"})
        >>> ids = await app.add_tasks([Task(type="send", queue_id="emails", payload={})])
        >>> await app.run_until_idle()
    """

    def __init__(
        self,
        clock: Clock | None = None,
        batch_size: int = 100,
        *,
        transport: Transport | None = None,
        task_store: TaskStore | None = None,
        projection_store: ProjectionStore | None = None,
        flow_store: FlowStore | None = None,
        scheduler: Scheduler | None = None,
        blob_store: BlobStore | None = None,
        poison_store: PoisonStore | None = None,
        source: PollingSource | None = None,
        result_limit: int = blobs.DEFAULT_RESULT_LIMIT,
        processing_grace: float = 0.0,
        async_tasks: AsyncTaskManager | None = None,
        include_payload: bool = False,
        worker_id: str | None = None,
    ):
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigurationError(f"batch_size={batch_size!r}; give a whole number >= 1")
        self.clock: Clock = clock or SystemClock()
        self.batch_size = batch_size
        self.transport: Transport = transport or MemoryTransport()
        self.task_store: TaskStore = task_store or MemoryTaskStore()
        self.projection_store: ProjectionStore = projection_store or MemoryProjectionStore()
        self.flow_store: FlowStore = flow_store or MemoryFlowStore()
        self.scheduler: Scheduler = scheduler or MemoryScheduler(self.transport)
        self.blob_store: BlobStore = blob_store or MemoryBlobStore()
        self.poison_store: PoisonStore = poison_store or MemoryPoisonStore()
        self.source: PollingSource | None = source
        if source is None and all(hasattr(self.transport, m) for m in ("receive", "ack", "nack")):
            self.source = self.transport  # type: ignore[assignment]
        self.worker_id = worker_id or _worker_id()
        self.registry = ExecutorRegistry()
        self.events = LifecycleBus()
        self.stats = Stats()
        self.async_tasks = async_tasks or AsyncTaskManager()
        self.resources: Any = None
        """Set by ``TaskQueue.aws``: the AWS resources behind the backends."""
        self._sync_loop: asyncio.AbstractEventLoop | None = None
        self._sync_thread: threading.Thread | None = None
        self._sync_lock = threading.Lock()
        log_context.install_record_factory()
        self._dispatcher = Dispatcher(
            clock=self.clock,
            registry=self.registry,
            transport=self.transport,
            scheduler=self.scheduler,
            task_store=self.task_store,
            projections=self.projection_store,
            events=self.events,
            stats=self.stats,
            include_payload=include_payload,
        )
        self._runner = Runner(
            self.registry,
            self._prepare_children,
            worker_id=self.worker_id,
            now=self.clock.now,
            events=self.events,
        )
        self.flows = FlowCoordinator(
            clock=self.clock,
            flow_store=self.flow_store,
            task_store=self.task_store,
            projections=self.projection_store,
            scheduler=self.scheduler,
            blob_store=self.blob_store,
            dispatcher=self._dispatcher,
            events=self.events,
            stats=self.stats,
        )
        self.processor = BatchProcessor(
            clock=self.clock,
            registry=self.registry,
            runner=self._runner,
            dispatcher=self._dispatcher,
            flows=self.flows,
            scheduler=self.scheduler,
            task_store=self.task_store,
            blob_store=self.blob_store,
            poison_store=self.poison_store,
            events=self.events,
            stats=self.stats,
            result_limit=result_limit,
            processing_grace=processing_grace,
            async_tasks=self.async_tasks,
        )

    # -- construction on AWS -----------------------------------------------------------------

    @classmethod
    def aws(
        cls,
        stream: str | None = None,
        queue_url: str | None = None,
        table: str = "tq",
        bucket: str | None = None,
        scheduler_group: str = "tq",
        scheduler_role_arn: str | None = None,
        region: str = "us-east-1",
        endpoint_url: str | None = None,
        clock: Clock | None = None,
        *,
        sqs_queues: Mapping[str, str] | Iterable[str] | None = None,
        compress_over: int | None = None,
        max_record_bytes: int = 1_048_576,
        fire_schedules: bool | None = None,
        **options: Any,
    ) -> TaskQueue:
        """A TaskQueue on AWS: Kinesis and/or SQS transports, DynamoDB stores, EventBridge
        Scheduler, S3 claim check. Executor code is the same as on the embedded default.

        Args:
            stream: Kinesis stream for every queue id not in ``sqs_queues``.
            queue_url: SQS queue URL; alone, every queue id travels by it.
            sqs_queues: queue ids that travel by SQS: ``{queue_id: url}``, or ids using
                ``queue_url``.
            table: the DynamoDB table (tasks, projections, flows in one table); a name too
                short for DynamoDB (under 3 characters) is a prefix: ``<table>-store``.
            bucket: S3 bucket for payloads and results over the size limits.
            scheduler_group, scheduler_role_arn: where schedules live and the role EventBridge
                Scheduler assumes to deliver them.
            region, endpoint_url: where AWS is (``endpoint_url`` for a local emulator).
            clock: the clock (default: the real one). With an injected clock every delay goes
                through the Scheduler, since SQS ``DelaySeconds`` counts real seconds.
            compress_over: zlib-compress records larger than this many bytes.
            max_record_bytes: records larger than this go through the claim check (1 MiB;
                raise it for streams configured for larger records).
            fire_schedules: let ``run_until_idle`` perform due schedules itself. Defaults to
                true only for a loopback ``endpoint_url`` (an emulator never fires them).
            options: any other ``TaskQueue`` option (``batch_size``, ``processing_grace``...).
        """
        from tq_aws.backends.aws.factory import build

        return build(
            stream=stream,
            queue_url=queue_url,
            table=table,
            bucket=bucket,
            scheduler_group=scheduler_group,
            scheduler_role_arn=scheduler_role_arn,
            region=region,
            endpoint_url=endpoint_url,
            clock=clock,
            sqs_queues=sqs_queues,
            compress_over=compress_over,
            max_record_bytes=max_record_bytes,
            fire_schedules=fire_schedules,
            **options,
        )

    @classmethod
    def from_env(cls, clock: Clock | None = None, **options: Any) -> TaskQueue:
        """A TaskQueue configured by ``TQ_*`` environment variables (the names the SAM and
        CDK templates set): ``TQ_STREAM``, ``TQ_QUEUE_URL``, ``TQ_SQS_QUEUES`` (JSON object or
        comma-separated ids), ``TQ_TABLE``, ``TQ_BUCKET``, ``TQ_SCHEDULER_GROUP``,
        ``TQ_SCHEDULER_ROLE_ARN``, ``TQ_REGION`` (else ``AWS_REGION``), ``TQ_ENDPOINT_URL``.
        With none of ``TQ_STREAM``, ``TQ_QUEUE_URL`` or a ``TQ_SQS_QUEUES`` mapping set: the
        embedded default."""
        from tq_aws.backends.aws.factory import settings_from_env

        config = settings_from_env()
        if config is None:
            return cls(clock=clock, **options)
        return cls.aws(clock=clock, **config, **options)

    async def ensure_resources(self) -> None:
        """Create the AWS resources that are missing (development and tests; production uses
        the templates). Nothing to do on the embedded default."""
        if self.resources is not None:
            await self.resources.ensure()

    async def aclose(self) -> None:
        """Close the AWS clients opened on the running event loop, and stop the private loop
        of ``add_tasks_sync`` (closing the clients it opened)."""
        if self.resources is not None:
            await self.resources.clients.aclose()
        with self._sync_lock:
            loop, self._sync_loop = self._sync_loop, None
            thread, self._sync_thread = self._sync_thread, None
        if loop is not None:
            if self.resources is not None:
                done = asyncio.run_coroutine_threadsafe(self.resources.clients.aclose(), loop)
                await asyncio.wrap_future(done)
            loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            await asyncio.to_thread(thread.join, 10)

    # -- registration ---------------------------------------------------------------------

    def executor(
        self,
        queue_id: str,
        type: str,
        *,
        parallel: bool = False,
        chunk_size: int | None = None,
        retries: int = 0,
        retry_after: float = DEFAULT_RETRY_AFTER,
        store_on_failure: bool = False,
        partition_key: PartitionKeyFn | None = None,
        payload_model: type[BaseModel] | None = None,
        handoff_timeout: float | None = None,
        max_duration: float | None = None,
    ) -> Callable[[F], F]:
        """Register a single-task executor ``fn(task, actions)`` (plain or ``async def``).

        Args:
            queue_id, type: the tasks it runs.
            parallel: run the group's tasks ``chunk_size`` at a time (plain functions in threads).
            chunk_size: tasks per concurrent chunk (parallel only; default 10, at least 1).
            retries: retries after a failed attempt (default 0); a task's ``retries`` overrides.
            retry_after: backoff base in seconds: ``retry_after * (n+1)**2``, capped at 300.
            store_on_failure: store every failed attempt, retried ones included, so
                ``get_task`` shows it between attempts. Final failures and ignored tasks are
                always stored; without this a retry travels by the scheduler alone.
            partition_key: ``(task) -> str`` ordering key, applied on every dispatch path.
            payload_model: pydantic model the payload must validate against at ``add_tasks``.
            handoff_timeout: seconds after which a still-running task is handed off to
                ``async_tasks`` and the batch goes on; its outcome is recorded when it ends.
            max_duration: seconds a handed-off task may run before it is cancelled and failed
                into the retry path (default: the manager's ``default_max_duration``).
        """
        kind = ExecutorKind.PARALLEL if parallel else ExecutorKind.SINGLE

        def register(fn: F) -> F:
            self.registry.add(
                make_spec(
                    queue_id,
                    type,
                    fn,
                    kind=kind,
                    chunk_size=chunk_size,
                    retries=retries,
                    retry_after=retry_after,
                    store_on_failure=store_on_failure,
                    partition_key=partition_key,
                    payload_model=payload_model,
                    handoff_timeout=handoff_timeout,
                    max_duration=max_duration,
                )
            )
            return fn

        return register

    def batch_executor(
        self,
        queue_id: str,
        type: str,
        *,
        retries: int = 0,
        retry_after: float = DEFAULT_RETRY_AFTER,
        store_on_failure: bool = False,
        partition_key: PartitionKeyFn | None = None,
        payload_model: type[BaseModel] | None = None,
    ) -> Callable[[F], F]:
        """Register a batch executor ``fn(tasks, actions)``: the delivered batch's tasks of this
        type in one call. Tasks it leaves undecided are failed; if it raises, every undecided
        task fails with the error."""

        def register(fn: F) -> F:
            self.registry.add(
                make_spec(
                    queue_id,
                    type,
                    fn,
                    kind=ExecutorKind.BATCH,
                    chunk_size=None,
                    retries=retries,
                    retry_after=retry_after,
                    store_on_failure=store_on_failure,
                    partition_key=partition_key,
                    payload_model=payload_model,
                )
            )
            return fn

        return register

    def add_listener(self, listener: LifecycleListener) -> None:
        """Receive lifecycle events (see ``tq_aws.LifecycleListener``)."""
        self.events.listeners.append(listener)

    # -- producing ------------------------------------------------------------------------

    async def add_tasks(self, tasks: Sequence[Task]) -> list[str]:
        """Add tasks; return their ids in order.

        Due tasks are published; tasks with a future ``execute_at`` are stored ``scheduled``
        and delivered by the Scheduler; ``force_store`` tasks are stored too. The whole call is
        validated first: on ``TaskValidationError`` nothing is added.
        """
        prepared = prepare_tasks(tasks, self.registry, self.clock.now())
        await self._dispatcher.dispatch(prepared)
        return [t.id or "" for t in prepared]

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

    def _prepare_children(self, tasks: Sequence[Task], context: Any) -> list[Task]:
        return prepare_tasks(tasks, self.registry, self.clock.now(), inherit_context=context)

    # -- reading --------------------------------------------------------------------------

    async def get_task(self, task_id: str) -> Task | None:
        """The stored record of a task, or ``None`` when it was never stored."""
        task = await self.task_store.get(task_id)
        if task is not None and blobs.is_blob_ref(task.execution_result):
            result = await blobs.resolve(self.blob_store, task.execution_result)
            task = task.model_copy(update={"execution_result": result})
        return task

    async def entity_status(self, entity: Entity) -> list[ProjectionRow]:
        """The latest status row of every task (and flow) of ``entity``, oldest first."""
        rows = await self.projection_store.for_entity(entity)
        for i, row in enumerate(rows):
            if blobs.is_blob_ref(row.result):
                result = await blobs.resolve(self.blob_store, row.result)
                rows[i] = row.model_copy(update={"result": result})
        return rows

    async def flow_status(self, flow_id: str) -> FlowStatus | None:
        """A flow's state (``open``, ``joined``, ``aborted``, ``timed_out``), counts, times and
        join task id; ``None`` for an unknown flow."""
        return await self.flows.status(flow_id)

    async def cancel(self, task_id: str) -> bool:
        """Cancel a stored task that has not started; return whether it was cancelled.

        A cancelled task reads ``cancelled`` and is never executed, even if its record was
        already on its way to a consumer."""
        now = self.clock.now()
        task = await self.task_store.cancel(task_id, now)
        if task is None:
            return False
        await self.scheduler.cancel([schedule_name(task)])
        row = build_row(task, "cancelled", now)
        if row is not None:
            await self._dispatcher.project([task], "cancelled", now)
        self.stats.cancelled += 1
        if self.events:
            self.events.on_task_cancelled(task)
        return True

    def next_due(self) -> datetime | None:
        """When the Scheduler's earliest pending delivery is due (memory scheduler), or
        ``None``: lets tests and demos move a ManualClock straight to the next event."""
        next_due = getattr(self.scheduler, "next_due", None)
        return next_due() if next_due is not None else None

    @property
    def poison(self) -> list[PoisonRecord]:
        """Records this process could not decode, with their bytes, reason and position
        (``poison_records`` reads what every worker kept)."""
        return self.processor.poison

    async def poison_records(self, limit: int = 100) -> list[PoisonRecord]:
        """The poison records kept in the poison store by every worker, newest first: what
        ``tq-aws poison`` shows. A record delivered again is kept once."""
        return await self.poison_store.recent(limit)

    # -- running locally -----------------------------------------------------------------

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
        fire_due = getattr(self.scheduler, "fire_due", None)
        batches = 0
        while True:
            fired = await fire_due(self.clock.now()) if fire_due is not None else 0
            deliveries = await source.receive(self.batch_size)
            if not deliveries:
                if fired:
                    continue
                if self.async_tasks.active:  # handed-off tasks may still add work
                    await self.async_tasks.wait_any()
                    continue
                return batches
            try:
                await self.processor.process(deliveries)
            except BaseException:
                await source.nack(deliveries)
                raise
            await source.ack(deliveries)
            batches += 1

    def lambda_handler(self, **options: Any) -> Callable[[dict[str, Any], Any], dict[str, Any]]:
        """The AWS Lambda entry point: ``handler(event, context)`` runs the event of a Kinesis
        or SQS event source mapping and returns ``{"batchItemFailures": [...]}``. Options
        (``sub_batch_size``, ``safety_margin``, ``logger``, ``metrics``, ``tracer``...): see
        ``tq_aws.runtimes.lambda_handler.LambdaHandler``."""
        from tq_aws.runtimes.lambda_handler import LambdaHandler

        return LambdaHandler(self, **options)

    async def run_worker(self, stop: asyncio.Event, *, idle_sleep: float = 0.05) -> None:
        """Run until ``stop`` is set: batches as they come, schedules as they fall due."""
        while not stop.is_set():
            await self.run_until_idle()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=idle_sleep)
