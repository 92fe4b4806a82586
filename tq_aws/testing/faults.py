"""The at-least-once fault harness (test-only): ``FaultInjector`` wraps an app's ports so that
records are delivered twice and out of order and writes crash, reproducibly from a seed.

Nothing is monkeypatched: each port is wrapped in a small class that delegates to it, and the
app is re-wired to the wrapped ``Ports`` with ``use_ports``. A batch is "being processed" from
the moment the wrapped source hands it out (``receive``) until it is acknowledged or given
back (``ack``/``nack``): in ``Engine.run_until_idle`` that is exactly the span of
``processor.process``, as nothing else is awaited in between.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import random
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from tq_aws.core.flows import FlowRecord, FlowState, RecordOutcome, StepResult
from tq_aws.core.projections import ProjectionRow
from tq_aws.core.task import Entity, Task
from tq_aws.ports import (
    Claim,
    Delivery,
    DueScheduler,
    FlowStore,
    PollingSource,
    ProjectionStore,
    ScheduledTask,
    Scheduler,
    TaskStore,
    Transport,
)

logger = logging.getLogger(__name__)


class InjectedCrash(BaseException):
    """Raised by ``FaultInjector`` in place of a write, as if the worker died there.

    A ``BaseException`` so that no ``except Exception`` in the engine can swallow it, just as
    nothing survives a real crash.
    """


@runtime_checkable
class RedeliveringSource(PollingSource, Protocol):
    """A source that takes an encoded record back for a later batch (the memory transport)."""

    def put_raw(self, queue_id: str, data: bytes, partition_key: str | None = None) -> None: ...


@runtime_checkable
class CountsInFlight(Protocol):
    """A source that counts the records handed out and not yet acknowledged."""

    in_flight: int


class FaultInjector:
    """Makes a TaskQueue's delivery at-least-once in the worst ways, reproducibly.

    - ``duplicate_rate``: that fraction of received records is delivered again (either later
      in the same batch or in a later batch);
    - ``reorder``: the records of each batch are shuffled;
    - ``crash_rate``: each write made while a batch is being processed (to any port: task
      store, flow store, projections, scheduler, transport) raises ``InjectedCrash`` first
      with this probability; the batch's records are then given back for redelivery.

    Install it on an app built on the memory transport, then drive the app with
    ``run_until_idle_through_crashes``.

    Example:
        >>> app = TaskQueue(clock=ManualClock())
        >>> faults = FaultInjector(duplicate_rate=0.2, reorder=True, crash_rate=0.05, seed=7)
        >>> faults.install(app)
        >>> await run_until_idle_through_crashes(app)
    """

    def __init__(
        self,
        *,
        duplicate_rate: float = 0.0,
        reorder: bool = False,
        crash_rate: float = 0.0,
        seed: int = 0,
        max_crashes: int | None = None,
    ):
        self.rng = random.Random(seed)
        self.duplicate_rate = duplicate_rate
        self.reorder = reorder
        self.crash_rate = crash_rate
        self.max_crashes = max_crashes
        self.crashes = 0
        self.duplicates = 0
        self.writes_seen = 0
        self._armed = False

    def install(self, app: Any) -> FaultInjector:
        """Re-wire ``app`` (an ``Engine``) to its own ports wrapped by this injector."""
        ports = app.ports
        source = ports.source
        if not isinstance(source, RedeliveringSource):
            raise TypeError(
                "FaultInjector needs a source that takes records back (put_raw): "
                "the memory transport"
            )
        scheduler: Scheduler = (
            CrashingDueScheduler(ports.scheduler, self)
            if isinstance(ports.scheduler, DueScheduler)
            else CrashingScheduler(ports.scheduler, self)
        )
        app.use_ports(
            dataclasses.replace(
                ports,
                task_store=CrashingTaskStore(ports.task_store, self),
                flow_store=CrashingFlowStore(ports.flow_store, self),
                projection_store=CrashingProjectionStore(ports.projection_store, self),
                scheduler=scheduler,
                transport=CrashingTransport(ports.transport, self),
                source=FaultySource(source, self),
            )
        )
        return self

    def before_write(self) -> None:
        """Called before every write to a wrapped port: crash here, perhaps."""
        if not self._armed:
            return
        self.writes_seen += 1
        if (
            self.crash_rate
            and (self.max_crashes is None or self.crashes < self.max_crashes)
            and self.rng.random() < self.crash_rate
        ):
            self.crashes += 1
            raise InjectedCrash(f"crash before write #{self.writes_seen}")


class _Wrapper:
    """Delegates what it does not define to the wrapped port, so that a memory backend's
    extras (``pending``, ``in_flight``, ``put_raw``, ``pending_names``...) read through."""

    def __init__(self, inner: Any, faults: FaultInjector):
        self.inner = inner
        self.faults = faults

    def __getattr__(self, name: str) -> Any:
        if name in ("inner", "faults"):  # not set yet (copy, pickle): no recursion
            raise AttributeError(name)
        return getattr(self.inner, name)


class CrashingTaskStore(_Wrapper):
    """A task store whose writes may crash."""

    inner: TaskStore

    async def put(self, tasks: Sequence[Task]) -> list[bool]:
        self.faults.before_write()
        return await self.inner.put(tasks)

    async def create(self, tasks: Sequence[Task]) -> list[bool]:
        self.faults.before_write()
        return await self.inner.create(tasks)

    async def get(self, task_id: str) -> Task | None:
        return await self.inner.get(task_id)

    async def claim(self, tasks: Sequence[Task], now: datetime) -> dict[str, Claim]:
        self.faults.before_write()
        return await self.inner.claim(tasks, now)

    async def cancel(self, task_id: str, now: datetime) -> Task | None:
        self.faults.before_write()
        return await self.inner.cancel(task_id, now)


class CrashingFlowStore(_Wrapper):
    """A flow store whose writes may crash."""

    inner: FlowStore

    async def init(self, record: FlowRecord) -> bool:
        self.faults.before_write()
        return await self.inner.init(record)

    async def get(self, flow_id: str) -> FlowRecord | None:
        return await self.inner.get(flow_id)

    async def record_steps(
        self, flow_id: str, results: Sequence[StepResult]
    ) -> list[RecordOutcome]:
        self.faults.before_write()
        return await self.inner.record_steps(flow_id, results)

    async def results(self, flow_id: str) -> list[StepResult]:
        return await self.inner.results(flow_id)

    async def close(
        self, flow_id: str, to: FlowState, *, expected_completed: int, now: datetime
    ) -> bool:
        self.faults.before_write()
        return await self.inner.close(flow_id, to, expected_completed=expected_completed, now=now)

    async def release_results(self, flow_id: str) -> None:
        self.faults.before_write()
        await self.inner.release_results(flow_id)


class CrashingProjectionStore(_Wrapper):
    """A projection store whose writes may crash."""

    inner: ProjectionStore

    async def upsert(self, rows: Sequence[ProjectionRow]) -> None:
        self.faults.before_write()
        await self.inner.upsert(rows)

    async def for_entity(self, entity: Entity) -> list[ProjectionRow]:
        return await self.inner.for_entity(entity)


class CrashingScheduler(_Wrapper):
    """A scheduler whose writes may crash."""

    inner: Scheduler

    async def schedule(self, entries: Sequence[ScheduledTask]) -> None:
        self.faults.before_write()
        await self.inner.schedule(entries)

    async def cancel(self, names: Sequence[str]) -> None:
        self.faults.before_write()
        await self.inner.cancel(names)


class FiredHereScheduler(Scheduler, DueScheduler, Protocol):
    """A scheduler whose due entries the app delivers itself (the memory scheduler)."""


class CrashingDueScheduler(CrashingScheduler):
    """A scheduler the app fires itself (``DueScheduler``), whose writes may crash. Firing is
    not a write of a batch: ``run_until_idle`` fires between batches."""

    inner: FiredHereScheduler

    async def fire_due(self, now: datetime) -> int:
        return await self.inner.fire_due(now)

    def next_due(self) -> datetime | None:
        return self.inner.next_due()


class CrashingTransport(_Wrapper):
    """A transport whose publishing may crash."""

    inner: Transport

    async def publish(self, tasks: Sequence[Task]) -> None:
        self.faults.before_write()
        await self.inner.publish(tasks)


class FaultySource(_Wrapper):
    """A source that duplicates and reorders what it hands out, and arms the crashes from a
    batch's ``receive`` until its ``ack`` or ``nack``."""

    inner: RedeliveringSource

    async def receive(self, max_records: int) -> list[Delivery]:
        faults = self.faults
        batch = await self.inner.receive(max_records)
        extra = []
        for delivery in batch:
            if faults.duplicate_rate and faults.rng.random() < faults.duplicate_rate:
                faults.duplicates += 1
                if faults.rng.random() < 0.5:
                    extra.append(copy.copy(delivery))
                else:
                    self.inner.put_raw(delivery.queue_id, delivery.data, delivery.partition_key)
        batch.extend(extra)
        if isinstance(self.inner, CountsInFlight):  # the copies are acknowledged with the batch
            self.inner.in_flight += len(extra)
        if faults.reorder:
            faults.rng.shuffle(batch)
        if batch:
            faults._armed = True
        return batch

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        self.faults._armed = False
        await self.inner.ack(deliveries)

    async def nack(self, deliveries: Sequence[Delivery]) -> None:
        self.faults._armed = False
        await self.inner.nack(deliveries)


async def run_until_idle_through_crashes(app: Any, *, max_rounds: int = 10_000) -> int:
    """``app.run_until_idle()`` again after every ``InjectedCrash`` until nothing is due;
    return how many crashes it went through."""
    crashes = 0
    for _ in range(max_rounds):
        try:
            await app.run_until_idle()
            return crashes
        except InjectedCrash:
            crashes += 1
    raise RuntimeError(f"still crashing after {max_rounds} rounds")
