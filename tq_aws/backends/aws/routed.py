"""The two ways of combining the Kinesis and SQS backends into one port.

- ``RoutedTransport`` implements the Transport port over several Kinesis and SQS transports:
  each task goes where ``Routing.route(task.queue_id)`` says, in publish order per partition
  key (a queue id always routes to one place, so every key's tasks of one queue id share one
  transport).
- ``CombinedSource`` implements the PollingSource port over several sources (a stream's
  shards and SQS queues), taking them in turn; acks and nacks go back to the source a record
  came from.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence

from tq_aws.backends.aws.clients import AwsClients
from tq_aws.backends.aws.kinesis import KinesisSource, KinesisTransport, ShardStart
from tq_aws.backends.aws.routing import KinesisRoute, Routing, SqsRoute
from tq_aws.backends.aws.sqs import SqsSource, SqsTransport
from tq_aws.core.limits import MAX_RECORD_BYTES
from tq_aws.core.task import Task
from tq_aws.errors import ConfigurationError, PublishError, RecordsNotPublishedError
from tq_aws.ports import BlobStore, Delivery, PollingSource

logger = logging.getLogger(__name__)


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
        max_record_bytes: int = MAX_RECORD_BYTES,
        max_message_bytes: int = MAX_RECORD_BYTES,
        max_attempts: int = 8,
        base_backoff: float = 0.05,
    ) -> RoutedTransport:
        """Build a Kinesis transport for the routing's stream and an SQS transport for each of
        its queues, sharing ``clients``, ``blob_store`` and the options."""
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


__all__ = ["CombinedSource", "RoutedTransport"]
