"""``TaskQueue``: the one place that wires an app. It fills the ports (memory defaults,
``TaskQueue.aws``, ``TaskQueue.from_env``), registers executors, and hands out the runtimes'
entry points (``lambda_handler``). Everything it runs is the ``Engine``'s."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel

from tq_aws.backends.clock import SystemClock
from tq_aws.backends.memory import (
    MemoryBlobStore,
    MemoryFlowStore,
    MemoryPoisonStore,
    MemoryProjectionStore,
    MemoryScheduler,
    MemoryTaskStore,
    MemoryTransport,
)
from tq_aws.core.blocking import DEFAULT_SLOW_CALLBACK_DURATION
from tq_aws.core.claim_check import DEFAULT_RESULT_LIMIT
from tq_aws.core.executors import ExecutorKind, PartitionKeyFn, make_spec
from tq_aws.core.lifecycle import LifecycleListener, LifecycleMode
from tq_aws.core.retry import DEFAULT_RETRY_AFTER
from tq_aws.engine.context import (
    DEFAULT_MAX_DELIVERIES,
    UNSET,
    EngineSettings,
    max_deliveries_from_env,
)
from tq_aws.engine.engine import Engine
from tq_aws.engine.handoff import AsyncTaskManager
from tq_aws.errors import ConfigurationError
from tq_aws.ports import (
    BlobStore,
    Clock,
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

if TYPE_CHECKING:
    from tq_aws.status.server import StatusServer

F = TypeVar("F", bound=Callable[..., Any])


class TaskQueue(Engine):
    """The task queue: executors, producers and the local runtime in one object.

    With no arguments it runs on the embedded in-memory backends and the real clock.

    Args:
        clock: the source of "now" (``tq_aws.testing.ManualClock`` in tests).
        batch_size: how many records one delivered batch holds at most.
        transport: the backend of the Transport port (default: the memory backend).
        task_store: the TaskStore backend (default: the memory backend).
        projection_store: the ProjectionStore backend (default: the memory backend).
        flow_store: the FlowStore backend (default: the memory backend).
        scheduler: the Scheduler backend (default: the memory scheduler on the transport).
        blob_store: the BlobStore backend (default: the memory backend).
        poison_store: the PoisonStore backend (default: the memory backend).
        source: what ``run_until_idle`` and ``run_worker`` pull batches from; defaults to the
            transport when it can be polled (the memory transport can).
        result_limit: results larger than this many bytes (JSON) go to the blob store.
        processing_grace: seconds; when > 0, the ``processing`` row of an entity task is
            written only if its batch is still running after this long, so a quick task costs
            one projection write less. A task that fails and will retry still shows
            ``processing``. 0 (default) writes it before the task runs.
        include_payload: copy task payloads into projection rows.
        slow_callback_duration: seconds one step of an ``async def`` executor may hold the
            event loop (a blocking call inside it) before a WARNING names the executor and
            how long it blocked, as asyncio's debug mode does (default 0.1; ``None``: not
            timed).
        max_deliveries: a record whose batch could not be recorded this many times (for a
            reason other than throttling, timeouts or connections) is parked in the poison
            store, so its key moves on (default 10; ``None``: never park, retry forever).
            ``TaskQueue.from_env`` reads ``TQ_MAX_DELIVERIES``.
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
        result_limit: int = DEFAULT_RESULT_LIMIT,
        processing_grace: float = 0.0,
        async_tasks: AsyncTaskManager | None = None,
        include_payload: bool = False,
        slow_callback_duration: float | None = DEFAULT_SLOW_CALLBACK_DURATION,
        max_deliveries: int | None = DEFAULT_MAX_DELIVERIES,
        worker_id: str | None = None,
        ports: Ports | None = None,
        resources: Resources | None = None,
    ):
        settings = EngineSettings(
            batch_size=batch_size,
            result_limit=result_limit,
            processing_grace=processing_grace,
            include_payload=include_payload,
            slow_callback_duration=slow_callback_duration,
            max_deliveries=max_deliveries,
        )
        if ports is None:
            # `is None`, not `or`: an empty memory store has a length of 0, so it is falsy
            transport = MemoryTransport() if transport is None else transport
            if source is None and isinstance(transport, PollingSource):
                source = transport
            ports = Ports(
                clock=clock or SystemClock(),
                transport=transport,
                task_store=MemoryTaskStore() if task_store is None else task_store,
                projection_store=MemoryProjectionStore()
                if projection_store is None
                else projection_store,
                flow_store=MemoryFlowStore() if flow_store is None else flow_store,
                scheduler=MemoryScheduler(transport) if scheduler is None else scheduler,
                blob_store=MemoryBlobStore() if blob_store is None else blob_store,
                poison_store=MemoryPoisonStore() if poison_store is None else poison_store,
                source=source,
            )
        elif any(
            given is not None
            for given in (
                clock,
                transport,
                task_store,
                projection_store,
                flow_store,
                scheduler,
                blob_store,
                poison_store,
                source,
            )
        ):
            raise ConfigurationError("ports= is given: pass the backends inside it, not beside it")
        super().__init__(
            ports, settings, worker_id=worker_id, async_tasks=async_tasks, resources=resources
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
        scheduler_dead_letter_arn: str | None = None,
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
            scheduler_group: the EventBridge Scheduler group where schedules live.
            scheduler_role_arn: the role EventBridge Scheduler assumes to deliver them
                (required on AWS; a loopback ``endpoint_url`` gets a placeholder).
            region: the AWS region.
            endpoint_url: one endpoint for every service (a local emulator such as moto).
            clock: the clock (default: the real one). With an injected clock every delay goes
                through the Scheduler, since SQS ``DelaySeconds`` counts real seconds.
            compress_over: zlib-compress records larger than this many bytes.
            max_record_bytes: records larger than this go through the claim check (1 MiB;
                raise it for streams configured for larger records).
            fire_schedules: let ``run_until_idle`` perform due schedules itself. Defaults to
                true only for a loopback ``endpoint_url`` (an emulator never fires them).
            scheduler_dead_letter_arn: an SQS queue ARN where EventBridge Scheduler puts a
                delivery it gave up on after its retries (the templates create one).
            options: any other ``TaskQueue`` option (``batch_size``, ``processing_grace``...).
        """
        from tq_aws.backends.aws.factory import AwsConfig, build

        config = AwsConfig(
            stream=stream,
            queue_url=queue_url,
            table=table,
            bucket=bucket,
            scheduler_group=scheduler_group,
            scheduler_role_arn=scheduler_role_arn,
            region=region,
            endpoint_url=endpoint_url,
            sqs_queues=sqs_queues,
            compress_over=compress_over,
            max_record_bytes=max_record_bytes,
            fire_schedules=fire_schedules,
            scheduler_dead_letter_arn=scheduler_dead_letter_arn,
        )
        ports, resources = build(config, clock or SystemClock())
        return cls(ports=ports, resources=resources, **options)

    @classmethod
    def from_env(cls, clock: Clock | None = None, **options: Any) -> TaskQueue:
        """A TaskQueue configured by ``TQ_*`` environment variables (the names the SAM and
        CDK templates set): ``TQ_STREAM``, ``TQ_QUEUE_URL``, ``TQ_SQS_QUEUES`` (JSON object or
        comma-separated ids), ``TQ_TABLE``, ``TQ_BUCKET``, ``TQ_SCHEDULER_GROUP``,
        ``TQ_SCHEDULER_ROLE_ARN``, ``TQ_SCHEDULER_DLQ_ARN``, ``TQ_REGION`` (else
        ``AWS_REGION``), ``TQ_ENDPOINT_URL``; and on every backend ``TQ_MAX_DELIVERIES`` (a
        whole number, or ``none`` never to park) unless ``max_deliveries`` is given.
        With none of ``TQ_STREAM``, ``TQ_QUEUE_URL`` or a ``TQ_SQS_QUEUES`` mapping set: the
        embedded default."""
        from tq_aws.backends.aws.env import settings_from_env

        if "max_deliveries" not in options:
            bound = max_deliveries_from_env(os.environ)
            if bound is not UNSET:
                options["max_deliveries"] = bound
        config = settings_from_env()
        if config is None:
            return cls(clock=clock, **options)
        return cls.aws(clock=clock, **config, **options)

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
            queue_id: the queue of the tasks it runs.
            type: the type of the tasks it runs.
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

    def add_listener(
        self, listener: LifecycleListener | object, *, mode: LifecycleMode = "async"
    ) -> None:
        """Send lifecycle events to ``listener``: any object with some ``on_<event>`` methods,
        plain or ``async def`` (``tq_aws.LifecycleListener`` names them; the events are in
        ``tq_aws.core.lifecycle.events``). By default an ``async def`` method runs in the
        background; ``mode="sync"`` awaits it before the engine goes on. A listener that
        raises never disturbs processing (``app.events.failures`` counts it). Adding the
        same object twice adds it once."""
        self.events.add(listener, mode=mode)

    def lambda_handler(self, **options: Any) -> Callable[[dict[str, Any], Any], dict[str, Any]]:
        """The AWS Lambda entry point: ``handler(event, context)`` runs the event of a Kinesis
        or SQS event source mapping and returns ``{"batchItemFailures": [...]}``. Options
        (``sub_batch_size``, ``safety_margin``, ``logger``, ``metrics``, ``tracer``...): see
        ``tq_aws.runtimes.aws_lambda.handler.LambdaHandler``."""
        from tq_aws.runtimes.aws_lambda.handler import LambdaHandler

        return LambdaHandler(self, **options)

    # -- status page (tq_aws.status sits above the app; imported when asked for) -----------

    def serve_status(
        self, host: str = "127.0.0.1", port: int = 0, token: str | None = None
    ) -> StatusServer:
        """Serve the status page and API (``tq_aws.status``) on ``host:port`` in a background
        thread; ``port=0`` lets the OS choose. Returns the server: ``server.url``,
        ``server.stop()``. Works from synchronous code and from inside a running event loop
        (the queries run on the app's private loop, never on the caller's).

        Args:
            host: where to listen; keep the default (loopback) unless a token is set.
            port: the port, 0 for any free one.
            token: require ``Authorization: Bearer <token>`` on every request (a browser signs
                in once with a form); operator actions (retry, cancel, redrive) are refused
                without it.
        """
        from tq_aws.status import serve_status

        return serve_status(self, host, port, token)

    def status_handler(
        self, *, token: str | None = None
    ) -> Callable[[dict[str, Any], Any], dict[str, Any]]:
        """The status page's AWS Lambda entry point: a plain synchronous
        ``handler(event, context)`` for function URL (or HTTP API payload 2.0) events, returning
        the response dict. Behind the function URL's ``AWS_IAM`` auth the caller's identity
        (``requestContext.authorizer.iam``) is trusted for operator actions; with ``token``
        every request also needs ``Authorization: Bearer <token>``."""
        from tq_aws.status import status_handler

        return status_handler(self, token=token)
