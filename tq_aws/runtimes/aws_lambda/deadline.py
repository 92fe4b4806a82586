"""The invocation's time: no sub-batch starts that cannot finish before the safety margin, and
handed-off tasks are awaited only until the margin is left.

A sub-batch's estimate is the slowest time per record of the sub-batches run so far, times its
size, measured on the remaining time itself (``context.get_remaining_time_in_millis()``), so a
test's context drives it. A sub-batch is never interrupted: the margin must cover the variance
of one sub-batch.

The margin is ``safety_margin`` seconds at most, and at most ``margin_fraction`` of the time the
invocation has when it starts: a function configured with little time (the 3 s default, or
less) keeps a proportionate margin, so its first sub-batch always starts and every invocation
makes progress."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tq_aws.runtimes.aws_lambda.loop import run

if TYPE_CHECKING:
    from tq_aws.engine.handoff import AsyncTaskManager

logger = logging.getLogger(__name__)

DEFAULT_SAFETY_MARGIN = 2.0
"""Seconds kept free at the end of an invocation, at most (see ``LambdaHandler``)."""
DEFAULT_MARGIN_FRACTION = 0.25
"""The largest share of the invocation's time (at its start) kept free as the margin."""


class Deadline:
    """The invocation's remaining time, and the estimate of a sub-batch from those run so far
    (measured on the remaining time itself, so a test's context drives it)."""

    __slots__ = ("_remaining_ms", "margin", "per_record", "started_with")

    def __init__(
        self, context: Any, margin: float, fraction: float = DEFAULT_MARGIN_FRACTION
    ) -> None:
        self._remaining_ms: Callable[[], int] | None = getattr(
            context, "get_remaining_time_in_millis", None
        )
        self.per_record = 0.0
        self.started_with: float | None = None
        at_start = self.remaining()
        self.margin = margin if at_start is None else max(0.0, min(margin, fraction * at_start))
        """Seconds kept free: ``margin``, or ``fraction`` of the time left at the start if
        that is less."""

    def remaining(self) -> float | None:
        """Seconds left in the invocation (``None``: no context, no limit)."""
        return None if self._remaining_ms is None else self._remaining_ms() / 1000.0

    def estimate(self, records: int) -> float:
        return self.per_record * records

    def allows(self, records: int) -> bool:
        """Whether a sub-batch of ``records`` can start and finish before the margin."""
        left = self.remaining()
        self.started_with = left
        return left is None or left - self.margin > self.estimate(records)

    def observe(self, records: int) -> None:
        """A sub-batch of ``records`` (started after ``allows``) is done."""
        before, left = self.started_with, self.remaining()
        if before is None or left is None or records <= 0:
            return
        self.per_record = max(self.per_record, max(0.0, before - left) / records)


def await_handoffs(manager: AsyncTaskManager, deadline: Deadline) -> int:
    """Await handed-off tasks until only the margin is left; return how many still run.

    Their records are already recorded (stored ``processing``, with a delivery watchdog), so
    whatever still runs is left to its durable record."""
    if not manager.active:
        return 0
    left = deadline.remaining()
    budget = None if left is None else left - deadline.margin
    if budget is None or budget > 0:
        run(_await_handoffs(manager, budget))
    if manager.active:
        logger.info(
            "%d handed-off task(s) still running at the margin: their stored record and "
            "delivery watchdog bring them back if this process does not finish them",
            manager.active,
        )
    return manager.active


async def _await_handoffs(manager: AsyncTaskManager, budget: float | None) -> None:
    loop = asyncio.get_running_loop()
    end = None if budget is None else loop.time() + budget
    while manager.active:
        if end is None:
            await manager.wait_any()
            continue
        left = end - loop.time()
        if left <= 0:
            return
        try:
            await asyncio.wait_for(manager.wait_any(), timeout=left)
        except TimeoutError:
            return


__all__ = ["DEFAULT_MARGIN_FRACTION", "DEFAULT_SAFETY_MARGIN", "Deadline", "await_handoffs"]
