"""Transport and polling source on an SQS queue (standard or FIFO).

A message body is the codec's JSON text, or, when the codec compressed the record (or the
JSON holds characters SQS does not carry), base64 of the record's bytes
(``tq_aws.core.codec.encode_sqs_body``). JSON always starts with ``{`` and base64 never does,
which tells them apart at delivery.

Publishing (``SqsTransport``): ``SendMessageBatch`` of at most 10 entries and at most
``max_message_bytes`` in total per call. A message over ``max_message_bytes`` keeps its payload
in the blob store (claim check, key ``payloads/<task id>``). Failed entries are retried one by
one with exponential backoff and full jitter (those SQS blames on the sender are not retried),
then a ``RecordsNotPublishedError`` lists the tasks not published.

On a FIFO queue (URL ending ``.fifo``) the ``MessageGroupId`` is the task's partition key (else
its id; its digest when SQS would not take it) and the ``MessageDeduplicationId`` is
``<task id>.a<retry_count>``, so the same attempt sent twice within SQS's five-minute window is
delivered once while a retry is a new message. As on Kinesis, a failed entry does not stop the
entries after it in the same call, so a call holds at most one message per group and a message
goes out only once the earlier ones of its group were accepted. Standard queues do not order
messages, so their calls are filled up.

Consuming (``SqsSource``): ``ReceiveMessage`` (at most 10 per call), ``ack`` =
``DeleteMessageBatch``, ``nack`` = ``ChangeMessageVisibilityBatch`` to 0.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from collections.abc import Sequence
from typing import Any

from tq_aws.backends.aws.batching import (
    Pending,
    SendOutcome,
    check_batching_options,
    send_in_order,
)
from tq_aws.backends.aws.claim_check import fit_record
from tq_aws.backends.aws.clients import AwsClients
from tq_aws.core.codec import decode_sqs_body, encode_sqs_body, encode_task
from tq_aws.core.limits import (
    MAX_RECORD_BYTES,
    SQS_MAX_BATCH_ENTRIES,
    SQS_MAX_DELAY_SECONDS,
    SQS_MAX_FIFO_ID_CHARS,
)
from tq_aws.core.task import Task
from tq_aws.errors import (
    AcknowledgeError,
    CodecError,
    ConfigurationError,
    InvalidDelayError,
    InvalidPartitionKeyError,
    RecordsNotPublishedError,
)
from tq_aws.ports import BlobStore, Delivery

logger = logging.getLogger(__name__)

MAX_BATCH_ENTRIES = SQS_MAX_BATCH_ENTRIES
MAX_DELAY_SECONDS = SQS_MAX_DELAY_SECONDS
MAX_FIFO_ID_LENGTH = SQS_MAX_FIFO_ID_CHARS
"""``MessageGroupId`` and ``MessageDeduplicationId``: 1 to 128 characters of this set."""
_FIFO_ID = re.compile(r"[0-9A-Za-z!\"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~]{1,128}")


def group_id_of(task: Task) -> str:
    """The FIFO ``MessageGroupId``: the task's partition key, else its id; its SHA-256 in hex
    when that is longer than 128 characters or holds characters SQS does not take (the same
    key always gives the same group, so its order holds).

    Raises:
        InvalidPartitionKeyError: the task has neither a partition key nor an id.
    """
    key = task.partition_key or task.id or ""
    if _FIFO_ID.fullmatch(key):
        return key
    if not key:
        raise InvalidPartitionKeyError(
            f"task of type {task.type!r} has neither partition_key nor id: give it an id "
            "(add_tasks assigns one) or a partition_key",
            task_id=task.id,
            field="partition_key",
            value=key,
        )
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def deduplication_id_of(task: Task) -> str:
    """The FIFO ``MessageDeduplicationId``: ``<task id>.a<retry_count>``, or its SHA-256 in
    hex when that is too long or holds characters SQS does not take."""
    value = f"{task.id}.a{task.retry_count}"
    if _FIFO_ID.fullmatch(value):
        return value
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()


class SqsTransport:
    """Transport port on one SQS queue (see the module docstring); also the scheduler's
    ``DelaySeconds`` sender (``send_delayed``).

    Args:
        queue_url: the queue URL (FIFO when it ends in ``.fifo``).
        clients: AWS clients.
        blob_store: where payloads of messages over ``max_message_bytes`` go (claim check);
            without one, such a task raises ``RecordTooLargeError``.
        max_message_bytes: the largest message body, and the largest total of one batch call
            (SQS takes 1 MiB for both).
        compress_over: zlib-compress records whose JSON is larger than this (``None``: never);
            a compressed body is base64 text.
        max_attempts: attempts per message before giving up (``RecordsNotPublishedError``).
        base_backoff: seconds; base of the exponential retry delay (full jitter).

    Example:
        >>> transport = SqsTransport(queue_url, clients, blob_store=S3BlobStore(...))
        >>> await transport.publish(tasks)
    """

    def __init__(
        self,
        queue_url: str,
        clients: AwsClients,
        *,
        blob_store: BlobStore | None = None,
        max_message_bytes: int = MAX_RECORD_BYTES,
        compress_over: int | None = None,
        max_attempts: int = 8,
        base_backoff: float = 0.05,
    ):
        if not queue_url or "://" not in queue_url:
            raise ConfigurationError(
                f"queue_url={queue_url!r}; give the queue's URL (from CreateQueue/GetQueueUrl)"
            )
        if max_message_bytes < 1:
            raise ConfigurationError(f"max_message_bytes={max_message_bytes!r}; give >= 1")
        check_batching_options(max_attempts=max_attempts, base_backoff=base_backoff)
        self.queue_url = queue_url
        self.clients = clients
        self.blob_store = blob_store
        self.max_message_bytes = max_message_bytes
        self.compress_over = compress_over
        self.max_attempts = max_attempts
        self.base_backoff = base_backoff

    @property
    def fifo(self) -> bool:
        return self.queue_url.endswith(".fifo")

    def _encode(self, task: Task) -> tuple[str, int]:
        body = encode_sqs_body(encode_task(task, compress_over=self.compress_over))
        return body, len(body.encode("utf-8"))

    async def _entry(self, task: Task) -> tuple[dict[str, Any], int]:
        body = await fit_record(
            task,
            self._encode,
            limit=self.max_message_bytes,
            blob_store=self.blob_store,
            what="SQS message",
        )
        entry: dict[str, Any] = {"MessageBody": body}
        if self.fifo:
            entry["MessageGroupId"] = group_id_of(task)
            entry["MessageDeduplicationId"] = deduplication_id_of(task)
        return entry, len(body.encode("utf-8"))

    async def publish(self, tasks: Sequence[Task]) -> None:
        """Send every task (in order per group on a FIFO queue).

        Every task is checked before anything is sent. Raises ``InvalidPartitionKeyError``
        (FIFO group ids), ``RecordTooLargeError`` or ``RecordsNotPublishedError`` (listing
        the tasks not published; the others were)."""
        if not tasks:
            return
        if self.fifo:
            keys = [group_id_of(t) for t in tasks]
        else:  # no order to keep: every message is its own chain
            keys = [f"#{i}" for i in range(len(tasks))]
        entries = await asyncio.gather(*(self._entry(t) for t in tasks))
        items = [
            Pending(index=i, task_id=task.id or f"#{i}", key=key, entry=entry, size=size)
            for i, (task, key, (entry, size)) in enumerate(zip(tasks, keys, entries, strict=True))
        ]
        await send_in_order(
            items,
            self._send_batch,
            max_entries=MAX_BATCH_ENTRIES,
            max_bytes=self.max_message_bytes,
            max_attempts=self.max_attempts,
            base_backoff=self.base_backoff,
            what=f"SQS queue {self.queue_url}",
        )

    async def _send_batch(self, call: list[Pending[dict[str, Any]]]) -> list[SendOutcome]:
        sqs = await self.clients.get("sqs")
        entries = [dict(item.entry, Id=str(i)) for i, item in enumerate(call)]
        response = await sqs.send_message_batch(QueueUrl=self.queue_url, Entries=entries)
        return _batch_outcomes(response, len(call))

    async def send_delayed(self, task: Task, delay_seconds: int) -> None:
        """Send ``task`` so it becomes visible after ``delay_seconds`` (SQS ``DelaySeconds``).

        Raises:
            InvalidDelayError: the delay is not 0..900 seconds, or the queue is FIFO (FIFO
                queues have no per-message delay: schedule with EventBridge Scheduler).
        """
        if isinstance(delay_seconds, bool) or not isinstance(delay_seconds, int):
            raise InvalidDelayError(
                f"delay_seconds={delay_seconds!r}; give whole seconds 0..{MAX_DELAY_SECONDS}",
                field="delay_seconds",
            )
        if not 0 <= delay_seconds <= MAX_DELAY_SECONDS:
            raise InvalidDelayError(
                f"delay_seconds={delay_seconds}; SQS delays are 0..{MAX_DELAY_SECONDS} seconds: "
                "schedule longer delays with EventBridge Scheduler",
                field="delay_seconds",
            )
        if self.fifo:
            raise InvalidDelayError(
                f"queue {self.queue_url} is FIFO, and FIFO queues take no per-message delay: "
                "schedule the task with EventBridge Scheduler instead",
                field="queue_url",
            )
        entry, _ = await self._entry(task)
        sqs = await self.clients.get("sqs")
        await sqs.send_message(QueueUrl=self.queue_url, DelaySeconds=delay_seconds, **entry)


def _batch_outcomes(response: dict[str, Any], count: int) -> list[SendOutcome]:
    """Per entry (``Id`` = its index): ``None`` if it succeeded, else ``(code, retryable)``;
    SQS marks the sender's faults, which a retry will not fix."""
    outcomes: list[SendOutcome] = [("MissingResult", True)] * count
    for ok in response.get("Successful") or []:
        outcomes[int(ok["Id"])] = None
    for bad in response.get("Failed") or []:
        outcomes[int(bad["Id"])] = (str(bad.get("Code", "")), not bad.get("SenderFault", False))
    return outcomes


class SqsSource:
    """PollingSource port on one SQS queue.

    Args:
        queue_url: the queue URL.
        clients: AWS clients.
        wait_seconds: long-poll time of ``ReceiveMessage`` (0..20; 0 returns at once).
        visibility_timeout: seconds a received message stays hidden (``None``: the queue's).
        max_attempts: attempts per message of ``ack``/``nack`` batch calls.

    Example:
        >>> source = SqsSource(queue_url, clients, wait_seconds=10)
        >>> app = TaskQueue(transport=SqsTransport(queue_url, clients), source=source)
    """

    def __init__(
        self,
        queue_url: str,
        clients: AwsClients,
        *,
        wait_seconds: int = 0,
        visibility_timeout: int | None = None,
        max_attempts: int = 3,
    ):
        if not queue_url or "://" not in queue_url:
            raise ConfigurationError(
                f"queue_url={queue_url!r}; give the queue's URL (from CreateQueue/GetQueueUrl)"
            )
        if not 0 <= wait_seconds <= 20:
            raise ConfigurationError(f"wait_seconds={wait_seconds!r}; give 0..20")
        if visibility_timeout is not None and not 0 <= visibility_timeout <= 43_200:
            raise ConfigurationError(
                f"visibility_timeout={visibility_timeout!r}; give 0..43200 seconds or None"
            )
        check_batching_options(max_attempts=max_attempts, base_backoff=0.0)
        self.queue_url = queue_url
        self.clients = clients
        self.wait_seconds = wait_seconds
        self.visibility_timeout = visibility_timeout
        self.max_attempts = max_attempts

    async def receive(self, max_records: int) -> list[Delivery]:
        """Up to ``min(max_records, 10)`` messages (one ``ReceiveMessage``); empty when none
        is visible within ``wait_seconds``."""
        sqs = await self.clients.get("sqs")
        args: dict[str, Any] = {
            "QueueUrl": self.queue_url,
            "MaxNumberOfMessages": max(1, min(int(max_records), MAX_BATCH_ENTRIES)),
            "WaitTimeSeconds": self.wait_seconds,
            "MessageSystemAttributeNames": ["ApproximateReceiveCount", "MessageGroupId"],
        }
        if self.visibility_timeout is not None:
            args["VisibilityTimeout"] = self.visibility_timeout
        response = await sqs.receive_message(**args)
        return [self._delivery(m) for m in response.get("Messages") or []]

    def _delivery(self, message: dict[str, Any]) -> Delivery:
        body = str(message.get("Body", ""))
        attributes = message.get("Attributes") or {}
        position = str(message["MessageId"])
        group = attributes.get("MessageGroupId")
        try:
            data = decode_sqs_body(body)
        except CodecError as exc:  # kept whole: a poison record
            delivery = Delivery(
                self.queue_url,
                body.encode("utf-8"),
                position,
                partition_key=group,
                token=message["ReceiptHandle"],
                error=exc,
            )
        else:
            delivery = Delivery.decode(
                self.queue_url, data, position, partition_key=group, token=message["ReceiptHandle"]
            )
        if delivery.partition_key is None and delivery.task is not None:
            delivery.partition_key = delivery.task.partition_key or delivery.task.id
        count = attributes.get("ApproximateReceiveCount")
        if isinstance(count, str) and count.isdigit():
            delivery.deliveries = int(count)  # bounds redeliveries (max_deliveries)
        return delivery

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        """Delete the messages (``DeleteMessageBatch``)."""
        await self._batch("delete_message_batch", deliveries, {})

    async def nack(self, deliveries: Sequence[Delivery]) -> None:
        """Make the messages visible again at once (``ChangeMessageVisibilityBatch`` to 0)."""
        await self._batch("change_message_visibility_batch", deliveries, {"VisibilityTimeout": 0})

    async def _batch(
        self, operation: str, deliveries: Sequence[Delivery], extra: dict[str, Any]
    ) -> None:
        if not deliveries:
            return
        sqs = await self.clients.get("sqs")
        items = [
            Pending(
                index=i,
                task_id=d.position,
                key=d.position,
                entry=dict(extra, ReceiptHandle=d.token),
                size=0,
            )
            for i, d in enumerate(deliveries)
        ]

        async def call(batch: list[Pending[dict[str, Any]]]) -> list[SendOutcome]:
            entries = [dict(item.entry, Id=str(i)) for i, item in enumerate(batch)]
            response = await getattr(sqs, operation)(QueueUrl=self.queue_url, Entries=entries)
            outcomes = _batch_outcomes(response, len(batch))
            for item, outcome in zip(batch, outcomes, strict=True):
                if outcome is not None and not outcome[1]:
                    # The sender's fault: most often a receipt handle that expired with the
                    # visibility timeout. The message comes back anyway; nothing to retry.
                    logger.info("%s of message %s refused: %s", operation, item.task_id, outcome)
            return [None if o is not None and not o[1] else o for o in outcomes]

        try:
            await send_in_order(
                items,
                call,
                max_entries=MAX_BATCH_ENTRIES,
                max_bytes=1 << 62,
                max_attempts=self.max_attempts,
                base_backoff=0.05,
                what=f"SQS queue {self.queue_url}",
            )
        except RecordsNotPublishedError as exc:
            raise AcknowledgeError(
                f"{operation} failed for {len(exc.task_ids)} message(s) of {self.queue_url}: "
                f"{exc.reasons}; they come back when their visibility timeout ends",
                message_ids=exc.task_ids,
            ) from exc


__all__ = [
    "MAX_BATCH_ENTRIES",
    "MAX_DELAY_SECONDS",
    "AcknowledgeError",
    "InvalidDelayError",
    "SqsSource",
    "SqsTransport",
    "deduplication_id_of",
    "group_id_of",
]
