"""One held Kinesis shard: its lease writes and its reader.

Each held shard has its own reader: ``GetRecords`` from the checkpoint, the batch through the
engine (``app.processor.process``: run and post-process), then the checkpoint, fenced by the
lease counter. A batch whose outcomes could not be recorded is read again from the checkpoint
after a pause: it is never skipped. A worker that loses a lease (a renewal or checkpoint
refused, or no renewal for ``lease_seconds``) cancels that shard's reader at once and never
writes its checkpoint again; the new owner starts from the last checkpoint. A closed shard read
to its end is marked finished, and only then are its children (after a reshard) taken, so a
partition key's order survives splits and merges.

Every write of one lease (renew, checkpoint, finish, release, hand over) holds the reader's
lock: a renewal changes the counter a checkpoint is fenced by.

A KPL aggregate is deaggregated as the KCL does (``kinesis_shards.record_deliveries``): each user
record is its own delivery, the checkpoint moves past whole aggregates only. A record whose
batch keeps failing is parked in the poison store once its failed deliveries (counted in the
poison store, so the count survives a lease moving to another worker) reach the app's
``max_deliveries``; the reader then skips it, so the shard moves on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from tq_aws.backends.aws.clients import AwsClients, error_code, is_throttling
from tq_aws.backends.aws.kinesis_shards import (
    record_deliveries,
    resume_position,
    shard_iterator,
)
from tq_aws.core.leases import Lease
from tq_aws.ports import LeaseStore
from tq_aws.runtimes.ecs.options import WorkerOptions
from tq_aws.runtimes.ecs.stats import WorkerStats
from tq_aws.runtimes.ecs.timing import backoff, pause

if TYPE_CHECKING:
    from tq_aws.engine.engine import Engine

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ShardContext:
    """What every shard reader of one worker shares."""

    app: Engine
    stream: str
    store: LeaseStore
    clients: AwsClients
    options: WorkerOptions
    stats: WorkerStats
    closed: Callable[[str], bool]
    """Whether the last listing shows the shard closed."""
    finished: Callable[[], None]
    """Told when a shard is marked finished: its children may be taken now."""

    @property
    def emulated(self) -> bool:
        """On a local emulator (moto keeps giving a next iterator on a closed shard)."""
        return self.clients.settings.is_local


class ShardReader:
    """The reader of one shard whose lease this worker holds (see the module docstring).

    Args:
        context: what the worker's readers share.
        lease: the lease as taken (or renewed, for one the worker already owned).
        renewed_at: monotonic time at which the write that set ``lease.expiry`` was sent.
        stopping: a stop request came before the reader started.
    """

    def __init__(
        self, context: ShardContext, lease: Lease, renewed_at: float, *, stopping: bool = False
    ):
        self.context = context
        self.lease = lease
        self.renewed_at = renewed_at
        """Monotonic time at which the write that set ``lease.expiry`` was sent."""
        self.lock = asyncio.Lock()
        """Serializes this lease's writes: a renewal changes the counter a checkpoint is
        fenced by."""
        self.wake = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.stopping = stopping
        """Finish the batch in hand, checkpoint it, then release the lease."""
        self.handover = False
        self.lost = False
        self.finished = False
        self.released = False
        self.parked: set[str] = set()
        """Positions this reader settled after ``max_deliveries`` (recorded alone, or parked in
        the poison store): skipped when read again."""

    @property
    def shard_id(self) -> str:
        return self.lease.shard_id

    @property
    def active(self) -> bool:
        return not (self.lost or self.finished or self.released)

    def start(self) -> None:
        """Start reading, in a task of its own."""
        self.task = asyncio.create_task(self._consume(), name=f"tq-shard {self.shard_id}")

    def stop(self) -> None:
        """Finish the batch in hand, checkpoint it, then release the lease."""
        self.stopping = True
        self.wake.set()

    # -- the lease ----------------------------------------------------------------------------

    async def renew(self) -> None:
        """Renew the lease; lose it when refused; see a handover request in the renewal."""
        lease_seconds = self.context.options.lease_seconds
        async with self.lock:
            if not self.active:
                return
            sent = time.monotonic()
            try:
                renewed = await self.context.store.renew(
                    self.lease, now=time.time(), lease_seconds=lease_seconds
                )
            except Exception:
                logger.warning("renewing the lease of %s failed", self.shard_id, exc_info=True)
                return
            if renewed is None:
                self.lose("its lease was taken over")
                return
            self.lease = renewed
            self.renewed_at = sent
        if renewed.handover_to and not self.stopping:
            logger.info(
                "shard %s: handing the lease over to %s after the batch in hand",
                self.shard_id,
                renewed.handover_to,
            )
            self.handover = True
            self.stop()

    def lose(self, why: str) -> None:
        """The lease is no longer ours: stop reading at once, never checkpoint again."""
        if self.lost:
            return
        self.lost = True
        self.context.stats.leases_lost += 1
        logger.info("shard %s: stopped reading, %s", self.shard_id, why)
        task = self.task
        if task is not None and task is not asyncio.current_task():
            task.cancel()  # at once: the new owner reads from the last checkpoint

    async def release(self) -> None:
        """Give the lease up: to the worker that asked for it, else free for anyone."""
        store, stats = self.context.store, self.context.stats
        async with self.lock:
            if not self.active:
                return
            requester = self.lease.handover_to if self.handover else None
            try:
                if requester is not None:
                    given = await store.hand_over(
                        self.lease,
                        now=time.time(),
                        lease_seconds=self.context.options.lease_seconds,
                    )
                    released = given is not None
                else:
                    released = await store.release(self.lease)
            except Exception:
                logger.warning("releasing the lease of %s failed", self.shard_id, exc_info=True)
                return
            self.released = True
        if not released:
            return  # no longer ours: nothing to give back
        stats.leases_released += 1
        if requester is not None:
            stats.leases_handed_over += 1
            logger.info("shard %s: lease handed over to %s", self.shard_id, requester)
        else:
            logger.info("shard %s: lease released", self.shard_id)

    async def _checkpoint(self, sequence: str) -> bool:
        """Fenced by the lease counter; False (and the shard is dropped) when the lease is
        no longer ours."""
        async with self.lock:
            if not self.active:
                return False
            moved = await self.context.store.checkpoint(self.lease, sequence)
            if moved is None:
                self.lose("its checkpoint was refused (lease taken over)")
                return False
            self.lease = moved
        self.context.stats.checkpoints += 1
        return True

    async def _finish(self) -> None:
        async with self.lock:
            if not self.active:
                return
            if not await self.context.store.finish(self.lease):
                self.lose("it could not be marked finished (lease taken over)")
                return
            self.finished = True
        self.context.stats.shards_finished += 1
        logger.info("shard %s: closed and read to its end; finished", self.shard_id)
        self.context.finished()  # its children may be taken now

    # -- reading ------------------------------------------------------------------------------

    async def _consume(self) -> None:
        context = self.context
        kinesis = await context.clients.get("kinesis")
        iterator: str | None = None
        failures = 0
        while not self.stopping and self.active:
            try:
                if iterator is None:
                    iterator = await self._iterator(kinesis)
                try:
                    page = await kinesis.get_records(
                        ShardIterator=iterator, Limit=context.app.batch_size
                    )
                except ClientError as exc:
                    if error_code(exc) == "ExpiredIteratorException":
                        iterator = None
                        continue
                    raise
                records = page.get("Records") or []
                following = page.get("NextShardIterator")
                if records:
                    if self.stopping or not self.active:
                        break  # read, not started: the next reader reads them again
                    await self._process_records(records)
                    failures = 0
                    if not await self._checkpoint(str(records[-1]["SequenceNumber"])):
                        return
                    iterator = following
                    if following is not None:
                        continue
                behind = int(page.get("MillisBehindLatest") or 0)
                # A closed shard is over when Kinesis gives no next iterator; moto keeps giving
                # one, so on an emulator a closed shard that is caught up counts as ended too.
                caught_up_closed = context.closed(self.shard_id) and behind == 0
                if following is None or (context.emulated and caught_up_closed):
                    await self._finish()
                    return
                iterator = following
                if behind == 0:
                    await self._pause(context.options.poll_interval)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                delay = backoff(failures)
                if is_throttling(exc):
                    logger.info("shard %s throttled; pausing %.1f s", self.shard_id, delay)
                else:
                    context.stats.failed_batches += 1
                    logger.warning(
                        "shard %s: %s; reading again from the checkpoint in %.1f s",
                        self.shard_id,
                        exc,
                        delay,
                        exc_info=True,
                    )
                iterator = None  # never skip a batch: read again from the checkpoint
                await self._pause(delay)
        if self.active and self.stopping:
            await self.release()

    async def _iterator(self, kinesis: Any) -> str:
        position = resume_position(self.lease.checkpoint, self.lease.start_at)
        return await shard_iterator(kinesis, self.context.stream, self.shard_id, position)

    async def _process_records(self, records: list[dict[str, Any]]) -> None:
        """Run the records' deliveries; raise when they must be read again (not recorded, and
        not all parked)."""
        context = self.context
        deliveries = [
            d
            for r in records
            for d in record_deliveries(context.stream, self.shard_id, r)
            if d.position not in self.parked
        ]
        if not deliveries:
            return
        processor = context.app.processor
        try:
            await processor.process(deliveries)
        except Exception as exc:
            try:
                parked = await processor.settle_unrecorded(deliveries, exc)
            except Exception:
                logger.warning("shard %s: parking failed", self.shard_id, exc_info=True)
                raise exc from None
            self.parked.update(d.position for d in parked)
            context.stats.records_parked += len(parked)
            if any(d.task is not None and d.position not in self.parked for d in deliveries):
                raise
            # every record that could run is parked now: the shard moves on past them
        context.stats.batches += 1
        context.stats.records += len(deliveries)

    async def _pause(self, seconds: float) -> None:
        await pause(self.wake, seconds)
        self.wake.clear()


__all__ = ["ShardContext", "ShardReader"]
