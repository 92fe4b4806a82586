"""Transport pieces shared by the Kinesis and SQS backends, and the two ways of combining them.

- ``RoutedTransport`` implements the Transport port over several Kinesis and SQS transports:
  each task goes where ``Routing.route(task.queue_id)`` says, in publish order per partition
  key (a queue id always routes to one place, so every key's tasks of one queue id share one
  transport).
- ``CombinedSource`` implements the PollingSource port over several sources (a stream's
  shards and SQS queues), taking them in turn; acks and nacks go back to the source a record
  came from.
- ``send_in_order`` is the batched sender with per-record retries both transports use (see
  its docstring for the ordering rule), and ``fit_record`` the claim check for records over
  the transport's size limit.
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, TypeVar

import pydantic_core
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    EndpointConnectionError,
    ReadTimeoutError,
)

from tq_aws.backends.aws.routing import KinesisRoute, Routing, SqsRoute
from tq_aws.core.claim_check import MARKER, is_blob_ref
from tq_aws.core.task import Task
from tq_aws.errors import (
    ConfigurationError,
    InvalidPartitionKeyError,
    PublishError,
    RecordsNotPublishedError,
    RecordTooLargeError,
)
from tq_aws.ports import BlobStore, Delivery, PollingSource

if TYPE_CHECKING:
    from tq_aws.backends.aws.clients import AwsClients
    from tq_aws.backends.aws.kinesis import KinesisTransport, ShardStart
    from tq_aws.backends.aws.sqs import SqsTransport

logger = logging.getLogger(__name__)

MAX_BACKOFF_SECONDS = 5.0
"""Upper bound of one retry delay (before jitter)."""

MAX_CONCURRENT_CALLS = 8
"""Batch calls one ``send_in_order`` round makes at once."""

# Call-level error codes worth retrying: throttling and transient service faults. Other
# errors (validation, missing stream or queue, access) will not pass on a retry.
RETRYABLE_CALL_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "Throttling",
        "RequestThrottled",
        "KMSThrottlingException",
        "LimitExceededException",
        "InternalFailure",
        "InternalError",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "RequestTimeout",
        "AWS.SimpleQueueService.RequestThrottled",
    }
)


# -- errors ---------------------------------------------------------------------------------


# -- claim check ----------------------------------------------------------------------------

T = TypeVar("T")


async def fit_record(
    task: Task,
    encode: Callable[[Task], tuple[T, int]],
    *,
    limit: int,
    blob_store: BlobStore | None,
    what: str,
) -> T:
    """Encode ``task`` for the wire; when it is over ``limit`` bytes, keep its payload in the
    blob store under ``payloads/<task id>`` and send the task with the marker
    ``{"$tq_blob": ref, "size": n}`` in its place (the engine reads it back at delivery).

    Args:
        task: the task to encode.
        encode: returns the wire value and its size as the transport counts it.
        limit: the largest size the transport takes.
        blob_store: where large payloads go; ``None``: an oversized task raises.
        what: how the transport calls one unit ("Kinesis record", "SQS message"), for errors.

    Raises:
        RecordTooLargeError: over the limit without a blob store, or still over it with the
            payload in the blob store.
    """
    value, size = encode(task)
    if size <= limit:
        return value
    if blob_store is None:
        raise RecordTooLargeError(
            f"task {task.id!r} is {size} bytes as a {what}, over the limit of {limit} bytes: "
            "give the transport a blob_store (claim check) to keep large payloads, or make "
            "the payload smaller",
            task_id=task.id,
            size=size,
            limit=limit,
        )
    if task.payload is None or is_blob_ref(task.payload):
        raise RecordTooLargeError(
            f"task {task.id!r} is {size} bytes as a {what}, over the limit of {limit} bytes, "
            "and its payload is not what makes it large: shrink its metadata or "
            "execution_stats",
            task_id=task.id,
            size=size,
            limit=limit,
        )
    data = pydantic_core.to_json(task.payload)
    ref = await blob_store.put(f"payloads/{task.id or uuid.uuid4().hex}", data)
    slim = task.model_copy(update={"payload": {MARKER: ref, "size": len(data)}})
    value, slim_size = encode(slim)
    if slim_size > limit:
        raise RecordTooLargeError(
            f"task {task.id!r} is {slim_size} bytes as a {what} even with its payload in the "
            f"blob store, over the limit of {limit} bytes: shrink its metadata or "
            "execution_stats",
            task_id=task.id,
            size=slim_size,
            limit=limit,
        )
    return value


# -- ordered, batched sending with per-record retries ---------------------------------------


@dataclass(slots=True, eq=False)
class Pending(Generic[T]):
    """One record waiting to be sent.

    Attributes:
        index: its place in the publish call (lower goes first).
        task_id: the task it carries (for errors).
        key: records of one key are sent one after another, never two in one call.
        entry: the request entry (transport-specific).
        size: its size as the per-call byte limit counts it.
    """

    index: int
    task_id: str
    key: str
    entry: T
    size: int
    attempts: int = 0
    not_before: float = 0.0


SendOutcome = tuple[str, bool] | None
"""Per record: ``None`` when it was accepted, else ``(error code, retryable)``."""


def _call_error_retryable(exc: BaseException) -> str | None:
    """The error code when a whole-call failure is worth retrying, else ``None``."""
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in RETRYABLE_CALL_CODES or (isinstance(status, int) and status >= 500):
            return code or f"HTTP {status}"
        return None
    if isinstance(exc, EndpointConnectionError | ConnectionClosedError | ReadTimeoutError):
        return type(exc).__name__
    return None


def _pack(ready: Sequence[Pending[T]], max_entries: int, max_bytes: int) -> list[list[Pending[T]]]:
    calls: list[list[Pending[T]]] = []
    current: list[Pending[T]] = []
    used = 0
    for item in ready:
        if current and (len(current) >= max_entries or used + item.size > max_bytes):
            calls.append(current)
            current, used = [], 0
        current.append(item)
        used += item.size
    if current:
        calls.append(current)
    return calls


async def send_in_order(
    items: Sequence[Pending[T]],
    send: Callable[[list[Pending[T]]], Awaitable[list[SendOutcome]]],
    *,
    max_entries: int,
    max_bytes: int,
    max_attempts: int,
    base_backoff: float,
    what: str,
) -> None:
    """Send ``items`` in batch calls of at most ``max_entries`` entries and ``max_bytes``
    bytes, retrying failed entries with exponential backoff and full jitter.

    Ordering rule: a call carries at most one record per key, and a record goes out only once
    every earlier record of its key was accepted. Records of other keys keep flowing while one
    key waits for its retry. Items with distinct keys all go in the first round, so ``N``
    records of distinct keys cost ``ceil(N / max_entries)`` calls (byte limit permitting).

    Args:
        items: the records, in publish order.
        send: makes one batch call; returns one outcome per record, in order. A call that
            raises a throttling or transient error counts as a retryable failure of each of
            its records; any other error stops sending.
        max_entries, max_bytes: the per-call limits.
        max_attempts: attempts per record before giving up on it (and on the later records
            of its key, which are then not sent).
        base_backoff: seconds; the retry delay is uniform in
            ``[0, min(MAX_BACKOFF_SECONDS, base_backoff * 2 ** (attempt - 1))]``.
        what: names the target in error messages.

    Raises:
        RecordsNotPublishedError: listing every task not published, when a record ran out of
            attempts, was refused for good, or a call failed with a non-retryable error (the
            cause is chained).
    """
    chains: dict[str, deque[Pending[T]]] = {}
    for item in sorted(items, key=lambda i: i.index):
        chains.setdefault(item.key, deque()).append(item)
    failed: dict[str, str] = {}
    order: dict[str, int] = {i.task_id: i.index for i in items}
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(MAX_CONCURRENT_CALLS)

    async def gated(call: list[Pending[T]]) -> list[SendOutcome]:
        async with gate:
            return await send(call)

    def give_up(key: str, reason: str) -> None:
        chain = chains.pop(key)
        first = chain.popleft()
        failed[first.task_id] = reason
        for later in chain:
            failed[later.task_id] = f"not sent: task {first.task_id} of its key was not published"

    while chains:
        now = loop.time()
        ready = [c[0] for c in chains.values() if c[0].not_before <= now]
        if not ready:
            wake = min(c[0].not_before for c in chains.values())
            await asyncio.sleep(max(0.0, wake - now))
            continue
        ready.sort(key=lambda i: i.index)
        calls = _pack(ready, max_entries, max_bytes)
        results = await asyncio.gather(*(gated(c) for c in calls), return_exceptions=True)
        fatal: BaseException | None = None
        for call, result in zip(calls, results, strict=True):
            outcomes: list[SendOutcome]
            if isinstance(result, BaseException):
                if not isinstance(result, Exception):
                    raise result
                code = _call_error_retryable(result)
                if code is None:
                    fatal = fatal or result
                    continue
                outcomes = [(code, True)] * len(call)
            else:
                outcomes = result
            for item, outcome in zip(call, outcomes, strict=True):
                chain = chains[item.key]
                if outcome is None:
                    chain.popleft()
                    if not chain:
                        del chains[item.key]
                    continue
                code, retryable = outcome
                item.attempts += 1
                if not retryable or item.attempts >= max_attempts:
                    give_up(item.key, code)
                    continue
                ceiling = min(MAX_BACKOFF_SECONDS, base_backoff * 2 ** (item.attempts - 1))
                item.not_before = loop.time() + random.uniform(0.0, ceiling)
        if fatal is not None:
            for key in list(chains):
                for item in chains.pop(key):
                    failed[item.task_id] = "not sent: the call failed"
            ids = sorted(failed, key=lambda t: order[t])
            raise RecordsNotPublishedError(
                f"{len(ids)} task(s) not published to {what}: {fatal}",
                task_ids=ids,
                reasons=failed,
            ) from fatal
    if failed:
        ids = sorted(failed, key=lambda t: order[t])
        shown = ", ".join(f"{t} ({failed[t]})" for t in ids[:10])
        more = f" and {len(ids) - 10} more" if len(ids) > 10 else ""
        raise RecordsNotPublishedError(
            f"{len(ids)} task(s) not published to {what} after {max_attempts} attempt(s): "
            f"{shown}{more}; publishing them again is safe (delivery is at-least-once)",
            task_ids=ids,
            reasons=failed,
        )


def check_batching_options(*, max_attempts: int, base_backoff: float) -> None:
    """Raise ``ConfigurationError`` for retry options out of range."""
    if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1:
        raise ConfigurationError(f"max_attempts={max_attempts!r}; give a whole number >= 1")
    if base_backoff < 0:
        raise ConfigurationError(f"base_backoff={base_backoff!r}; give seconds >= 0")


# -- routing over several transports ---------------------------------------------------------


class RoutedTransport:
    """Transport port over Kinesis streams and SQS queues, chosen per queue id by ``Routing``.

    ``publish`` splits the tasks by ``routing.route(task.queue_id)`` (keeping publish order
    within each part) and publishes the parts concurrently, each on its own transport, which
    keeps the order per partition key.

    Build it from ready transports (``kinesis`` by stream name, ``sqs`` by queue URL), or with
    ``RoutedTransport.from_routing(routing, clients, ...)``, which builds one transport per
    stream and queue the routing names.

    Args:
        routing: maps queue ids to a stream or a queue.
        kinesis: the Kinesis transport of each stream the routing names.
        sqs: the SQS transport of each queue URL the routing names.

    Example:
        >>> routing = Routing(stream="tq-tasks", queue_url=url, sqs_queues={"emails"})
        >>> transport = RoutedTransport.from_routing(routing, clients, blob_store=blobs)
        >>> await transport.publish(tasks)   # "emails" tasks to SQS, the rest to Kinesis
    """

    def __init__(
        self,
        routing: Routing,
        kinesis: Mapping[str, KinesisTransport] | None = None,
        sqs: Mapping[str, SqsTransport] | None = None,
    ):
        self.routing = routing
        self.kinesis = dict(kinesis or {})
        self.sqs = dict(sqs or {})
        if routing.stream and routing.stream not in self.kinesis:
            raise ConfigurationError(
                f"routing names stream {routing.stream!r} but kinesis= has no transport for "
                "it; pass kinesis={stream: KinesisTransport(...)} or use from_routing"
            )
        missing = [u for u in routing.queue_urls() if u not in self.sqs]
        if missing:
            raise ConfigurationError(
                f"routing names queue(s) {missing} but sqs= has no transport for them; pass "
                "sqs={queue_url: SqsTransport(...)} or use from_routing"
            )

    @classmethod
    def from_routing(
        cls,
        routing: Routing,
        clients: AwsClients,
        *,
        blob_store: BlobStore | None = None,
        compress_over: int | None = None,
        max_record_bytes: int = 1_048_576,
        max_message_bytes: int = 1_048_576,
        max_attempts: int = 8,
        base_backoff: float = 0.05,
    ) -> RoutedTransport:
        """Build a Kinesis transport for the routing's stream and an SQS transport for each of
        its queues, sharing ``clients``, ``blob_store`` and the options."""
        from tq_aws.backends.aws.kinesis import KinesisTransport
        from tq_aws.backends.aws.sqs import SqsTransport

        kinesis = {}
        if routing.stream:
            kinesis[routing.stream] = KinesisTransport(
                routing.stream,
                clients,
                blob_store=blob_store,
                max_record_bytes=max_record_bytes,
                compress_over=compress_over,
                max_attempts=max_attempts,
                base_backoff=base_backoff,
            )
        sqs = {
            url: SqsTransport(
                url,
                clients,
                blob_store=blob_store,
                max_message_bytes=max_message_bytes,
                compress_over=compress_over,
                max_attempts=max_attempts,
                base_backoff=base_backoff,
            )
            for url in routing.queue_urls()
        }
        return cls(routing, kinesis, sqs)

    def transport_for(self, queue_id: str) -> KinesisTransport | SqsTransport:
        """The transport that carries ``queue_id``."""
        route = self.routing.route(queue_id)
        if isinstance(route, KinesisRoute):
            found: KinesisTransport | SqsTransport | None = self.kinesis.get(route.stream)
        else:
            found = self.sqs.get(route.queue_url)
        if found is None:
            raise ConfigurationError(
                f"queue id {queue_id!r} routes to {route} but no transport was given for it"
            )
        return found

    async def publish(self, tasks: Sequence[Task]) -> None:
        """Publish each task on its route's transport (parts concurrently, order per
        partition key kept within each).

        Raises:
            RecordsNotPublishedError: some tasks were not published (their ids listed); the
                other parts were published.
        """
        parts: dict[int, tuple[KinesisTransport | SqsTransport, list[Task]]] = {}
        for task in tasks:
            transport = self.transport_for(task.queue_id)
            parts.setdefault(id(transport), (transport, []))[1].append(task)
        if not parts:
            return
        if len(parts) == 1:
            ((transport, part),) = parts.values()
            await transport.publish(part)
            return
        results = await asyncio.gather(
            *(t.publish(p) for t, p in parts.values()), return_exceptions=True
        )
        errors: list[Exception] = []
        ids: list[str] = []
        reasons: dict[str, str] = {}
        for (_, part), result in zip(parts.values(), results, strict=True):
            if result is None:
                continue
            if not isinstance(result, Exception):
                raise result
            errors.append(result)
            if isinstance(result, PublishError):
                ids.extend(result.task_ids)
                reasons.update(getattr(result, "reasons", {}))
            else:
                ids.extend(t.id or "" for t in part)
                reasons.update({t.id or "": str(result) for t in part})
        if len(errors) == 1:
            raise errors[0]
        if errors:
            raise RecordsNotPublishedError(
                f"{len(ids)} task(s) not published: " + "; ".join(str(e) for e in errors),
                task_ids=ids,
                reasons=reasons,
            ) from errors[0]

    async def send_delayed(self, task: Task, delay_seconds: int) -> None:
        """Send ``task`` with SQS ``DelaySeconds`` on its queue (the scheduler's short-delay
        path). Raises ``ConfigurationError`` when the task's queue id travels by Kinesis."""
        route = self.routing.route(task.queue_id)
        if not isinstance(route, SqsRoute):
            raise ConfigurationError(
                f"queue id {task.queue_id!r} travels by Kinesis ({route.stream}); only SQS "
                "queues take DelaySeconds: schedule it with EventBridge Scheduler"
            )
        transport = self.sqs[route.queue_url]
        await transport.send_delayed(task, delay_seconds)


# -- several polling sources as one ---------------------------------------------------------


class CombinedSource:
    """PollingSource port over several sources, taken in turn.

    ``receive`` asks the sources one after another, starting after the one that answered
    last, and returns the first non-empty batch (so a batch always comes from one source,
    which keeps its order). ``ack`` and ``nack`` hand each record back to the source it came
    from.

    Args:
        sources: the sources (for example a ``KinesisSource`` and ``SqsSource`` objects).

    Example:
        >>> source = CombinedSource([KinesisSource("tq-tasks", clients), SqsSource(url, clients)])
        >>> app = TaskQueue(transport=transport, source=source)
    """

    def __init__(self, sources: Sequence[PollingSource]):
        if not sources:
            raise ConfigurationError("CombinedSource needs at least one source")
        self.sources = list(sources)
        self._turn = -1
        # id(delivery) -> (source index, delivery); the delivery is kept so its id stays unique
        self._owner: dict[int, tuple[int, Delivery]] = {}

    @classmethod
    def from_routing(
        cls,
        routing: Routing,
        clients: AwsClients,
        *,
        start: ShardStart = "TRIM_HORIZON",
        wait_seconds: int = 0,
        visibility_timeout: int | None = None,
    ) -> CombinedSource:
        """A ``KinesisSource`` for the routing's stream and an ``SqsSource`` per queue."""
        from tq_aws.backends.aws.kinesis import KinesisSource
        from tq_aws.backends.aws.sqs import SqsSource

        sources: list[PollingSource] = []
        if routing.stream:
            sources.append(KinesisSource(routing.stream, clients, start=start))
        sources.extend(
            SqsSource(
                url, clients, wait_seconds=wait_seconds, visibility_timeout=visibility_timeout
            )
            for url in routing.queue_urls()
        )
        return cls(sources)

    @property
    def in_flight(self) -> int:
        """Records received and not yet acknowledged or given back."""
        return len(self._owner)

    async def receive(self, max_records: int) -> list[Delivery]:
        """The next non-empty batch of one source, sources taken in turn; empty when every
        source is empty."""
        count = len(self.sources)
        for step in range(1, count + 1):
            index = (self._turn + step) % count
            batch = await self.sources[index].receive(max_records)
            if batch:
                self._turn = index
                for d in batch:
                    self._owner[id(d)] = (index, d)
                return batch
        return []

    def _split(self, deliveries: Sequence[Delivery]) -> dict[int, list[Delivery]]:
        parts: dict[int, list[Delivery]] = {}
        for d in deliveries:
            owner = self._owner.get(id(d))
            if owner is None or owner[1] is not d:
                raise ConfigurationError(
                    f"record {d.position} was not received from this CombinedSource (or was "
                    "already acknowledged or given back)"
                )
            parts.setdefault(owner[0], []).append(d)
        for d in deliveries:
            self._owner.pop(id(d), None)
        return parts

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        """Acknowledge each record at the source it came from."""
        for index, part in self._split(deliveries).items():
            await self.sources[index].ack(part)

    async def nack(self, deliveries: Sequence[Delivery]) -> None:
        """Give each record back to the source it came from."""
        for index, part in self._split(deliveries).items():
            await self.sources[index].nack(part)


__all__ = [
    "CombinedSource",
    "InvalidPartitionKeyError",
    "Pending",
    "RecordTooLargeError",
    "RecordsNotPublishedError",
    "RoutedTransport",
    "check_batching_options",
    "fit_record",
    "send_in_order",
]
