"""Test helpers: a manual clock and the at-least-once fault harness (test-only)."""

from __future__ import annotations

import copy
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from tq_aws.backends.aws.schedule_firing import fire_due_schedules
from tq_aws.core.task import to_utc

__all__ = [
    "FaultInjector",
    "InjectedCrash",
    "ManualClock",
    "fire_due_schedules",
    "run_until_idle_through_crashes",
]

DEFAULT_START = datetime(2026, 1, 1, tzinfo=UTC)


class ManualClock:
    """A clock that moves only when told.

    Example:
        >>> clock = ManualClock()
        >>> clock.advance(seconds=90)
        >>> clock.now().isoformat()
        '2026-01-01T00:01:30+00:00'
    """

    def __init__(self, start: datetime = DEFAULT_START):
        self._now = to_utc(start)

    def now(self) -> datetime:
        return self._now

    def advance(self, seconds: float = 0.0, **kwargs: float) -> datetime:
        """Move forward by ``seconds`` (plus any ``timedelta`` keywords); return the new now."""
        delta = timedelta(seconds=seconds, **kwargs)
        if delta < timedelta(0):
            raise ValueError("a ManualClock never moves backwards")
        self._now += delta
        return self._now

    def set(self, when: datetime) -> None:
        """Jump to ``when`` (not before the current time)."""
        when = to_utc(when)
        if when < self._now:
            raise ValueError("a ManualClock never moves backwards")
        self._now = when


# -- at-least-once fault harness ------------------------------------------------------------


class InjectedCrash(BaseException):
    """Raised by ``FaultInjector`` in place of a write, as if the worker died there.

    A ``BaseException`` so that no ``except Exception`` in the engine can swallow it, just as
    nothing survives a real crash.
    """


_WRITES: dict[str, tuple[str, ...]] = {
    "task_store": ("put", "create", "claim", "cancel"),
    "flow_store": ("init", "record_steps", "close", "release_results"),
    "projection_store": ("upsert",),
    "scheduler": ("schedule", "cancel"),
    "transport": ("publish",),
}


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
        import random

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
        for attr, methods in _WRITES.items():
            port = getattr(app, attr)
            for name in methods:
                original = getattr(port, name, None)
                if original is not None:
                    setattr(port, name, self._crashing(original))
        source = app.source
        receive = source.receive
        put_raw = source.put_raw

        async def faulty_receive(max_records: int) -> list[Any]:
            batch: list[Any] = await receive(max_records)
            extra = []
            for delivery in batch:
                if self.duplicate_rate and self.rng.random() < self.duplicate_rate:
                    self.duplicates += 1
                    if self.rng.random() < 0.5:
                        extra.append(copy.copy(delivery))
                    else:
                        put_raw(delivery.queue_id, delivery.data, delivery.partition_key)
            batch.extend(extra)
            if hasattr(source, "in_flight"):  # the copies are acknowledged with the batch
                source.in_flight += len(extra)
            if self.reorder:
                self.rng.shuffle(batch)
            return batch

        source.receive = faulty_receive
        process = app.processor.process

        async def armed_process(deliveries: Any) -> None:
            self._armed = True
            try:
                await process(deliveries)
            finally:
                self._armed = False

        app.processor.process = armed_process
        return self

    def _crashing(self, method: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            if self._armed:
                self.writes_seen += 1
                if (
                    self.crash_rate
                    and (self.max_crashes is None or self.crashes < self.max_crashes)
                    and self.rng.random() < self.crash_rate
                ):
                    self.crashes += 1
                    raise InjectedCrash(f"crash before write #{self.writes_seen}")
            return await method(*args, **kwargs)

        return wrapper


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
