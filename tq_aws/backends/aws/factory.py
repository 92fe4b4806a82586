"""The AWS backends of an app: ``AwsConfig`` (what ``TaskQueue.aws`` takes) to a ``Ports``
bundle and the ``AwsResources`` behind it. It knows ports and backends only, never the engine.

``TaskQueue.aws(...)`` imports this module lazily, and ``TaskQueue.from_env()`` only when a
``TQ_*`` variable names AWS resources (``tq_aws.backends.aws.env`` reads them without any
SDK), so the memory path never imports an AWS SDK.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from botocore.exceptions import ClientError

from tq_aws.backends.aws import dynamodb
from tq_aws.backends.aws.clients import AwsClients, AwsSettings, error_code
from tq_aws.backends.aws.env import ENV_PREFIX, settings_from_env
from tq_aws.backends.aws.routed import CombinedSource, RoutedTransport
from tq_aws.backends.aws.routing import Routing
from tq_aws.backends.aws.s3 import S3BlobStore
from tq_aws.backends.aws.scheduler import EventBridgeScheduler
from tq_aws.backends.memory import MemoryBlobStore
from tq_aws.core.limits import MAX_RECORD_BYTES
from tq_aws.errors import ConfigurationError
from tq_aws.ports import Clock, Ports

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class AwsResources:
    """What an AWS TaskQueue uses, and how to create what is missing (development and tests;
    production creates them with the SAM or CDK templates)."""

    settings: AwsSettings
    clients: AwsClients
    routing: Routing
    table: str
    bucket: str | None
    scheduler_group: str
    blob_store: S3BlobStore | None

    async def aclose(self) -> None:
        """Close the clients opened on the running event loop."""
        await self.clients.aclose()

    async def ensure(self) -> None:
        """Create the stream, queues, table, bucket and schedule group if they are missing."""
        await asyncio.gather(
            self._ensure_stream(),
            self._ensure_queues(),
            asyncio.to_thread(dynamodb.ensure_table, self.table, self.settings),
            self._ensure_bucket(),
            self._ensure_schedule_group(),
        )

    async def _ensure_stream(self) -> None:
        if not self.routing.stream:
            return
        kinesis = await self.clients.get("kinesis")
        try:
            await kinesis.describe_stream_summary(StreamName=self.routing.stream)
            return
        except ClientError as exc:
            if error_code(exc) != "ResourceNotFoundException":
                raise
        await kinesis.create_stream(
            StreamName=self.routing.stream, StreamModeDetails={"StreamMode": "ON_DEMAND"}
        )
        waiter = kinesis.get_waiter("stream_exists")
        await waiter.wait(StreamName=self.routing.stream, WaiterConfig={"Delay": 1})

    async def _ensure_queues(self) -> None:
        sqs = await self.clients.get("sqs")
        for url in self.routing.queue_urls():
            name = url.rstrip("/").rsplit("/", 1)[-1]
            # EventBridge Scheduler sends no deduplication id to a FIFO target: the queue must
            # deduplicate by content for scheduled deliveries to be accepted
            attributes = (
                {"FifoQueue": "true", "ContentBasedDeduplication": "true"}
                if name.endswith(".fifo")
                else {}
            )
            await sqs.create_queue(QueueName=name, Attributes=attributes)

    async def _ensure_bucket(self) -> None:
        if self.blob_store is not None:
            await self.blob_store.ensure_bucket()

    async def _ensure_schedule_group(self) -> None:
        scheduler = await self.clients.get("scheduler")
        try:
            await scheduler.create_schedule_group(Name=self.scheduler_group)
        except ClientError as exc:
            if error_code(exc) != "ConflictException":
                raise


@dataclass(frozen=True, slots=True)
class AwsConfig:
    """Where an app's AWS backends are; the arguments of ``TaskQueue.aws`` (documented there)."""

    stream: str | None
    queue_url: str | None
    table: str
    bucket: str | None
    scheduler_group: str
    scheduler_role_arn: str | None
    region: str
    endpoint_url: str | None
    sqs_queues: Mapping[str, str] | Iterable[str] | None
    compress_over: int | None
    max_record_bytes: int
    fire_schedules: bool | None
    scheduler_dead_letter_arn: str | None = None


def build(config: AwsConfig, clock: Clock) -> tuple[Ports, AwsResources]:
    """The ports of ``TaskQueue.aws`` and the resources behind them."""
    _check_names(stream=config.stream, bucket=config.bucket)
    settings = AwsSettings(region=config.region, endpoint_url=config.endpoint_url)
    clients = AwsClients(settings)
    routing = Routing(
        stream=config.stream, queue_url=config.queue_url, sqs_queues=config.sqs_queues
    )
    blob_store = S3BlobStore(config.bucket, clients) if config.bucket else None
    if not blob_store:
        logger.warning("no bucket= given: large payloads and results stay in this process only")
    transport = RoutedTransport.from_routing(
        routing,
        clients,
        blob_store=blob_store,
        compress_over=config.compress_over,
        max_record_bytes=config.max_record_bytes,
        # SQS takes at most 1 MiB
        max_message_bytes=min(config.max_record_bytes, MAX_RECORD_BYTES),
    )
    role = config.scheduler_role_arn or _default_role(settings)
    simulate = settings.is_local if config.fire_schedules is None else config.fire_schedules
    scheduler = EventBridgeScheduler(
        clients,
        routing,
        group=config.scheduler_group,
        role_arn=role,
        clock=clock,
        sqs_delay=transport if transport.sqs else None,  # sends each task to its own queue
        simulate_firing=simulate,
        dead_letter_arn=config.scheduler_dead_letter_arn,
        blob_store=blob_store,
    )
    table = dynamodb_table_name(config.table)
    stores = dynamodb.build_stores(table, settings, blob_store=blob_store, now=clock.now)
    ports = Ports(
        clock=clock,
        transport=transport,
        source=CombinedSource.from_routing(routing, clients),
        task_store=stores.tasks,
        projection_store=stores.projections,
        flow_store=stores.flows,
        poison_store=stores.poisons,
        scheduler=scheduler,
        blob_store=blob_store or MemoryBlobStore(),
    )
    resources = AwsResources(
        settings=settings,
        clients=clients,
        routing=routing,
        table=table,
        bucket=config.bucket,
        scheduler_group=config.scheduler_group,
        blob_store=blob_store,
    )
    return ports, resources


_STREAM_NAME = re.compile(r"[a-zA-Z0-9_.-]{1,128}")
_BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


def _check_names(*, stream: str | None, bucket: str | None) -> None:
    """Refuse names AWS would refuse later, naming the argument."""
    if stream is not None and not _STREAM_NAME.fullmatch(stream):
        raise ConfigurationError(
            f"stream={stream!r}: a Kinesis stream name is 1 to 128 of [a-zA-Z0-9_.-]"
        )
    if bucket is not None and (not _BUCKET_NAME.fullmatch(bucket) or ".." in bucket):
        raise ConfigurationError(
            f"bucket={bucket!r}: an S3 bucket name is 3 to 63 of lowercase letters, digits, "
            "dots and hyphens, starting and ending with a letter or digit"
        )


def dynamodb_table_name(table: str) -> str:
    """The DynamoDB table for ``table=``: the name itself, or, when it is too short to be a
    table name (DynamoDB wants 3 to 255 characters), a prefix: ``<table>-store``."""
    if not table:
        raise ConfigurationError("table is empty; give a DynamoDB table name or prefix")
    return table if len(table) >= 3 else f"{table}-store"


def _default_role(settings: AwsSettings) -> str:
    if settings.is_local:
        return "arn:aws:iam::123456789012:role/tq-scheduler"
    raise ConfigurationError(
        "scheduler_role_arn is required on AWS: the role EventBridge Scheduler assumes to put "
        "records on the stream or send to the queue (the templates create it)"
    )


__all__ = [
    "ENV_PREFIX",
    "AwsConfig",
    "AwsResources",
    "build",
    "dynamodb_table_name",
    "settings_from_env",
]
