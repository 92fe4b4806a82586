"""Which transport a queue id travels by: a Kinesis stream or an SQS queue."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from tq_aws.errors import ConfigurationError


@dataclass(frozen=True, slots=True)
class KinesisRoute:
    """Records of this queue id go to a Kinesis stream, keyed by the task's partition key."""

    stream: str


@dataclass(frozen=True, slots=True)
class SqsRoute:
    """Records of this queue id go to an SQS queue (FIFO when the URL ends in ``.fifo``)."""

    queue_url: str

    @property
    def fifo(self) -> bool:
        return self.queue_url.endswith(".fifo")


Route = KinesisRoute | SqsRoute


class Routing:
    """Maps queue ids to transports.

    - ``stream`` only: every queue id travels by Kinesis.
    - ``queue_url`` only: every queue id travels by that SQS queue.
    - both: the queue ids named in ``sqs_queues`` travel by SQS, the rest by Kinesis.

    ``sqs_queues`` is either a mapping ``{queue_id: queue_url}`` or a collection of queue ids
    that travel by ``queue_url``.

    Example:
        >>> r = Routing(stream="tq-tasks", queue_url="https://sqs/1/q", sqs_queues={"emails"})
        >>> r.route("emails"), r.route("media")
        (SqsRoute(queue_url='https://sqs/1/q'), KinesisRoute(stream='tq-tasks'))
    """

    def __init__(
        self,
        *,
        stream: str | None = None,
        queue_url: str | None = None,
        sqs_queues: Mapping[str, str] | Iterable[str] | None = None,
    ):
        if not stream and not queue_url and not sqs_queues:
            raise ConfigurationError(
                "no transport configured: give stream=..., queue_url=... or both"
            )
        self.stream = stream
        self.queue_url = queue_url
        self._sqs: dict[str, str] = {}
        if isinstance(sqs_queues, Mapping):
            self._sqs = {str(k): str(v) for k, v in sqs_queues.items()}
        elif sqs_queues is not None:
            if not queue_url:
                raise ConfigurationError(
                    "sqs_queues names queue ids without URLs: give queue_url=... for them, "
                    "or pass sqs_queues as {queue_id: queue_url}"
                )
            self._sqs = {str(q): queue_url for q in sqs_queues}

    def route(self, queue_id: str) -> Route:
        url = self._sqs.get(queue_id)
        if url is not None:
            return SqsRoute(url)
        if self.stream:
            return KinesisRoute(self.stream)
        if self.queue_url:
            return SqsRoute(self.queue_url)
        raise ConfigurationError(
            f"queue id {queue_id!r} has no transport: add it to sqs_queues or give stream=..."
        )

    def queue_urls(self) -> list[str]:
        """Every SQS queue URL in use."""
        urls = set(self._sqs.values())
        if self.queue_url:
            urls.add(self.queue_url)
        return sorted(urls)
