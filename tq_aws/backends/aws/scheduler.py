"""Scheduler port on AWS: SQS ``DelaySeconds`` for short delays on SQS routes, EventBridge
Scheduler one-time schedules for everything else.

A schedule's target is the stream (Kinesis ``PutRecord``) or the queue (SQS ``SendMessage``)
itself: no Lambda in between. Its input is the codec's JSON text of the task (schedule input is
text, so never the compressed form; over 256 KB, its payload goes to the blob store as for a
record). Names are deterministic (the engine's ``schedule_name``: ``<task id>.a<attempt>``, or a
digest of an id EventBridge would not take), so a repeated create is a no-op
(``ConflictException``), and ``ActionAfterCompletion=DELETE`` frees the name once the schedule
has fired.

EventBridge fires schedules by itself; nothing here polls. moto stores schedules but never fires
them: a scheduler built with ``simulate_firing=True`` (loopback endpoints only) gets a
``fire_due(now)`` method, so ``TaskQueue.run_until_idle`` drives it like the memory scheduler.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol

from botocore.exceptions import ClientError

from tq_aws.backends.aws.claim_check import fit_record
from tq_aws.backends.aws.clients import AwsClients, error_code
from tq_aws.backends.aws.routing import KinesisRoute, Routing, SqsRoute
from tq_aws.backends.aws.schedule_firing import (
    fire_due_in_group,
    next_due_in_group,
    perform_target_action,
)
from tq_aws.backends.aws.sqs import group_id_of
from tq_aws.backends.clock import SystemClock
from tq_aws.core.codec import encode_task
from tq_aws.core.limits import (
    SCHEDULE_MAX_INPUT_BYTES,
    SCHEDULE_MAX_NAME_CHARS,
    SQS_MAX_DELAY_SECONDS,
)
from tq_aws.core.task import Task, to_utc
from tq_aws.errors import (
    ConfigurationError,
    InvalidScheduleNameError,
    RecordTooLargeError,
    ScheduleInputTooLargeError,
)
from tq_aws.ports import BlobStore, Clock, ScheduledTask

logger = logging.getLogger(__name__)

# The service limits live in tq_aws.core.limits; these names stay for importers.
MAX_SQS_DELAY_SECONDS = SQS_MAX_DELAY_SECONDS
MAX_SCHEDULE_INPUT_BYTES = SCHEDULE_MAX_INPUT_BYTES

DEFAULT_MAX_EVENT_AGE_SECONDS = 86_400
DEFAULT_MAX_RETRY_ATTEMPTS = 185

_NAME = re.compile(rf"[0-9A-Za-z_.\-]{{1,{SCHEDULE_MAX_NAME_CHARS}}}")


class SqsDelaySender(Protocol):
    """Sends one task to its SQS queue with ``DelaySeconds`` (0..900, standard queues)."""

    async def send_delayed(self, task: Task, delay_seconds: int) -> None: ...


def validate_schedule_name(name: str, *, field: str = "name") -> None:
    """Raise ``InvalidScheduleNameError`` unless ``name`` is 1..64 of ``[0-9A-Za-z-_.]``."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidScheduleNameError(
            f"schedule {field} {name!r} is not valid: EventBridge Scheduler accepts 1 to 64 "
            "characters of letters, digits, '-', '_' and '.'; use a shorter id without other "
            "characters",
            name=str(name),
        )


def at_expression(when: datetime) -> str:
    """``at(YYYY-MM-DDTHH:MM:SS)`` in UTC, rounded up to the second so it never fires early."""
    when = to_utc(when)
    if when.microsecond:
        when = when.replace(microsecond=0) + timedelta(seconds=1)
    return f"at({when.strftime('%Y-%m-%dT%H:%M:%S')})"


def schedule_input(task: Task) -> str:
    """The schedule's input: the codec's uncompressed JSON text of ``task``."""
    return encode_task(task).decode("utf-8")


class EventBridgeScheduler:
    """Scheduler port on SQS ``DelaySeconds`` and EventBridge Scheduler.

    An entry goes to SQS ``DelaySeconds`` when its task's queue id routes to a standard SQS
    queue, its delay is at most 900 s, a ``sqs_delay`` sender is given and SQS delays are on;
    an entry already due goes straight to its stream or queue; any other entry becomes a
    one-time schedule in ``group``.

    Args:
        clients: AWS clients (``scheduler``, ``kinesis``, ``sqs``).
        routing: maps a task's queue id to its stream or queue.
        group: the schedule group; it must exist (moto answers HTTP 500 for a missing group,
            AWS ``ResourceNotFoundException``), so whoever builds the scheduler creates it.
        role_arn: the role EventBridge Scheduler assumes to call ``kinesis:PutRecord`` or
            ``sqs:SendMessage`` on the targets.
        clock: the source of "now"; delays are measured against it.
        sqs_delay: sends a task with ``DelaySeconds`` (the SQS transport's ``send_delayed``).
        use_sqs_delays: ``None`` (default): on only with the real clock (``SystemClock``),
            since SQS counts real seconds that a manual clock cannot drive.
        dead_letter_arn: an SQS queue ARN for deliveries EventBridge gave up on.
        max_event_age_seconds, max_retry_attempts: the schedules' ``RetryPolicy``
            (60..86400 and 0..185).
        max_input_bytes: largest schedule input accepted (the EventBridge Scheduler limit).
        concurrency: how many API calls one ``schedule``/``cancel`` makes at once.
        simulate_firing: give the scheduler a ``fire_due(now)`` (and ``next_due()``) that
            performs due schedules itself, for emulators that never fire them (moto). Only for
            loopback endpoints; on AWS, EventBridge fires them.
        blob_store: where the payload of a task whose JSON is over ``max_input_bytes`` goes
            (claim check, as for records); without one, such a task raises
            ``ScheduleInputTooLargeError``.

    Example:
        >>> scheduler = EventBridgeScheduler(
        ...     clients, Routing(stream="tq-tasks"), group="tq", role_arn=role, clock=clock
        ... )
        >>> await scheduler.schedule([ScheduledTask(at=later, name="t-1.a0", task=task)])
    """

    fire_due: Callable[[datetime], Awaitable[int]]
    """Only when built with ``simulate_firing=True``: perform the schedules due at ``now`` and
    return how many fired. Absent otherwise, so ``TaskQueue.run_until_idle`` does not poll."""

    next_due: Callable[[], datetime | None]
    """Only when built with ``simulate_firing=True``: the earliest pending schedule's time."""

    def __init__(
        self,
        clients: AwsClients,
        routing: Routing,
        *,
        group: str,
        role_arn: str,
        clock: Clock,
        sqs_delay: SqsDelaySender | None = None,
        use_sqs_delays: bool | None = None,
        dead_letter_arn: str | None = None,
        max_event_age_seconds: int = DEFAULT_MAX_EVENT_AGE_SECONDS,
        max_retry_attempts: int = DEFAULT_MAX_RETRY_ATTEMPTS,
        max_input_bytes: int = MAX_SCHEDULE_INPUT_BYTES,
        concurrency: int = 16,
        simulate_firing: bool = False,
        blob_store: BlobStore | None = None,
    ):
        validate_schedule_name(group, field="group")
        if not role_arn or not role_arn.startswith("arn:"):
            raise ConfigurationError(
                f"role_arn={role_arn!r}; give the ARN of the role EventBridge Scheduler "
                "assumes to send to the stream or queue (arn:aws:iam::<account>:role/<name>)"
            )
        if not 60 <= max_event_age_seconds <= 86_400:
            raise ConfigurationError(
                f"max_event_age_seconds={max_event_age_seconds!r}; give 60..86400"
            )
        if not 0 <= max_retry_attempts <= 185:
            raise ConfigurationError(f"max_retry_attempts={max_retry_attempts!r}; give 0..185")
        if max_input_bytes < 1:
            raise ConfigurationError(f"max_input_bytes={max_input_bytes!r}; give >= 1")
        if concurrency < 1:
            raise ConfigurationError(f"concurrency={concurrency!r}; give >= 1")
        if simulate_firing and not clients.settings.is_local:
            raise ConfigurationError(
                "simulate_firing=True is only for a local emulator endpoint (moto); on AWS, "
                "EventBridge fires schedules itself"
            )
        self.clients = clients
        self.routing = routing
        self.group = group
        self.role_arn = role_arn
        self.clock = clock
        self.dead_letter_arn = dead_letter_arn
        self._sqs_delay = sqs_delay
        self.use_sqs_delays = (
            isinstance(clock, SystemClock) if use_sqs_delays is None else use_sqs_delays
        )
        self._retry_policy = {
            "MaximumEventAgeInSeconds": max_event_age_seconds,
            "MaximumRetryAttempts": max_retry_attempts,
        }
        self.max_input_bytes = max_input_bytes
        self.blob_store = blob_store
        self._concurrency = concurrency
        self._arns: dict[tuple[str, str], str] = {}
        self._arn_lookups: dict[tuple[str, str], asyncio.Future[str]] = {}
        if simulate_firing:
            self.fire_due = self._fire_due
            self.next_due = self._next_due

    # -- the port -------------------------------------------------------------------------

    async def schedule(self, entries: Sequence[ScheduledTask]) -> None:
        """Deliver each entry's task at (never before) its ``at``.

        Every entry is checked before anything is sent: an invalid name raises
        ``InvalidScheduleNameError`` and an input over the limit ``ScheduleInputTooLargeError``.
        A schedule of a name already pending is a no-op."""
        now = self.clock.now()
        jobs: list[Callable[[], Awaitable[None]]] = []
        planned: list[tuple[ScheduledTask, KinesisRoute | SqsRoute, str, int, float]] = []
        for entry in entries:
            validate_schedule_name(entry.name)
            task = entry.task
            route = self.routing.route(task.queue_id)
            delay = (to_utc(entry.at) - now).total_seconds()
            if (
                isinstance(route, SqsRoute)
                and not route.fifo
                and self._sqs_delay is not None
                and self.use_sqs_delays
                and delay <= MAX_SQS_DELAY_SECONDS
            ):
                jobs.append(self._send_delayed_job(task, max(0, math.ceil(delay))))
                continue
            text = schedule_input(task)
            size = len(text.encode("utf-8"))
            if size > self.max_input_bytes and self.blob_store is None:
                raise self._too_large(entry, size)
            planned.append((entry, route, text, size, delay))
        for entry, route, text, size, delay in planned:
            if size > self.max_input_bytes:
                text = await self._fit(entry, size)
            if delay <= 0:
                jobs.append(self._deliver_now_job(route, entry.task, text))
            else:
                jobs.append(self._create_job(entry, route, text))
        await self._bounded(jobs)

    def _too_large(self, entry: ScheduledTask, size: int) -> ScheduleInputTooLargeError:
        return ScheduleInputTooLargeError(
            f"task {entry.task.id!r} (schedule {entry.name!r}) is {size} bytes as JSON; "
            f"EventBridge Scheduler takes at most {self.max_input_bytes} bytes of input: give "
            "the scheduler a blob store (blob_store=, the claim check) to keep the payload, or "
            "shrink the task",
            task_id=entry.task.id,
            name=entry.name,
            size=size,
            limit=self.max_input_bytes,
        )

    async def _fit(self, entry: ScheduledTask, size: int) -> str:
        """The input of a task over the limit with its payload in the blob store (the engine
        reads it back at delivery, as for a record)."""

        def encode(task: Task) -> tuple[str, int]:
            text = schedule_input(task)
            return text, len(text.encode("utf-8"))

        try:
            return await fit_record(
                entry.task,
                encode,
                limit=self.max_input_bytes,
                blob_store=self.blob_store,
                what="schedule input",
            )
        except RecordTooLargeError as exc:
            raise self._too_large(entry, exc.size) from exc

    async def cancel(self, names: Sequence[str]) -> None:
        """Delete the pending schedules of these names; unknown or fired ones are ignored.

        A delivery already handed to SQS ``DelaySeconds`` cannot be withdrawn: the task store's
        ``cancelled`` status stops it when it arrives."""
        client = await self.clients.get("scheduler")

        def job(name: str) -> Callable[[], Awaitable[None]]:
            async def run() -> None:
                try:
                    await client.delete_schedule(Name=name, GroupName=self.group)
                except ClientError as exc:
                    if error_code(exc) != "ResourceNotFoundException":
                        raise

            return run

        # A name EventBridge would reject cannot exist, so there is nothing to delete.
        await self._bounded([job(n) for n in names if isinstance(n, str) and _NAME.fullmatch(n)])

    # -- pieces ---------------------------------------------------------------------------

    def _send_delayed_job(self, task: Task, seconds: int) -> Callable[[], Awaitable[None]]:
        sender = self._sqs_delay
        assert sender is not None

        async def run() -> None:
            await sender.send_delayed(task, seconds)

        return run

    def _deliver_now_job(
        self, route: KinesisRoute | SqsRoute, task: Task, text: str
    ) -> Callable[[], Awaitable[None]]:
        # Already due: do what the schedule's target would do, without a schedule in between.
        async def run() -> None:
            url = route.queue_url if isinstance(route, SqsRoute) else None
            target = await self._target(route, task)
            await perform_target_action(self.clients, target, text, queue_url=url)

        return run

    def _create_job(
        self, entry: ScheduledTask, route: KinesisRoute | SqsRoute, text: str
    ) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            target = await self._target(route, entry.task)
            target["Input"] = text
            client = await self.clients.get("scheduler")
            try:
                await client.create_schedule(
                    Name=entry.name,
                    GroupName=self.group,
                    ScheduleExpression=at_expression(entry.at),
                    ScheduleExpressionTimezone="UTC",
                    FlexibleTimeWindow={"Mode": "OFF"},
                    ActionAfterCompletion="DELETE",
                    State="ENABLED",
                    Target=target,
                )
            except ClientError as exc:
                if error_code(exc) != "ConflictException":  # same name pending: already scheduled
                    raise

        return run

    async def _target(self, route: KinesisRoute | SqsRoute, task: Task) -> dict[str, Any]:
        key = task.partition_key or task.id or task.type
        target: dict[str, Any] = {
            "RoleArn": self.role_arn,
            "RetryPolicy": dict(self._retry_policy),
        }
        if self.dead_letter_arn:
            target["DeadLetterConfig"] = {"Arn": self.dead_letter_arn}
        if isinstance(route, KinesisRoute):
            target["Arn"] = await self._stream_arn(route.stream)
            target["KinesisParameters"] = {"PartitionKey": key}
        else:
            target["Arn"] = await self._queue_arn(route.queue_url)
            if route.fifo:  # the group the SQS transport would give it
                target["SqsParameters"] = {"MessageGroupId": group_id_of(task)}
        return target

    async def _stream_arn(self, stream: str) -> str:
        async def look_up() -> str:
            kinesis = await self.clients.get("kinesis")
            summary = await kinesis.describe_stream_summary(StreamName=stream)
            return str(summary["StreamDescriptionSummary"]["StreamARN"])

        return await self._arn(("kinesis", stream), look_up)

    async def _arn(self, key: tuple[str, str], look_up: Callable[[], Awaitable[str]]) -> str:
        # One look-up per resource, however many schedules ask at once (DescribeStreamSummary
        # is limited to 20 calls a second per account).
        cached = self._arns.get(key)
        if cached is not None:
            return cached
        pending = self._arn_lookups.get(key)
        if pending is None:
            pending = asyncio.ensure_future(look_up())
            self._arn_lookups[key] = pending
        try:
            arn = await asyncio.shield(pending)
        finally:
            if pending.done():
                self._arn_lookups.pop(key, None)
        self._arns[key] = arn
        return arn

    async def _queue_arn(self, queue_url: str) -> str:
        async def look_up() -> str:
            sqs = await self.clients.get("sqs")
            attrs = await sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])
            return str(attrs["Attributes"]["QueueArn"])

        return await self._arn(("sqs", queue_url), look_up)

    async def _bounded(self, jobs: Sequence[Callable[[], Awaitable[None]]]) -> None:
        if not jobs:
            return
        if len(jobs) == 1:
            await jobs[0]()
            return
        gate = asyncio.Semaphore(self._concurrency)

        async def gated(job: Callable[[], Awaitable[None]]) -> None:
            async with gate:
                await job()

        results = await asyncio.gather(*(gated(j) for j in jobs), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result

    # -- simulated firing (emulators only) ------------------------------------------------

    async def _fire_due(self, now: datetime) -> int:
        return await fire_due_in_group(self.clients, self.group, now)

    def _next_due(self) -> datetime | None:
        return next_due_in_group(self.clients, self.group)


__all__ = [
    "MAX_SCHEDULE_INPUT_BYTES",
    "MAX_SQS_DELAY_SECONDS",
    "EventBridgeScheduler",
    "InvalidScheduleNameError",
    "ScheduleInputTooLargeError",
    "SqsDelaySender",
    "at_expression",
    "schedule_input",
    "validate_schedule_name",
]
