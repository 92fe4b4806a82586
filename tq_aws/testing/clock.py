"""``ManualClock``: a clock that moves only when told (test-only)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from tq_aws.core.task import to_utc

logger = logging.getLogger(__name__)

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
