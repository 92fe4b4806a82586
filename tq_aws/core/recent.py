"""Recent rows across entities: failed task rows and flow rows, newest first, by filter and page.

This is what the status page's overview lists. A projection store keeps these rows findable by
time (on DynamoDB the sparse ``recent`` index: only rows ``is_recent`` accepts carry its keys),
and ``ProjectionStore.recent`` reads one page of them, newest first, with an opaque cursor to
the next page.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tq_aws.core.projections import ProjectionRow, RowKind
from tq_aws.core.task import to_utc
from tq_aws.errors import InvalidQueryError

MAX_PAGE = 500
"""The most rows one page holds."""


def is_recent(row: ProjectionRow) -> bool:
    """Whether the overview lists ``row``: a failed task row, or any flow row."""
    return row.status == "failed" or row.kind == "flow"


def time_key(value: datetime) -> str:
    """A time as fixed-width UTC text (microseconds, ``Z``): the strings sort as the times do."""
    return to_utc(value).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True, slots=True)
class RecentFilter:
    """What the overview asks for; every field is optional.

    Attributes:
        status: only rows at this status (``failed``, ``processing``, ``executed``...).
        task_type: only rows of this task type (a flow row's type is its join's).
        kind: only task rows (``task``) or only flow rows (``flow``).
        since, until: only rows last updated at or after ``since`` and before ``until``.
    """

    status: str | None = None
    task_type: str | None = None
    kind: RowKind | None = None
    since: datetime | None = None
    until: datetime | None = None

    def matches(self, row: ProjectionRow) -> bool:
        """Whether ``row`` is listed under this filter (``is_recent`` included)."""
        if not is_recent(row):
            return False
        if self.status is not None and row.status != self.status:
            return False
        if self.task_type is not None and row.task_type != self.task_type:
            return False
        if self.kind is not None and row.kind != self.kind:
            return False
        if self.since is not None and row.updated_at < self.since:
            return False
        return self.until is None or row.updated_at < self.until


@dataclass(frozen=True, slots=True)
class RecentPage:
    """One page of recent rows, newest first, and the cursor of the next page (``None``: this
    is the last one)."""

    rows: list[ProjectionRow]
    cursor: str | None


def check_limit(limit: int) -> None:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
        raise InvalidQueryError(
            f"limit={limit!r}; give a whole number of rows from 1 to {MAX_PAGE}", field="limit"
        )


def encode_cursor(state: dict[str, Any]) -> str:
    """An opaque, URL-safe cursor holding ``state`` (a JSON object)."""
    raw = json.dumps(state, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> dict[str, Any]:
    """The state ``encode_cursor`` put in ``cursor``.

    Raises:
        InvalidQueryError: the cursor was not made by ``encode_cursor`` (field ``cursor``).
    """
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        state = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (binascii.Error, ValueError, UnicodeError) as exc:
        raise InvalidQueryError(
            f"cursor={cursor[:40]!r} is not a cursor of this listing ({exc}); pass the "
            "cursor a page returned, or none for the first page",
            field="cursor",
        ) from None
    if not isinstance(state, dict):
        raise InvalidQueryError(
            "cursor is not a cursor of this listing; pass the cursor a page returned",
            field="cursor",
        )
    return state
