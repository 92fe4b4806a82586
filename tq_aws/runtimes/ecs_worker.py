"""The long-running worker (ECS, or any host): Kinesis shards under leases, SQS queues.

``EcsWorker(app).run()`` (or ``tq-aws worker --app module:attr``) consumes what a
``TaskQueue.aws(...)`` app's routing names: the Kinesis stream and every SQS queue.

Kinesis
-------
Shards are shared between workers through leases in the stores' DynamoDB table
(``tq_aws.core.leases``). Every ``renew_every`` seconds a worker renews the leases it holds
(each renewal bumps the lease counter, the fencing token of its checkpoints), lists the shards
now and then, reads every lease once and plans (``plan_round``): below its fair share
``ceil(shards / live workers)`` it takes free or expired leases; when there are none, it asks
the most-loaded owner to hand one over. The owner sees the request at its next renewal, stops
reading that shard, finishes and checkpoints the batch in hand, and hands the lease to the
requester in one conditional write (the lease is never free in between), so a balancing move
never runs a record twice.

Each held shard has its own reader: ``GetRecords`` from the checkpoint, the batch through the
engine (``app.processor.process``: run and post-process), then the checkpoint, fenced by the
lease counter. A batch whose outcomes could not be recorded is read again from the checkpoint
after a pause: it is never skipped. A worker that loses a lease (a renewal or checkpoint
refused, or no renewal for ``lease_seconds``) cancels that shard's reader at once and never
writes its checkpoint again; the new owner starts from the last checkpoint. A closed shard read
to its end is marked finished, and only then are its children (after a reshard) taken, so a
partition key's order survives splits and merges.

SQS
---
One loop per queue: ``ReceiveMessage`` with long polling (``sqs_wait_seconds``), one batch
prefetched while the current one runs, the visibility of every message in hand extended every
``heartbeat_every`` seconds (so long tasks are not delivered twice), ``DeleteMessageBatch`` once
the batch's outcomes are recorded, visibility 0 when they could not be.

Stopping
--------
``request_stop()`` (SIGTERM in the CLI): no new reads, takes or receives; running batches get
``grace_seconds`` to finish and be checkpointed or deleted; handed-off tasks get what is left of
the grace (``AsyncTaskManager.shutdown``). Prefetched SQS messages not yet started go back at
once (visibility 0). What is still running at the end of the grace is cancelled and handed
back: SQS messages to visibility 0, shards without a checkpoint. Leases are released, so other
workers take the shards at once instead of after ``lease_seconds``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from botocore.exceptions import ClientError

from tq_aws.backends.aws.clients import AwsClients
from tq_aws.backends.aws.dynamodb.lease_store import DynamoLeaseStore
from tq_aws.backends.aws.factory import AwsResources
from tq_aws.backends.aws.sqs import MAX_BATCH_ENTRIES, SqsSource
from tq_aws.core.codec import decode_task
from tq_aws.core.leases import Lease, ShardSpec, plan_round
from tq_aws.errors import CodecError, ConfigurationError
from tq_aws.ports import Delivery, LeaseStore

if TYPE_CHECKING:
    from tq_aws.engine.engine import Engine

logger = logging.getLogger("tq_aws.worker")

InitialPosition = Literal["TRIM_HORIZON", "LATEST"]

THROTTLED = frozenset(
    {"ProvisionedThroughputExceededException", "LimitExceededException", "KMSThrottlingException"}
)
MAX_BACKOFF = 30.0


@dataclass(slots=True)
class WorkerStats:
    """Counters of one worker's run."""

    batches: int = 0
    records: int = 0
    failed_batches: int = 0
    checkpoints: int = 0
    leases_taken: int = 0
    leases_lost: int = 0
    leases_handed_over: int = 0
    leases_released: int = 0
    handovers_requested: int = 0
    shards_finished: int = 0
    sqs_heartbeats: int = 0
    sqs_handed_back: int = 0
    cancelled_at_grace: int = 0


@dataclass(frozen=True, slots=True)
class WorkerReport:
    """What a worker did, returned by ``run`` once it has stopped.

    Attributes:
        stats: the counters.
        abandoned_task_ids: handed-off tasks still running at the end of the grace (their
            stored record and delivery watchdog bring them back).
    """

    stats: WorkerStats
    abandoned_task_ids: list[str] = field(default_factory=list)


@dataclass(eq=False, slots=True)
class _ShardRun:
    lease: Lease
    renewed_at: float
    """Monotonic time at which the write that set ``lease.expiry`` was sent."""
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    """Serializes this lease's writes: a renewal changes the counter a checkpoint is fenced by."""
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    stopping: bool = False
    """Finish the batch in hand, checkpoint it, then release the lease."""
    handover: bool = False
    lost: bool = False
    finished: bool = False
    released: bool = False

    @property
    def shard_id(self) -> str:
        return self.lease.shard_id

    @property
    def active(self) -> bool:
        return not (self.lost or self.finished or self.released)


@dataclass(slots=True)
class _ShardInfo:
    parents: tuple[str, ...]
    closed: bool


class EcsWorker:
    """A worker for the Kinesis stream and SQS queues of an AWS TaskQueue (see the module
    docstring).

    Args:
        app: the TaskQueue (``TaskQueue.aws(...)`` or ``TaskQueue.from_env()``): its executors,
            engine and ``resources`` (stream, queues, table, clients).
        worker_id: this worker's lease owner name; unique per process (default:
            ``app.worker_id``, ``<host>-<pid>-<ms>``).
        lease_seconds: how long a lease lasts without renewal; a dead worker's shards are taken
            over after this long.
        renew_every: seconds between lease rounds (renew, list, take, balance); well below
            ``lease_seconds``.
        poll_interval: seconds a shard reader waits when it has caught up.
        sqs_wait_seconds: long-poll time of ``ReceiveMessage`` (0..20).
        sqs_visibility_timeout: seconds a received message stays hidden; extended every
            ``heartbeat_every`` seconds while the worker holds it.
        heartbeat_every: seconds between visibility extensions (default: a third of
            ``sqs_visibility_timeout``).
        grace_seconds: how long, after a stop request, running batches and handed-off tasks
            may take before they are cancelled and handed back.
        shard_refresh_seconds: how often the shards are listed again (a reshard is noticed
            within this; a shard read to its end triggers a listing at once).
        initial_position: where a shard with no checkpoint is read from: ``TRIM_HORIZON``
            (everything kept) or ``LATEST`` (records written from the second its lease was
            created on: ``AT_TIMESTAMP`` travels in whole seconds, so records of that second
            written just before are read too). Shards born from a reshard are always read
            from their start.
        stream, queue_urls, clients: override what ``app.resources`` gives.
        lease_store: override the lease store (default: ``DynamoLeaseStore`` on the app's
            table).

    Example:
        >>> app = TaskQueue.from_env()
        >>> worker = EcsWorker(app, lease_seconds=10, grace_seconds=30)
        >>> loop.add_signal_handler(signal.SIGTERM, worker.request_stop)
        >>> report = await worker.run()
    """

    def __init__(
        self,
        app: Engine,
        *,
        worker_id: str | None = None,
        lease_seconds: float = 10.0,
        renew_every: float = 3.0,
        poll_interval: float = 1.0,
        sqs_wait_seconds: int = 20,
        sqs_visibility_timeout: int = 60,
        heartbeat_every: float | None = None,
        grace_seconds: float = 30.0,
        shard_refresh_seconds: float = 30.0,
        initial_position: InitialPosition = "TRIM_HORIZON",
        stream: str | None = None,
        queue_urls: Sequence[str] | None = None,
        clients: AwsClients | None = None,
        lease_store: LeaseStore | None = None,
    ):
        _positive("lease_seconds", lease_seconds)
        _positive("renew_every", renew_every)
        if renew_every >= lease_seconds:
            raise ConfigurationError(
                f"renew_every={renew_every!r} is not below lease_seconds={lease_seconds!r}; "
                "renew well within the lease (e.g. a third of it)"
            )
        _positive("poll_interval", poll_interval)
        _positive("shard_refresh_seconds", shard_refresh_seconds)
        if not grace_seconds >= 0:
            raise ConfigurationError(f"grace_seconds={grace_seconds!r}; give seconds >= 0")
        if not 0 <= sqs_wait_seconds <= 20:
            raise ConfigurationError(f"sqs_wait_seconds={sqs_wait_seconds!r}; give 0..20")
        if not 1 <= sqs_visibility_timeout <= 43_200:
            raise ConfigurationError(
                f"sqs_visibility_timeout={sqs_visibility_timeout!r}; give 1..43200 seconds"
            )
        heartbeat = sqs_visibility_timeout / 3 if heartbeat_every is None else heartbeat_every
        _positive("heartbeat_every", heartbeat)
        if heartbeat >= sqs_visibility_timeout:
            raise ConfigurationError(
                f"heartbeat_every={heartbeat!r} is not below sqs_visibility_timeout="
                f"{sqs_visibility_timeout!r}; extend the visibility before it runs out"
            )
        if initial_position not in ("TRIM_HORIZON", "LATEST"):
            raise ConfigurationError(
                f"initial_position={initial_position!r}; give 'TRIM_HORIZON' or 'LATEST'"
            )
        resources = app.resources if isinstance(app.resources, AwsResources) else None
        if stream is None and queue_urls is None and resources is None:
            raise ConfigurationError(
                "the app has no AWS resources: build it with TaskQueue.aws(...) or "
                "TaskQueue.from_env() (TQ_STREAM / TQ_QUEUE_URL), or give stream= / queue_urls="
            )
        self.app = app
        self.worker_id = worker_id or app.worker_id
        if stream is None and resources is not None:
            stream = resources.routing.stream
        if queue_urls is None and resources is not None:
            queue_urls = resources.routing.queue_urls()
        self.stream = stream
        self.queue_urls = list(queue_urls or ())
        if not self.stream and not self.queue_urls:
            raise ConfigurationError("nothing to consume: give a stream or SQS queue URLs")
        if clients is None:
            if resources is None:
                raise ConfigurationError("give clients= (AwsClients) when the app has no resources")
            clients = resources.clients
        self.clients: AwsClients = clients
        self._emulated = self.clients.settings.is_local
        if self.stream and lease_store is None:
            if resources is None:
                raise ConfigurationError("give lease_store= when the app has no resources")
            lease_store = DynamoLeaseStore(resources.table, resources.settings)
        self.leases: LeaseStore | None = lease_store
        self.lease_seconds = float(lease_seconds)
        self.renew_every = float(renew_every)
        self.poll_interval = float(poll_interval)
        self.sqs_wait_seconds = int(sqs_wait_seconds)
        self.sqs_visibility_timeout = int(sqs_visibility_timeout)
        self.heartbeat_every = float(heartbeat)
        self.grace_seconds = float(grace_seconds)
        self.shard_refresh_seconds = float(shard_refresh_seconds)
        self.initial_position = initial_position
        self.stats = WorkerStats()
        self._stop = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = False
        self._shards: dict[str, _ShardRun] = {}
        self._shard_info: dict[str, _ShardInfo] = {}
        self._listed_at: float | None = None
        self._refresh_now = False
        self._requested: dict[str, float] = {}
        self._lease_wake = asyncio.Event()
        self._lease_loop_done = False
        self._sqs_wake = asyncio.Event()

    # -- control ------------------------------------------------------------------------------

    def request_stop(self) -> None:
        """Ask the worker to stop (from a signal handler or any thread): it drains within the
        grace period and ``run`` returns."""
        loop = self._loop
        if loop is None:
            self._stop.set()
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._stop.set()
        else:
            loop.call_soon_threadsafe(self._stop.set)

    @property
    def stopping(self) -> bool:
        """A stop was requested and the worker is draining (or has stopped)."""
        return self._stopping

    @property
    def held_shards(self) -> list[str]:
        """Shard ids whose lease this worker holds and reads."""
        return sorted(s for s, run in self._shards.items() if run.active)

    async def run(self, stop: asyncio.Event | None = None) -> WorkerReport:
        """Consume until ``stop`` is set or ``request_stop()`` is called, then drain (see the
        module docstring) and return what was done.

        Raises:
            Exception: a background loop ended on an unexpected error (after draining).
        """
        self._loop = asyncio.get_running_loop()
        background: list[asyncio.Task[None]] = []
        if self.stream:
            background.append(asyncio.create_task(self._lease_loop(), name="tq-leases"))
        for url in self.queue_urls:
            background.append(asyncio.create_task(self._sqs_loop(url), name=f"tq-sqs {url}"))
        fire_due = getattr(self.app.scheduler, "fire_due", None)
        if fire_due is not None:
            background.append(asyncio.create_task(self._fire_schedules(fire_due)))
        waiters = [asyncio.create_task(self._stop.wait())]
        if stop is not None:
            waiters.append(asyncio.create_task(stop.wait()))
        logger.info(
            "worker %s started: stream=%s queues=%s", self.worker_id, self.stream, self.queue_urls
        )
        try:
            await asyncio.wait([*waiters, *background], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
        crashed = [
            error
            for t in background
            if t.done() and not t.cancelled() and (error := t.exception()) is not None
        ]
        report = await self._drain(background)
        if crashed:
            raise crashed[0]
        return report

    async def _drain(self, background: list[asyncio.Task[None]]) -> WorkerReport:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.grace_seconds
        logger.info(
            "worker %s stopping: draining within %.1f s", self.worker_id, self.grace_seconds
        )
        self._stopping = True
        self._sqs_wake.set()
        for run in self._shards.values():
            run.stopping = True
            run.wake.set()
        handed_off = asyncio.create_task(self.app.async_tasks.shutdown(self.grace_seconds))
        lease_loop = background[0] if self.stream else None
        work = [t for t in background if t is not lease_loop]
        # Shard readers may still be starting from a take that was in flight: wait for those
        # too, until none is left or the grace is over.
        while True:
            pending = [t for t in work if not t.done()]
            pending += [r.task for r in self._shards.values() if r.task and not r.task.done()]
            remaining = deadline - loop.time()
            if not pending or remaining <= 0:
                break
            await asyncio.wait(pending, timeout=remaining)
        for task in pending:
            task.cancel()
            self.stats.cancelled_at_grace += 1
        if pending:
            logger.warning(
                "worker %s: %d reader(s) still busy after the grace; handed back",
                self.worker_id,
                len(pending),
            )
            await asyncio.gather(*pending, return_exceptions=True)
        # The lease loop renewed the leases while the batches drained; now stop it, then give
        # back every lease still held (readers cancelled at the grace did not checkpoint).
        self._lease_loop_done = True
        self._lease_wake.set()
        if lease_loop is not None:
            await asyncio.gather(lease_loop, return_exceptions=True)
        await asyncio.gather(*(self._release(run) for run in list(self._shards.values())))
        result = await handed_off
        if result.abandoned_task_ids:
            logger.warning(
                "worker %s: %d handed-off task(s) still running after the grace: %s",
                self.worker_id,
                len(result.abandoned_task_ids),
                result.abandoned_task_ids,
            )
        logger.info("worker %s stopped: %s", self.worker_id, self.stats)
        return WorkerReport(self.stats, list(result.abandoned_task_ids))

    # -- leases -------------------------------------------------------------------------------

    async def _lease_loop(self) -> None:
        while not self._lease_loop_done:
            started = time.monotonic()
            try:
                await self._lease_round()
            except Exception:
                logger.warning("lease round of worker %s failed", self.worker_id, exc_info=True)
            self._check_deadlines()
            await self._reap()
            if self._lease_loop_done:
                return
            delay = max(0.0, self.renew_every - (time.monotonic() - started))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._lease_wake.wait(), timeout=delay)
            self._lease_wake.clear()

    async def _lease_round(self) -> None:
        await asyncio.gather(*(self._renew(run) for run in list(self._shards.values())))
        self._check_deadlines()
        if not self._stopping:
            await self._balance()

    async def _renew(self, run: _ShardRun) -> None:
        assert self.leases is not None
        async with run.lock:
            if not run.active:
                return
            sent = time.monotonic()
            try:
                renewed = await self.leases.renew(
                    run.lease, now=time.time(), lease_seconds=self.lease_seconds
                )
            except Exception:
                logger.warning("renewing the lease of %s failed", run.shard_id, exc_info=True)
                return
            if renewed is None:
                self._lose(run, "its lease was taken over")
                return
            run.lease = renewed
            run.renewed_at = sent
        if renewed.handover_to and not run.stopping:
            logger.info(
                "shard %s: handing the lease over to %s after the batch in hand",
                run.shard_id,
                renewed.handover_to,
            )
            run.stopping = run.handover = True
            run.wake.set()

    def _check_deadlines(self) -> None:
        now = time.monotonic()
        for run in self._shards.values():
            if run.active and now > run.renewed_at + self.lease_seconds:
                self._lose(run, "its lease ran out before it could be renewed")

    def _lose(self, run: _ShardRun, why: str) -> None:
        if run.lost:
            return
        run.lost = True
        self.stats.leases_lost += 1
        logger.info("shard %s: stopped reading, %s", run.shard_id, why)
        task = run.task
        if task is not None and task is not asyncio.current_task():
            task.cancel()  # at once: the new owner reads from the last checkpoint

    async def _reap(self) -> None:
        """Forget shards whose reader has ended; give back a lease whose reader ended without
        releasing it (its release failed, or it stopped on an error)."""
        for shard_id, run in list(self._shards.items()):
            if run.task is None or not run.task.done():
                continue
            if run.active and not self._stopping:
                await self._release(run)
            if not run.active:
                del self._shards[shard_id]

    async def _balance(self) -> None:
        assert self.leases is not None and self.stream is not None
        stale = (
            self._listed_at is None
            or time.monotonic() - self._listed_at >= self.shard_refresh_seconds
        )
        if stale or self._refresh_now:
            await self._list_shards()
        leases = await self.leases.get_all(self.stream, list(self._shard_info))
        missing = [s for s in self._shard_info if s not in leases]
        if missing:
            await self.leases.create(self.stream, [self._spec(s) for s in missing])
            leases.update(await self.leases.get_all(self.stream, missing))
        now = time.time()
        # Leases handed over to this worker (or left by an earlier run under the same id) are
        # read first, so the plan counts them as held.
        adopt = [
            lease
            for lease in leases.values()
            if lease.owner == self.worker_id
            and lease.held(now)
            and not lease.finished
            and lease.shard_id not in self._shards
        ]
        if adopt:
            await asyncio.gather(*(self._adopt(lease) for lease in adopt))
        self._forget_requests(leases, now)
        held = sum(1 for run in self._shards.values() if run.active and not run.stopping)
        plan = plan_round(leases, self.worker_id, now, held=held, requested=len(self._requested))
        takes = [lease for lease in plan.take if lease.shard_id not in self._shards]
        if takes:
            await asyncio.gather(*(self._take(lease) for lease in takes))
        if plan.handover is not None and not self._stopping:
            asked = await self.leases.request_handover(
                plan.handover, self.worker_id, now=time.time()
            )
            if asked:
                self.stats.handovers_requested += 1
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
        limit = time.monotonic() - 2 * self.lease_seconds
        for shard_id, asked_at in list(self._requested.items()):
            lease = leases.get(shard_id)
            if (
                lease is None
                or asked_at < limit
                or shard_id in self._shards
                or not lease.held(now)
                or lease.handover_to != self.worker_id
            ):
                del self._requested[shard_id]

    def _spec(self, shard_id: str) -> ShardSpec:
        info = self._shard_info[shard_id]
        born_of_reshard = any(p in self._shard_info for p in info.parents)
        start_at = None
        if self.initial_position == "LATEST" and not born_of_reshard:
            start_at = time.time()
        return ShardSpec(shard_id, info.parents, start_at)

    async def _take(self, lease: Lease) -> None:
        assert self.leases is not None
        if self._stopping:  # a stop request arrived while this round was reading
            return
        sent = time.monotonic()
        taken = await self.leases.take(
            lease, self.worker_id, now=time.time(), lease_seconds=self.lease_seconds
        )
        if taken is None:
            return  # someone else was first: normal
        self._start(taken, sent)

    async def _adopt(self, lease: Lease) -> None:
        """Start reading a lease this worker already owns: renew it first, which also proves
        that the counter read is current."""
        assert self.leases is not None
        if self._stopping:
            return
        sent = time.monotonic()
        renewed = await self.leases.renew(lease, now=time.time(), lease_seconds=self.lease_seconds)
        if renewed is not None and renewed.shard_id not in self._shards:
            self._start(renewed, sent)

    def _start(self, taken: Lease, sent: float) -> None:
        self.stats.leases_taken += 1
        self._requested.pop(taken.shard_id, None)
        run = _ShardRun(taken, renewed_at=sent)
        self._shards[taken.shard_id] = run
        if self._stopping:
            run.stopping = True
        run.task = asyncio.create_task(self._consume(run), name=f"tq-shard {taken.shard_id}")
        logger.info(
            "shard %s: lease taken (counter %d, checkpoint %s)",
            taken.shard_id,
            taken.counter,
            taken.checkpoint,
        )

    async def _release(self, run: _ShardRun) -> None:
        """Give the lease up: to the worker that asked for it, else free for anyone."""
        assert self.leases is not None
        async with run.lock:
            if not run.active:
                return
            requester = run.lease.handover_to if run.handover else None
            try:
                if requester is not None:
                    given = await self.leases.hand_over(
                        run.lease, now=time.time(), lease_seconds=self.lease_seconds
                    )
                    released = given is not None
                else:
                    released = await self.leases.release(run.lease)
            except Exception:
                logger.warning("releasing the lease of %s failed", run.shard_id, exc_info=True)
                return
            run.released = True
        if not released:
            return  # no longer ours: nothing to give back
        self.stats.leases_released += 1
        if requester is not None:
            self.stats.leases_handed_over += 1
            logger.info("shard %s: lease handed over to %s", run.shard_id, requester)
        else:
            logger.info("shard %s: lease released", run.shard_id)

    async def _list_shards(self) -> None:
        kinesis = await self.clients.get("kinesis")
        args: dict[str, Any] = {"StreamName": self.stream}
        found: dict[str, _ShardInfo] = {}
        while True:
            page = await kinesis.list_shards(**args)
            for info in page.get("Shards", []):
                parents = tuple(
                    str(p)
                    for p in (info.get("ParentShardId"), info.get("AdjacentParentShardId"))
                    if p
                )
                closed = "EndingSequenceNumber" in (info.get("SequenceNumberRange") or {})
                found[str(info["ShardId"])] = _ShardInfo(parents, closed)
            token = page.get("NextToken")
            if not token:
                break
            args = {"NextToken": token}
        self._shard_info = found
        self._listed_at = time.monotonic()
        self._refresh_now = False

    # -- reading a shard ------------------------------------------------------------------

    async def _consume(self, run: _ShardRun) -> None:
        kinesis = await self.clients.get("kinesis")
        iterator: str | None = None
        failures = 0
        while not run.stopping and run.active:
            try:
                if iterator is None:
                    iterator = await self._iterator(kinesis, run.lease)
                try:
                    page = await kinesis.get_records(
                        ShardIterator=iterator, Limit=self.app.batch_size
                    )
                except ClientError as exc:
                    if _code(exc) == "ExpiredIteratorException":
                        iterator = None
                        continue
                    raise
                records = page.get("Records") or []
                following = page.get("NextShardIterator")
                if records:
                    if run.stopping or not run.active:
                        break  # read, not started: the next reader reads them again
                    await self._process_records(run, records)
                    failures = 0
                    if not await self._checkpoint(run, str(records[-1]["SequenceNumber"])):
                        return
                    iterator = following
                    if following is not None:
                        continue
                behind = int(page.get("MillisBehindLatest") or 0)
                info = self._shard_info.get(run.shard_id)
                # A closed shard is over when Kinesis gives no next iterator; moto keeps giving
                # one, so on an emulator a closed shard that is caught up counts as ended too.
                caught_up_closed = info is not None and info.closed and behind == 0
                if following is None or (self._emulated and caught_up_closed):
                    await self._finish(run)
                    return
                iterator = following
                if behind == 0:
                    await self._pause(run, self.poll_interval)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                delay = _backoff(failures)
                if isinstance(exc, ClientError) and _code(exc) in THROTTLED:
                    logger.info("shard %s throttled; pausing %.1f s", run.shard_id, delay)
                else:
                    self.stats.failed_batches += 1
                    logger.warning(
                        "shard %s: %s; reading again from the checkpoint in %.1f s",
                        run.shard_id,
                        exc,
                        delay,
                        exc_info=True,
                    )
                iterator = None  # never skip a batch: read again from the checkpoint
                await self._pause(run, delay)
        if run.active and run.stopping:
            await self._release(run)

    async def _process_records(self, run: _ShardRun, records: list[dict[str, Any]]) -> None:
        deliveries = [self._delivery(run.shard_id, r) for r in records]
        await self.app.processor.process(deliveries)
        self.stats.batches += 1
        self.stats.records += len(deliveries)

    def _delivery(self, shard_id: str, record: dict[str, Any]) -> Delivery:
        sequence = str(record["SequenceNumber"])
        data = bytes(record["Data"])
        delivery = Delivery(
            queue_id=self.stream or "",
            data=data,
            position=f"{self.stream}/{shard_id}/{sequence}",
            partition_key=record.get("PartitionKey"),
            token=(shard_id, sequence),
        )
        try:
            delivery.task = decode_task(data)
        except CodecError as exc:
            delivery.error = exc
        return delivery

    async def _iterator(self, kinesis: Any, lease: Lease) -> str:
        args: dict[str, Any] = {"StreamName": self.stream, "ShardId": lease.shard_id}
        if lease.checkpoint is not None:
            args.update(
                ShardIteratorType="AFTER_SEQUENCE_NUMBER",
                StartingSequenceNumber=lease.checkpoint,
            )
        elif lease.start_at is not None:
            args.update(
                ShardIteratorType="AT_TIMESTAMP",
                Timestamp=datetime.fromtimestamp(lease.start_at, UTC),
            )
        else:
            args.update(ShardIteratorType="TRIM_HORIZON")
        response = await kinesis.get_shard_iterator(**args)
        return str(response["ShardIterator"])

    async def _checkpoint(self, run: _ShardRun, sequence: str) -> bool:
        """Fenced by the lease counter; False (and the shard is dropped) when the lease is
        no longer ours."""
        assert self.leases is not None
        async with run.lock:
            if not run.active:
                return False
            moved = await self.leases.checkpoint(run.lease, sequence)
            if moved is None:
                self._lose(run, "its checkpoint was refused (lease taken over)")
                return False
            run.lease = moved
        self.stats.checkpoints += 1
        return True

    async def _finish(self, run: _ShardRun) -> None:
        assert self.leases is not None
        async with run.lock:
            if not run.active:
                return
            if not await self.leases.finish(run.lease):
                self._lose(run, "it could not be marked finished (lease taken over)")
                return
            run.finished = True
        self.stats.shards_finished += 1
        logger.info("shard %s: closed and read to its end; finished", run.shard_id)
        self._refresh_now = True  # its children may be taken now
        self._lease_wake.set()

    async def _pause(self, run: _ShardRun, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(run.wake.wait(), timeout=seconds)
        run.wake.clear()

    # -- SQS ----------------------------------------------------------------------------------

    async def _sqs_loop(self, url: str) -> None:
        source = SqsSource(
            url,
            self.clients,
            wait_seconds=self.sqs_wait_seconds,
            visibility_timeout=self.sqs_visibility_timeout,
        )
        in_hand: dict[str, Delivery] = {}
        heartbeat = asyncio.create_task(self._heartbeat(url, in_hand))
        prefetch: asyncio.Task[list[Delivery]] | None = None
        failures = 0
        try:
            while not self._stopping:
                if prefetch is None:
                    prefetch = asyncio.create_task(self._receive(source, in_hand))
                batch = await prefetch
                prefetch = None
                if self._stopping:
                    await self._hand_back(source, batch, in_hand)
                    break
                if not batch:
                    continue
                # the next batch is received while this one runs (and goes back if unstarted)
                prefetch = asyncio.create_task(self._receive(source, in_hand))
                try:
                    await self.app.processor.process(batch)
                except Exception as exc:
                    failures += 1
                    self.stats.failed_batches += 1
                    logger.warning(
                        "SQS batch of %s not recorded (%s); handed back", url, exc, exc_info=True
                    )
                    await self._hand_back(source, batch, in_hand, count=False)
                    await self._sqs_pause(_backoff(failures))
                    continue
                failures = 0
                self.stats.batches += 1
                self.stats.records += len(batch)
                try:
                    await source.ack(batch)
                except Exception:
                    logger.warning("deleting messages of %s failed", url, exc_info=True)
                for d in batch:
                    in_hand.pop(d.token, None)
            if prefetch is not None:  # received while the last batch ran: never started
                await self._hand_back(source, await prefetch, in_hand)
                prefetch = None
        except asyncio.CancelledError:
            # The grace is over: what is in hand goes back at once.
            if prefetch is not None:
                prefetch.cancel()
            await self._hand_back(source, list(in_hand.values()), in_hand)
            raise
        finally:
            heartbeat.cancel()

    async def _receive(self, source: SqsSource, in_hand: dict[str, Delivery]) -> list[Delivery]:
        try:
            batch = await source.receive(min(self.app.batch_size, MAX_BATCH_ENTRIES))
        except Exception:
            logger.warning("receiving from %s failed", source.queue_url, exc_info=True)
            await self._sqs_pause(self.poll_interval)
            return []
        for d in batch:
            in_hand[d.token] = d
        return batch

    async def _hand_back(
        self,
        source: SqsSource,
        batch: Sequence[Delivery],
        in_hand: dict[str, Delivery],
        *,
        count: bool = True,
    ) -> None:
        if not batch:
            return
        try:
            await source.nack(batch)
        except Exception:
            logger.warning("handing messages back to %s failed", source.queue_url, exc_info=True)
        for d in batch:
            in_hand.pop(d.token, None)
        if count:
            self.stats.sqs_handed_back += len(batch)

    async def _heartbeat(self, url: str, in_hand: dict[str, Delivery]) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_every)
            held = list(in_hand.values())
            for start in range(0, len(held), MAX_BATCH_ENTRIES):
                chunk = held[start : start + MAX_BATCH_ENTRIES]
                entries = [
                    {
                        "Id": str(i),
                        "ReceiptHandle": d.token,
                        "VisibilityTimeout": self.sqs_visibility_timeout,
                    }
                    for i, d in enumerate(chunk)
                ]
                try:
                    sqs = await self.clients.get("sqs")
                    response = await sqs.change_message_visibility_batch(
                        QueueUrl=url, Entries=entries
                    )
                except Exception:
                    logger.warning("extending visibility on %s failed", url, exc_info=True)
                    continue
                for failed in response.get("Failed") or []:
                    logger.info("visibility of a message on %s not extended: %s", url, failed)
            if held:
                self.stats.sqs_heartbeats += 1

    async def _sqs_pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._sqs_wake.wait(), timeout=seconds)

    # -- schedules (emulators only) -----------------------------------------------------------

    async def _fire_schedules(self, fire_due: Callable[[Any], Coroutine[Any, Any, int]]) -> None:
        while not self._stopping:
            try:
                await fire_due(self.app.clock.now())
            except Exception:
                logger.warning("firing due schedules failed", exc_info=True)
            await self._sqs_pause(self.poll_interval)


def _positive(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ConfigurationError(f"{name}={value!r}; give seconds > 0")


def _backoff(failures: int) -> float:
    return float(min(MAX_BACKOFF, 0.5 * 2 ** min(failures - 1, 10)) * (0.5 + random.random() / 2))


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


__all__ = ["EcsWorker", "InitialPosition", "WorkerReport", "WorkerStats"]
