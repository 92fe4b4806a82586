"""The real clock, the default ``Clock`` of every app."""

from __future__ import annotations

from datetime import UTC, datetime


class SystemClock:
    """The real clock: timezone-aware UTC."""

    def now(self) -> datetime:
        return datetime.now(UTC)
