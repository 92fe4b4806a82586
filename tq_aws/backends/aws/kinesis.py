"""Transport and polling source on a Kinesis data stream.

Publishing (``KinesisTransport``)
---------------------------------
Each task becomes one record: the codec's bytes (``tq_aws.core.codec``), keyed by the task's
partition key (its id when it has none). Records go out with ``PutRecords``: at most 500
records and 5 MiB (data plus partition keys) per call, so ``N`` small tasks of distinct keys
cost ``ceil(N / 500)`` calls. A record over ``max_record_bytes`` (data plus key) keeps its
payload in the blob store (claim check, key ``payloads/<task id>``) and carries the marker
``{"$tq_blob": ref, "size": n}``, which the engine reads back at delivery.

``PutRecords`` can fail in part: ``FailedRecordCount`` > 0, and each failed entry has an
``ErrorCode`` (``ProvisionedThroughputExceededException`` or ``InternalFailure``). Failed
records are retried one by one with exponential backoff and full jitter, up to
``max_attempts``, then a ``RecordsNotPublishedError`` lists the tasks not published.

Why a call never holds two records of one partition key: Kinesis keeps a key's records in the
order they are *written*, but within one ``PutRecords`` call a failed entry does not stop the
entries after it. If records 1 and 2 of key ``k`` shared a call and only 1 failed, 2 would be
in the stream before the retry of 1: the key's order would be broken for good. So a call
carries at most one record per key, and a record is sent only once every earlier record of its
key has been accepted; records of other keys keep flowing meanwhile. A hot key thus costs one
call per record (ordering is what it buys); tasks without a partition key are keyed by their
id and batch fully.

Consuming (``KinesisSource``)
-----------------------------
For in-process workers (``TaskQueue.run_until_idle`` on AWS; Lambda uses its own event source
mapping). It lists the shards, keeps an iterator per shard and hands out the next records of
one shard per ``receive``, shards taken in turn. ``ack`` moves the shard's checkpoint past the
batch; ``nack`` makes the next read of that shard start again at the first record given back
(``AT_SEQUENCE_NUMBER``), so nothing is skipped. After a reshard, a child shard is read only
once its parents are read to their end and acknowledged, so a key's order survives the split
or merge. Positions are kept in memory only: a new source starts again at ``start``. One
source reads every shard and shares no leases, so run one per stream (each of several would
get every record).

moto's sequence numbers are small per-shard counters ("1", "2", ..., where "10" < "9" as
strings), so sequence numbers are compared as integers and always qualified by their shard.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from botocore.exceptions import ClientError

from tq_aws.backends.aws.batching import (
    Pending,
    SendOutcome,
    check_batching_options,
    send_in_order,
)
from tq_aws.backends.aws.claim_check import fit_record
from tq_aws.backends.aws.clients import AwsClients, error_code
from tq_aws.backends.aws.kinesis_shards import list_shards, record_deliveries, shard_iterator
from tq_aws.core.codec import encode_task
from tq_aws.core.limits import (
    KINESIS_MAX_BYTES_PER_CALL,
    KINESIS_MAX_GET_RECORDS,
    KINESIS_MAX_PARTITION_KEY_CHARS,
    KINESIS_MAX_RECORDS_PER_CALL,
    MAX_RECORD_BYTES,
)
from tq_aws.core.task import Task
from tq_aws.errors import ConfigurationError, InvalidPartitionKeyError
from tq_aws.ports import BlobStore, Delivery

logger = logging.getLogger(__name__)

# The service limits live in tq_aws.core.limits; these names stay for importers.
MAX_PARTITION_KEY_LENGTH = KINESIS_MAX_PARTITION_KEY_CHARS
MAX_RECORDS_PER_CALL = KINESIS_MAX_RECORDS_PER_CALL
MAX_BYTES_PER_CALL = KINESIS_MAX_BYTES_PER_CALL
MAX_GET_RECORDS = KINESIS_MAX_GET_RECORDS

ShardStart = Literal["TRIM_HORIZON", "LATEST"]


def partition_key_of(task: Task) -> str:
    """The record's partition key: the task's ``partition_key``, else its id.

    Raises:
        InvalidPartitionKeyError: the key is longer than 256 characters, or the task has
            neither a partition key nor an id.
    """
    key = task.partition_key or task.id
    if not key:
        raise InvalidPartitionKeyError(
            f"task of type {task.type!r} has neither partition_key nor id: give it an id "
            "(add_tasks assigns one) or a partition_key",
            task_id=task.id,
            field="partition_key",
            value="",
        )
    if len(key) > MAX_PARTITION_KEY_LENGTH:
        source = "partition_key" if task.partition_key else "id"
        raise InvalidPartitionKeyError(
            f"task {task.id!r}: its {source} is {len(key)} characters, but a Kinesis partition "
            f"key is at most {MAX_PARTITION_KEY_LENGTH}: use a shorter partition_key (e.g. a "
            "hash of the long one)",
            task_id=task.id,
            field="partition_key",
            value=key,
        )
    return key


class KinesisTransport:
    """Transport port on one Kinesis stream (``PutRecords``; see the module docstring).

    Args:
        stream: the stream name.
        clients: AWS clients.
        blob_store: where payloads of records over ``max_record_bytes`` go (claim check);
            without one, such a task raises ``RecordTooLargeError``.
        max_record_bytes: the largest record (data plus partition key) sent as is; 1 MiB,
            or more for a stream configured for larger records.
        compress_over: zlib-compress records whose JSON is larger than this (``None``: never).
        max_attempts: attempts per record before giving up (``RecordsNotPublishedError``).
        base_backoff: seconds; base of the exponential retry delay (full jitter).
        max_request_bytes: the per-call limit of ``PutRecords`` (data plus keys).

    Example:
        >>> transport = KinesisTransport("tq-tasks", clients, blob_store=S3BlobStore(...))
        >>> await transport.publish(tasks)
    """

    def __init__(
        self,
        stream: str,
        clients: AwsClients,
        *,
        blob_store: BlobStore | None = None,
        max_record_bytes: int = MAX_RECORD_BYTES,
        compress_over: int | None = None,
        max_attempts: int = 8,
        base_backoff: float = 0.05,
        max_request_bytes: int = MAX_BYTES_PER_CALL,
    ):
        if not stream:
            raise ConfigurationError("stream is empty; give the Kinesis stream name")
        if max_record_bytes < 1:
            raise ConfigurationError(f"max_record_bytes={max_record_bytes!r}; give >= 1")
        if max_request_bytes < max_record_bytes:
            raise ConfigurationError(
                f"max_request_bytes={max_request_bytes!r} is below max_record_bytes="
                f"{max_record_bytes!r}; a call must hold at least one record"
            )
        check_batching_options(max_attempts=max_attempts, base_backoff=base_backoff)
        self.stream = stream
        self.clients = clients
        self.blob_store = blob_store
        self.max_record_bytes = max_record_bytes
        self.max_request_bytes = max_request_bytes
        self.compress_over = compress_over
        self.max_attempts = max_attempts
        self.base_backoff = base_backoff

    async def publish(self, tasks: Sequence[Task]) -> None:
        """Publish every task, in order per partition key.

        Every key is checked before anything is sent. Raises ``InvalidPartitionKeyError``,
        ``RecordTooLargeError`` or ``RecordsNotPublishedError`` (listing the tasks not
        published; the others were)."""
        if not tasks:
            return
        keys = [partition_key_of(t) for t in tasks]
        datas = await asyncio.gather(
            *(self._fit(task, key) for task, key in zip(tasks, keys, strict=True))
        )
        items = [
            Pending(
                index=i,
                task_id=task.id or f"#{i}",
                key=key,
                entry={"Data": data, "PartitionKey": key},
                size=len(data) + len(key.encode("utf-8")),
            )
            for i, (task, key, data) in enumerate(zip(tasks, keys, datas, strict=True))
        ]
        await send_in_order(
            items,
            self._put_records,
            max_entries=MAX_RECORDS_PER_CALL,
            max_bytes=self.max_request_bytes,
            max_attempts=self.max_attempts,
            base_backoff=self.base_backoff,
            what=f"Kinesis stream {self.stream}",
        )

    async def _fit(self, task: Task, key: str) -> bytes:
        key_bytes = len(key.encode("utf-8"))

        def encode(t: Task) -> tuple[bytes, int]:
            data = encode_task(t, compress_over=self.compress_over)
            return data, len(data) + key_bytes

        return await fit_record(
            task,
            encode,
            limit=self.max_record_bytes,
            blob_store=self.blob_store,
            what="Kinesis record",
        )

    async def _put_records(self, call: list[Pending[dict[str, Any]]]) -> list[SendOutcome]:
        kinesis = await self.clients.get("kinesis")
        response = await kinesis.put_records(
            StreamName=self.stream, Records=[item.entry for item in call]
        )
        records = response.get("Records") or []
        outcomes: list[SendOutcome] = []
        for i in range(len(call)):
            entry = records[i] if i < len(records) else {"ErrorCode": "MissingResult"}
            code = entry.get("ErrorCode")
            outcomes.append((str(code), True) if code else None)
        return outcomes


# -- consuming ------------------------------------------------------------------------------


@dataclass(slots=True)
class _Shard:
    shard_id: str
    parents: tuple[str, ...]
    closed: bool
    iterator: str | None = None
    resume: dict[str, Any] = field(default_factory=lambda: {"ShardIteratorType": "TRIM_HORIZON"})
    """How to get a new iterator: the position arguments of ``GetShardIterator``."""
    outstanding: dict[int, str] = field(default_factory=dict)
    """Sequence numbers received and not yet acknowledged (int -> as Kinesis spells it)."""
    checkpoint: str | None = None
    """The last acknowledged sequence number."""
    ended: bool = False
    """A closed shard read to its end."""

    @property
    def done(self) -> bool:
        return self.ended and not self.outstanding


class KinesisSource:
    """PollingSource port on one Kinesis stream (see the module docstring).

    Args:
        stream: the stream name.
        clients: AWS clients.
        start: where reading starts in the shards present at the first ``receive``:
            ``TRIM_HORIZON`` (the oldest record kept) or ``LATEST`` (only records written
            after that first ``receive``). Shards created later by a reshard are read from
            their start.
        shard_refresh_seconds: how often, at most, an idle ``receive`` lists the shards again
            to find new ones (a closed shard read to its end triggers a listing at once).

    Example:
        >>> source = KinesisSource("tq-tasks", clients)
        >>> app = TaskQueue(transport=KinesisTransport("tq-tasks", clients), source=source)
        >>> await app.run_until_idle()
    """

    def __init__(
        self,
        stream: str,
        clients: AwsClients,
        *,
        start: ShardStart = "TRIM_HORIZON",
        shard_refresh_seconds: float = 10.0,
    ):
        if not stream:
            raise ConfigurationError("stream is empty; give the Kinesis stream name")
        if start not in ("TRIM_HORIZON", "LATEST"):
            raise ConfigurationError(f"start={start!r}; give 'TRIM_HORIZON' or 'LATEST'")
        if shard_refresh_seconds < 0:
            raise ConfigurationError(
                f"shard_refresh_seconds={shard_refresh_seconds!r}; give seconds >= 0"
            )
        self.stream = stream
        self.clients = clients
        self.start = start
        self.shard_refresh_seconds = shard_refresh_seconds
        self._shards: dict[str, _Shard] = {}
        self._listed_at: float | None = None
        self._turn = -1

    # -- shards -----------------------------------------------------------------------------

    async def _list_shards(self) -> None:
        kinesis = await self.clients.get("kinesis")
        first_listing = self._listed_at is None
        for info in await list_shards(kinesis, self.stream):
            known = self._shards.get(info.shard_id)
            if known is not None:
                known.closed = known.closed or info.closed
                continue
            # Shards born after the first listing (a reshard) are read from their start.
            start = self.start if first_listing else "TRIM_HORIZON"
            self._shards[info.shard_id] = _Shard(
                info.shard_id, info.parents, info.closed, resume={"ShardIteratorType": start}
            )
        self._listed_at = time.monotonic()

    def _eligible(self) -> list[_Shard]:
        out = []
        for shard in sorted(self._shards.values(), key=lambda s: s.shard_id):
            if shard.ended:
                continue
            # A child waits for its parents (those still listed) to be read and acknowledged.
            if all(p not in self._shards or self._shards[p].done for p in shard.parents):
                out.append(shard)
        return out

    def checkpoint(self, shard_id: str) -> str | None:
        """The last acknowledged sequence number of a shard (``None``: nothing acknowledged)."""
        shard = self._shards.get(shard_id)
        return shard.checkpoint if shard is not None else None

    @property
    def in_flight(self) -> int:
        """Records received and not yet acknowledged or given back."""
        return sum(len(s.outstanding) for s in self._shards.values())

    # -- the port ---------------------------------------------------------------------------

    async def receive(self, max_records: int) -> list[Delivery]:
        """The next records of one shard (at most ``max_records``, in sequence order), shards
        taken in turn; empty when no shard has records ready."""
        limit = max(1, min(int(max_records), MAX_GET_RECORDS))
        if self._listed_at is None:
            await self._list_shards()
        for _ in range(8):  # passes; each one that finds nothing must have changed something
            ended_before = self._ended_count()
            shards = self._eligible()
            for step in range(1, len(shards) + 1):
                index = (self._turn + step) % len(shards)
                batch = await self._read(shards[index], limit)
                if batch:
                    self._turn = index
                    return batch
            # Nothing ready. A shard that just ended may free its children (listed already,
            # or yet to be listed); an old listing may miss a reshard. Either way, look again.
            changed = self._ended_count() > ended_before
            stale = time.monotonic() - (self._listed_at or 0.0) >= self.shard_refresh_seconds
            if changed or stale:
                known = set(self._shards)
                await self._list_shards()
                changed = changed or set(self._shards) != known
            if not changed:
                break
        return []

    def _ended_count(self) -> int:
        return sum(s.ended for s in self._shards.values())

    async def _read(self, shard: _Shard, limit: int) -> list[Delivery]:
        kinesis = await self.clients.get("kinesis")
        for _ in range(4):  # a few reads past empty stretches of a shard that is behind
            if shard.iterator is None:
                shard.iterator = await self._iterator(kinesis, shard)
            try:
                page = await kinesis.get_records(ShardIterator=shard.iterator, Limit=limit)
            except ClientError as exc:
                if error_code(exc) != "ExpiredIteratorException":
                    raise
                shard.iterator = await self._iterator(kinesis, shard)
                page = await kinesis.get_records(ShardIterator=shard.iterator, Limit=limit)
            records = page.get("Records") or []
            shard.iterator = page.get("NextShardIterator")
            if records:
                last = str(records[-1]["SequenceNumber"])
                shard.resume = {
                    "ShardIteratorType": "AFTER_SEQUENCE_NUMBER",
                    "StartingSequenceNumber": last,
                }
                return [d for r in records for d in self._deliveries(shard, r)]
            behind = int(page.get("MillisBehindLatest") or 0)
            # A closed shard is over when Kinesis gives no next iterator; moto keeps giving
            # one, so a closed shard that is caught up counts as ended too.
            if shard.iterator is None or (shard.closed and behind == 0):
                shard.ended = True
                shard.iterator = None
                return []
            if behind == 0:
                return []
        return []

    async def _iterator(self, kinesis: Any, shard: _Shard) -> str:
        taken_at = datetime.now(UTC)
        iterator = await shard_iterator(kinesis, self.stream, shard.shard_id, shard.resume)
        if shard.resume["ShardIteratorType"] == "LATEST":
            # Pin "latest" to a time, so an iterator created again (expired, or after a
            # nack of nothing) does not skip records written in between.
            shard.resume = {"ShardIteratorType": "AT_TIMESTAMP", "Timestamp": taken_at}
        return iterator

    def _deliveries(self, shard: _Shard, record: dict[str, Any]) -> list[Delivery]:
        # a KPL aggregate is one delivery per user record, acknowledged with its aggregate
        sequence = str(record["SequenceNumber"])
        shard.outstanding[int(sequence)] = sequence
        return record_deliveries(self.stream, shard.shard_id, record)

    def _by_shard(self, deliveries: Sequence[Delivery]) -> dict[str, list[tuple[int, str]]]:
        out: dict[str, list[tuple[int, str]]] = {}
        for d in deliveries:
            shard_id, sequence = d.token
            out.setdefault(shard_id, []).append((int(sequence), sequence))
        return out

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        """The records are done: move each shard's checkpoint past them."""
        for shard_id, sequences in self._by_shard(deliveries).items():
            shard = self._shards.get(shard_id)
            if shard is None:
                continue
            for number, _ in sequences:
                shard.outstanding.pop(number, None)
            top = max(sequences)
            if shard.checkpoint is None or top[0] > int(shard.checkpoint):
                shard.checkpoint = top[1]

    async def nack(self, deliveries: Sequence[Delivery]) -> None:
        """Give records back: the next read of each shard starts again at the first record
        given back (records received after it come again too)."""
        for shard_id, sequences in self._by_shard(deliveries).items():
            shard = self._shards.get(shard_id)
            if shard is None:
                continue
            first = min(sequences)
            for number in [n for n in shard.outstanding if n >= first[0]]:
                del shard.outstanding[number]
            shard.resume = {
                "ShardIteratorType": "AT_SEQUENCE_NUMBER",
                "StartingSequenceNumber": first[1],
            }
            shard.iterator = None
            shard.ended = False


__all__ = [
    "MAX_BYTES_PER_CALL",
    "MAX_PARTITION_KEY_LENGTH",
    "MAX_RECORDS_PER_CALL",
    "KinesisSource",
    "KinesisTransport",
    "ShardStart",
    "partition_key_of",
]
