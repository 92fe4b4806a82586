"""How the ECS worker's loops wait: a pause that a wake-up ends early, and the backoff after
a failure."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random

logger = logging.getLogger(__name__)

MAX_BACKOFF = 30.0
"""Seconds; the longest pause after repeated failures."""


async def pause(wake: asyncio.Event, seconds: float) -> None:
    """Wait ``seconds``, or until ``wake`` is set (the event is left as it is)."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(wake.wait(), timeout=seconds)


def backoff(failures: int) -> float:
    """Seconds to pause after ``failures`` failures in a row: doubling from 0.5 s up to
    ``MAX_BACKOFF``, with jitter (half to all of it)."""
    return float(min(MAX_BACKOFF, 0.5 * 2 ** min(failures - 1, 10)) * (0.5 + random.random() / 2))


__all__ = ["MAX_BACKOFF", "backoff", "pause"]
