"""Performing EventBridge Scheduler targets ourselves: the test helper for moto.

moto stores schedules but never fires them (and SQS ``DelaySeconds`` counts real seconds, which
a ``ManualClock`` cannot drive). ``fire_due_schedules`` does what EventBridge would do at the
clock's now: for every one-time ``at(...)`` schedule of the group that is due, the target's
action (Kinesis ``PutRecord`` of the input with the target's partition key, or SQS
``SendMessage`` of the input, with the message group id on FIFO queues), then the schedule is
gone (``ActionAfterCompletion=DELETE``).

Test-only: on AWS, EventBridge fires schedules by itself and nothing should call this.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from botocore.exceptions import ClientError

from tq_aws.backends.aws.clients import error_code
from tq_aws.core.task import to_utc
from tq_aws.errors import ConfigurationError

if TYPE_CHECKING:
    from tq_aws.backends.aws.clients import AwsClients
    from tq_aws.ports import Clock

logger = logging.getLogger(__name__)

_AT = re.compile(r"^at\((\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})\)$")


def parse_at_expression(expression: str, timezone: str | None = "UTC") -> datetime | None:
    """The UTC time of a one-time ``at(YYYY-MM-DDTHH:MM:SS)`` expression in ``timezone``;
    ``None`` for any other expression (``rate``, ``cron``)."""
    match = _AT.match(expression.strip())
    if match is None:
        return None
    local = datetime.strptime(match.group(1), "%Y-%m-%dT%H:%M:%S")
    return to_utc(local.replace(tzinfo=ZoneInfo(timezone or "UTC")))


async def perform_target_action(
    clients: AwsClients, target: dict[str, Any], text: str, *, queue_url: str | None = None
) -> None:
    """Do what EventBridge Scheduler does for a Kinesis or SQS templated target.

    Args:
        clients: AWS clients.
        target: the schedule's ``Target`` (``Arn`` and ``KinesisParameters`` /
            ``SqsParameters``).
        text: the input to send (record data or message body).
        queue_url: the queue's URL when the caller knows it (saves a ``GetQueueUrl``).
    """
    arn = str(target["Arn"])
    parts = arn.split(":", 5)
    service = parts[2] if len(parts) == 6 else ""
    if service == "kinesis":
        key = (target.get("KinesisParameters") or {}).get("PartitionKey")
        if not key:
            raise ConfigurationError(
                f"schedule target {arn} has no KinesisParameters.PartitionKey; give one"
            )
        kinesis = await clients.get("kinesis")
        await kinesis.put_record(StreamARN=arn, Data=text.encode("utf-8"), PartitionKey=key)
    elif service == "sqs":
        sqs = await clients.get("sqs")
        if queue_url is None:
            account, name = parts[4], parts[5]
            found = await sqs.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account)
            queue_url = str(found["QueueUrl"])
        extra: dict[str, Any] = {}
        group = (target.get("SqsParameters") or {}).get("MessageGroupId")
        if group:
            # As EventBridge does: no deduplication id, so a FIFO target queue needs
            # content-based deduplication.
            extra["MessageGroupId"] = group
        await sqs.send_message(QueueUrl=queue_url, MessageBody=text, **extra)
    else:
        raise ConfigurationError(
            f"schedule target {arn!r} is neither a Kinesis stream nor an SQS queue"
        )


async def _bounded_gather(
    jobs: Sequence[Callable[[], Awaitable[Any]]], concurrency: int
) -> list[Any]:
    gate = asyncio.Semaphore(concurrency)

    async def gated(job: Callable[[], Awaitable[Any]]) -> Any:
        async with gate:
            return await job()

    return list(await asyncio.gather(*(gated(j) for j in jobs)))


async def _schedule_details(client: Any, group: str, concurrency: int) -> list[dict[str, Any]]:
    names: list[str] = []
    paginator = client.get_paginator("list_schedules")
    async for page in paginator.paginate(GroupName=group):
        names.extend(
            s["Name"] for s in page.get("Schedules", []) if s.get("State", "ENABLED") == "ENABLED"
        )

    def get(name: str) -> Callable[[], Awaitable[dict[str, Any] | None]]:
        async def run() -> dict[str, Any] | None:
            try:
                return dict(await client.get_schedule(Name=name, GroupName=group))
            except ClientError as exc:
                if error_code(exc) == "ResourceNotFoundException":  # fired or deleted meanwhile
                    return None
                raise

        return run

    found = await _bounded_gather([get(n) for n in names], concurrency)
    return [d for d in found if d is not None]


async def fire_due_in_group(
    clients: AwsClients, group: str, now: datetime, *, concurrency: int = 16
) -> int:
    """Fire every one-time schedule of ``group`` due at ``now``, earliest first (ties in
    creation order); return how many fired.

    Each schedule is deleted before its action runs, so two concurrent callers never fire the
    same schedule twice; if the action fails, the schedule is created again and the error
    raised."""
    now = to_utc(now)
    client = await clients.get("scheduler")
    due: list[tuple[datetime, Any, str, dict[str, Any]]] = []
    for detail in await _schedule_details(client, group, concurrency):
        at = parse_at_expression(
            str(detail.get("ScheduleExpression", "")), detail.get("ScheduleExpressionTimezone")
        )
        if at is not None and at <= now:
            created = detail.get("CreationDate")
            created = created if isinstance(created, datetime) else at
            due.append((at, created, detail["Name"], detail))
    due.sort(key=lambda d: (d[0], d[1], d[2]))
    fired = 0
    for _, _, name, detail in due:
        try:
            await client.delete_schedule(Name=name, GroupName=group)
        except ClientError as exc:
            if error_code(exc) == "ResourceNotFoundException":  # another caller fired it
                continue
            raise
        target = dict(detail["Target"])
        try:
            await perform_target_action(clients, target, str(target.get("Input", "")))
        except BaseException:
            with contextlib.suppress(Exception):
                await client.create_schedule(**_recreate_args(detail, group))
            raise
        fired += 1
    return fired


def _recreate_args(detail: dict[str, Any], group: str) -> dict[str, Any]:
    args: dict[str, Any] = {
        "Name": detail["Name"],
        "GroupName": group,
        "ScheduleExpression": detail["ScheduleExpression"],
        "FlexibleTimeWindow": detail.get("FlexibleTimeWindow") or {"Mode": "OFF"},
        "Target": detail["Target"],
    }
    for key in ("ScheduleExpressionTimezone", "ActionAfterCompletion", "State", "Description"):
        if detail.get(key):
            args[key] = detail[key]
    return args


def next_due_in_group(clients: AwsClients, group: str) -> datetime | None:
    """When the earliest one-time schedule of ``group`` is due, or ``None`` (synchronous: it
    backs ``TaskQueue.next_due`` on an emulator)."""
    client = clients.sync("scheduler")
    earliest: datetime | None = None
    for page in client.get_paginator("list_schedules").paginate(GroupName=group):
        for summary in page.get("Schedules", []):
            if summary.get("State", "ENABLED") != "ENABLED":
                continue
            try:
                detail = client.get_schedule(Name=summary["Name"], GroupName=group)
            except ClientError as exc:
                if error_code(exc) == "ResourceNotFoundException":
                    continue
                raise
            at = parse_at_expression(
                str(detail.get("ScheduleExpression", "")),
                detail.get("ScheduleExpressionTimezone"),
            )
            if at is not None and (earliest is None or at < earliest):
                earliest = at
    return earliest


async def fire_due_schedules(
    app_or_scheduler: Any = None,
    now: datetime | None = None,
    *,
    clients: AwsClients | None = None,
    group: str | None = None,
    clock: Clock | None = None,
) -> int:
    """Test-only: fire the EventBridge schedules due at ``now`` (moto never fires them).

    Performs each due schedule's target action (Kinesis ``PutRecord`` / SQS ``SendMessage`` of
    its input), earliest first, and deletes it; returns how many fired.

    Either ``await fire_due_schedules(app)`` with a TaskQueue whose ``scheduler`` is an
    ``EventBridgeScheduler`` (or with the scheduler itself): clients, group and clock come from
    it; or with explicit parts: ``await fire_due_schedules(clients=..., group=..., now=...)``
    (or ``clock=...`` instead of ``now``).

    Args:
        app_or_scheduler: a TaskQueue or an ``EventBridgeScheduler``; ``None`` with parts.
        now: the time to fire at; defaults to the clock's now.
        clients: explicit AWS clients (override the app's).
        group: explicit schedule group (overrides the app's).
        clock: explicit clock whose now is used when ``now`` is not given (overrides the
            app's).
    """
    if app_or_scheduler is not None:
        scheduler = getattr(app_or_scheduler, "scheduler", app_or_scheduler)
        if not all(hasattr(scheduler, a) for a in ("clients", "group", "clock")):
            raise ConfigurationError(
                f"fire_due_schedules needs a TaskQueue built on EventBridgeScheduler (or the "
                f"scheduler itself); got {type(scheduler).__name__}: pass clients=, group= "
                "and now= instead"
            )
        clients = clients or scheduler.clients
        group = group or scheduler.group
        clock = clock or getattr(app_or_scheduler, "clock", None) or scheduler.clock
    if clients is None or not group:
        raise ConfigurationError("fire_due_schedules: give an app, or clients= and group=")
    if now is None:
        if clock is None:
            raise ConfigurationError("fire_due_schedules: give now= or clock=")
        now = clock.now()
    return await fire_due_in_group(clients, group, now)


__all__ = [
    "fire_due_in_group",
    "fire_due_schedules",
    "next_due_in_group",
    "parse_at_expression",
    "perform_target_action",
]
