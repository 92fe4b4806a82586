"""The ECS worker's lease round: which Kinesis shards this worker reads.

Shards are shared between workers through leases in the stores' DynamoDB table
(``tq_aws.core.leases``). Every ``renew_every`` seconds a worker renews the leases it holds
(each renewal bumps the lease counter, the fencing token of its checkpoints), lists the shards
now and then, reads every lease once and plans (``plan_round``): below its fair share
``ceil(shards / live workers)`` it takes free or expired leases; when there are none, it asks
the most-loaded owner to hand one over. The owner sees the request at its next renewal, stops
reading that shard, finishes and checkpoints the batch in hand, and hands the lease to the
requester in one conditional write (the lease is never free in between), so a balancing move
never runs a record twice. Each held shard is read by a ``ShardReader``
(``tq_aws.runtimes.ecs.kinesis_consumer``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from tq_aws.backends.aws.clients import AwsClients
from tq_aws.backends.aws.kinesis_shards import ShardInfo, list_shards
from tq_aws.core.leases import Lease, ShardSpec, plan_round
from tq_aws.ports import LeaseStore
from tq_aws.runtimes.ecs.kinesis_consumer import ShardContext, ShardReader
from tq_aws.runtimes.ecs.options import WorkerOptions
from tq_aws.runtimes.ecs.stats import WorkerStats
from tq_aws.runtimes.ecs.timing import pause

if TYPE_CHECKING:
    from tq_aws.engine.engine import Engine

logger = logging.getLogger(__name__)


class ShardLeases:
    """The leases one worker holds on one stream, and their readers (see the module docstring).

    Args:
        app: the engine that runs the batches.
        stream: the stream name.
        store: the lease store.
        clients: AWS clients (Kinesis).
        options: the worker's options.
        stats: the worker's counters.
        worker_id: this worker's lease owner name.
    """

    def __init__(
        self,
        app: Engine,
        *,
        stream: str,
        store: LeaseStore,
        clients: AwsClients,
        options: WorkerOptions,
        stats: WorkerStats,
        worker_id: str,
    ):
        self.context = ShardContext(
            app,
            stream,
            store,
            clients,
            options,
            stats,
            closed=self._closed,
            finished=self._finished,
        )
        self.worker_id = worker_id
        self.stopping = False
        self._readers: dict[str, ShardReader] = {}
        self._shard_info: dict[str, ShardInfo] = {}
        self._listed_at: float | None = None
        self._refresh_now = False
        self._requested: dict[str, float] = {}
        self._wake = asyncio.Event()
        self._done = False
        self._task: asyncio.Task[None] | None = None

    @property
    def held_shards(self) -> list[str]:
        """Shard ids whose lease this worker holds and reads."""
        return sorted(s for s, reader in self._readers.items() if reader.active)

    # -- the loop -----------------------------------------------------------------------------

    def start(self) -> asyncio.Task[None]:
        """Start the lease loop; it runs until ``close``."""
        self._task = asyncio.create_task(self._loop(), name="tq-leases")
        return self._task

    def stop_reading(self) -> None:
        """No more takes or balancing; every reader finishes its batch in hand, checkpoints
        it and releases its lease. The loop keeps renewing until ``close``."""
        self.stopping = True
        for reader in self._readers.values():
            reader.stop()

    def busy(self) -> list[asyncio.Task[None]]:
        """The readers still running (some may be starting from a take that was in flight)."""
        return [r.task for r in self._readers.values() if r.task and not r.task.done()]

    async def close(self) -> None:
        """End the lease loop, then give back every lease still held (readers cancelled at
        the grace did not checkpoint)."""
        self._done = True
        self._wake.set()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
        await asyncio.gather(*(reader.release() for reader in list(self._readers.values())))

    async def _loop(self) -> None:
        renew_every = self.context.options.renew_every
        while not self._done:
            started = time.monotonic()
            try:
                await self._round()
            except Exception:
                logger.warning("lease round of worker %s failed", self.worker_id, exc_info=True)
            self._check_deadlines()
            await self._reap()
            if self._done:
                return
            delay = max(0.0, renew_every - (time.monotonic() - started))
            await pause(self._wake, delay)
            self._wake.clear()

    async def _round(self) -> None:
        await asyncio.gather(*(reader.renew() for reader in list(self._readers.values())))
        self._check_deadlines()
        if not self.stopping:
            await self._balance()

    def _check_deadlines(self) -> None:
        now = time.monotonic()
        lease_seconds = self.context.options.lease_seconds
        for reader in self._readers.values():
            if reader.active and now > reader.renewed_at + lease_seconds:
                reader.lose("its lease ran out before it could be renewed")

    async def _reap(self) -> None:
        """Forget shards whose reader has ended; give back a lease whose reader ended without
        releasing it (its release failed, or it stopped on an error)."""
        for shard_id, reader in list(self._readers.items()):
            if reader.task is None or not reader.task.done():
                continue
            if reader.active and not self.stopping:
                await reader.release()
            if not reader.active:
                del self._readers[shard_id]

    # -- the plan -----------------------------------------------------------------------------

    async def _balance(self) -> None:
        store, stream = self.context.store, self.context.stream
        stale = (
            self._listed_at is None
            or time.monotonic() - self._listed_at >= self.context.options.shard_refresh_seconds
        )
        if stale or self._refresh_now:
            await self._list_shards()
        leases = await store.get_all(stream, list(self._shard_info))
        missing = [s for s in self._shard_info if s not in leases]
        if missing:
            await store.create(stream, [self._spec(s) for s in missing])
            leases.update(await store.get_all(stream, missing))
        now = time.time()
        # Leases handed over to this worker (or left by an earlier run under the same id) are
        # read first, so the plan counts them as held.
        adopt = [
            lease
            for lease in leases.values()
            if lease.owner == self.worker_id
            and lease.held(now)
            and not lease.finished
            and lease.shard_id not in self._readers
        ]
        if adopt:
            await asyncio.gather(*(self._adopt(lease) for lease in adopt))
        self._forget_requests(leases, now)
        held = sum(1 for r in self._readers.values() if r.active and not r.stopping)
        plan = plan_round(leases, self.worker_id, now, held=held, requested=len(self._requested))
        takes = [lease for lease in plan.take if lease.shard_id not in self._readers]
        if takes:
            await asyncio.gather(*(self._take(lease) for lease in takes))
        if plan.handover is not None and not self.stopping:
            asked = await store.request_handover(plan.handover, self.worker_id, now=time.time())
            if asked:
                self.context.stats.handovers_requested += 1
                self._requested[plan.handover.shard_id] = time.monotonic()
                logger.info(
                    "asked %s to hand over shard %s (fair share %d of %d workers)",
                    plan.handover.owner,
                    plan.handover.shard_id,
                    plan.share,
                    plan.live_workers,
                )

    def _forget_requests(self, leases: dict[str, Lease], now: float) -> None:
        """Drop handover requests that were answered, overtaken or left unanswered."""
        limit = time.monotonic() - 2 * self.context.options.lease_seconds
        for shard_id, asked_at in list(self._requested.items()):
            lease = leases.get(shard_id)
            if (
                lease is None
                or asked_at < limit
                or shard_id in self._readers
                or not lease.held(now)
                or lease.handover_to != self.worker_id
            ):
                del self._requested[shard_id]

    def _spec(self, shard_id: str) -> ShardSpec:
        info = self._shard_info[shard_id]
        born_of_reshard = any(p in self._shard_info for p in info.parents)
        start_at = None
        if self.context.options.initial_position == "LATEST" and not born_of_reshard:
            start_at = time.time()
        return ShardSpec(shard_id, info.parents, start_at)

    async def _take(self, lease: Lease) -> None:
        if self.stopping:  # a stop request arrived while this round was reading
            return
        sent = time.monotonic()
        taken = await self.context.store.take(
            lease, self.worker_id, now=time.time(), lease_seconds=self.context.options.lease_seconds
        )
        if taken is None:
            return  # someone else was first: normal
        self._start(taken, sent)

    async def _adopt(self, lease: Lease) -> None:
        """Start reading a lease this worker already owns: renew it first, which also proves
        that the counter read is current."""
        if self.stopping:
            return
        sent = time.monotonic()
        renewed = await self.context.store.renew(
            lease, now=time.time(), lease_seconds=self.context.options.lease_seconds
        )
        if renewed is not None and renewed.shard_id not in self._readers:
            self._start(renewed, sent)

    def _start(self, taken: Lease, sent: float) -> None:
        self.context.stats.leases_taken += 1
        self._requested.pop(taken.shard_id, None)
        reader = ShardReader(self.context, taken, sent, stopping=self.stopping)
        self._readers[taken.shard_id] = reader
        reader.start()
        logger.info(
            "shard %s: lease taken (counter %d, checkpoint %s)",
            taken.shard_id,
            taken.counter,
            taken.checkpoint,
        )

    # -- the shards ---------------------------------------------------------------------------

    async def _list_shards(self) -> None:
        kinesis = await self.context.clients.get("kinesis")
        shards = await list_shards(kinesis, self.context.stream)
        self._shard_info = {info.shard_id: info for info in shards}
        self._listed_at = time.monotonic()
        self._refresh_now = False

    def _closed(self, shard_id: str) -> bool:
        info = self._shard_info.get(shard_id)
        return info is not None and info.closed

    def _finished(self) -> None:
        self._refresh_now = True
        self._wake.set()


__all__ = ["ShardLeases"]
