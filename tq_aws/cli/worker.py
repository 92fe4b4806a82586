"""``tq-aws worker``: the ECS worker on the app's AWS resources, or ``--local``: the app's own
backends polled in this process."""

from __future__ import annotations

import asyncio
import enum
import logging
from typing import Annotated

import typer

from tq_aws.app import TaskQueue
from tq_aws.cli import logs
from tq_aws.cli.loading import AppOption, AwsOption, resolve_app, usage_error
from tq_aws.cli.signals import StopSignals

logger = logging.getLogger(__name__)

ECS = "AWS worker (without --local)"


class InitialPosition(enum.StrEnum):
    TRIM_HORIZON = "TRIM_HORIZON"
    LATEST = "LATEST"


def executors(app: TaskQueue) -> str:
    names = sorted(f"{spec.queue_id}/{spec.type}" for spec in app.registry)
    return ", ".join(names) if names else "none registered"


def backends(app: TaskQueue) -> str:
    """What the app runs on, in words: its AWS resources, or its backends' classes."""
    from tq_aws.backends.aws.factory import AwsResources
    from tq_aws.cli.aws_checks import where

    resources = app.resources
    if isinstance(resources, AwsResources):
        parts = []
        if resources.routing.stream:
            parts.append(f"Kinesis stream {resources.routing.stream}")
        parts += [f"SQS queue {url}" for url in resources.routing.queue_urls()]
        parts.append(f"DynamoDB table {resources.table}")
        if resources.bucket:
            parts.append(f"S3 bucket {resources.bucket}")
        parts.append(f"schedule group {resources.scheduler_group}")
        return f"AWS ({where(resources)}): " + ", ".join(parts)
    classes = [type(app.transport), type(app.task_store), type(app.scheduler)]
    names = ", ".join(c.__name__ for c in classes)
    if all(c.__module__.startswith("tq_aws.backends.memory") for c in classes):
        return f"the embedded in-memory default ({names}; gone when the process ends)"
    return names


async def _local(app: TaskQueue, spec: str, grace_seconds: float) -> None:
    from tq_aws.cli.local import run_local

    source = app.source
    if source is None:
        usage_error(f"worker --local --app {spec}: the app has no polling source to run from")
    stop = asyncio.Event()
    try:
        with StopSignals(stop.set, "stopping after the batch in hand"):
            typer.echo(
                f"tq-aws worker --local: running {spec} (executors: {executors(app)}) on "
                f"{backends(app)}, batches of up to {app.batch_size}; "
                "SIGINT/SIGTERM stop after the batch in hand"
            )
            batches = await run_local(app, source, stop, grace_seconds=grace_seconds)
    finally:
        await app.aclose()
    typer.echo(f"tq-aws worker --local: stopped after {batches} batch(es)")


async def _ecs(app: TaskQueue, spec: str, **options: object) -> None:
    from tq_aws.backends.aws.factory import AwsResources
    from tq_aws.cli.aws_checks import aws_problems, where
    from tq_aws.errors import ConfigurationError
    from tq_aws.runtimes.ecs import EcsWorker

    try:
        worker = EcsWorker(app, **options)  # type: ignore[arg-type]
    except ConfigurationError as exc:
        usage_error(f"worker --app {spec}: {exc} (or use --local)")
    try:
        resources = app.resources
        if isinstance(resources, AwsResources):
            problems = await aws_problems(resources)
            if problems:
                typer.echo(f"tq-aws worker: cannot start on AWS ({where(resources)}):", err=True)
                for problem in problems:
                    typer.echo(f"  - {problem}", err=True)
                raise typer.Exit(1)
        with StopSignals(worker.request_stop, "draining (running batches finish)"):
            await worker.run()
    finally:
        await app.aclose()


def worker(
    app: AppOption = None,
    local: Annotated[
        bool, typer.Option("--local", help="run in-process on the app's own backends")
    ] = False,
    aws: AwsOption = False,
    worker_id: Annotated[
        str | None,
        typer.Option(help="lease owner name (default: <host>-<pid>-<ms>)", rich_help_panel=ECS),
    ] = None,
    lease_seconds: Annotated[float, typer.Option(help="lease length", rich_help_panel=ECS)] = 10.0,
    renew_every: Annotated[
        float, typer.Option(help="lease round period", rich_help_panel=ECS)
    ] = 3.0,
    poll_interval: Annotated[
        float, typer.Option(help="wait when a shard is caught up", rich_help_panel=ECS)
    ] = 1.0,
    sqs_wait_seconds: Annotated[int, typer.Option(help="SQS long poll", rich_help_panel=ECS)] = 20,
    sqs_visibility_timeout: Annotated[
        int, typer.Option(help="SQS visibility, extended while a batch runs", rich_help_panel=ECS)
    ] = 60,
    heartbeat_every: Annotated[
        float | None, typer.Option(help="visibility extension period", rich_help_panel=ECS)
    ] = None,
    grace_seconds: Annotated[
        float, typer.Option(help="drain time after SIGTERM (handed-off tasks with --local)")
    ] = 30.0,
    shard_refresh_seconds: Annotated[
        float, typer.Option(help="shard listing period", rich_help_panel=ECS)
    ] = 30.0,
    initial_position: Annotated[
        InitialPosition,
        typer.Option(help="where shards without a checkpoint are read from", rich_help_panel=ECS),
    ] = InitialPosition.TRIM_HORIZON,
) -> None:
    """Run a worker: the ECS worker on the app's AWS resources, or --local in this process.

    On AWS: Kinesis shards under DynamoDB leases and SQS long polling, after a check of the
    credentials and every resource. With --local: the app's own backends, one batch at a time.
    SIGINT/SIGTERM stop it cleanly (the batch in hand finishes); a second one stops it at once.
    """
    if app is None:
        usage_error("worker: give --app module:attribute (or set TQ_APP): the executors to run")
    queue = resolve_app(app, aws)
    with logs.configured():
        if local:
            asyncio.run(_local(queue, app, grace_seconds))
            return
        asyncio.run(
            _ecs(
                queue,
                app,
                worker_id=worker_id,
                lease_seconds=lease_seconds,
                renew_every=renew_every,
                poll_interval=poll_interval,
                sqs_wait_seconds=sqs_wait_seconds,
                sqs_visibility_timeout=sqs_visibility_timeout,
                heartbeat_every=heartbeat_every,
                grace_seconds=grace_seconds,
                shard_refresh_seconds=shard_refresh_seconds,
                initial_position=initial_position.value,
            )
        )


__all__ = ["InitialPosition", "backends", "executors", "worker"]
