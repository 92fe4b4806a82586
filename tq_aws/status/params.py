"""Reading the status API's query parameters and action bodies into typed values; a bad value
is an ``InvalidQueryError`` naming the parameter (answered 400)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from tq_aws.core.projections import PROJECTION_STATUSES, RowKind
from tq_aws.core.recent import MAX_PAGE, RecentFilter
from tq_aws.core.task import to_utc
from tq_aws.errors import InvalidQueryError

DEFAULT_LIMIT = 50


def parse_time(name: str, value: Any) -> datetime | None:
    """An ISO-8601 time (``2026-03-01T12:00:00Z``; a time without offset is UTC)."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InvalidQueryError(f"{name}={value!r}; give an ISO-8601 time", field=name)
    try:
        return to_utc(datetime.fromisoformat(value.strip()))
    except ValueError:
        raise InvalidQueryError(
            f"{name}={value!r} is not an ISO-8601 time; give e.g. 2026-03-01T12:00:00Z",
            field=name,
        ) from None


def parse_limit(value: str | None) -> int:
    if value is None or value == "":
        return DEFAULT_LIMIT
    try:
        limit = int(value)
    except ValueError:
        limit = 0
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidQueryError(
            f"limit={value!r}; give a whole number of rows from 1 to {MAX_PAGE}", field="limit"
        )
    return limit


@dataclass(frozen=True, slots=True)
class OverviewParams:
    """The overview's filter, page size and cursor, and the raw values to show in its form."""

    where: RecentFilter
    limit: int
    cursor: str | None
    raw: dict[str, str] = field(default_factory=dict)

    def template_filters(self) -> dict[str, Any]:
        params = {k: v for k, v in self.raw.items() if k != "cursor" and v}
        return {
            "status": self.where.status,
            "kind": self.where.kind,
            "task_type": self.where.task_type,
            "since": self.raw.get("since") or None,
            "until": self.raw.get("until") or None,
            "limit": self.limit,
            "cursor": self.cursor,
            "params": params,
            "any": any(k != "limit" for k in params),
        }


def overview_params(query: Mapping[str, str] | None) -> OverviewParams:
    raw = {k: v.strip() for k, v in (query or {}).items() if isinstance(v, str)}
    status = raw.get("status") or None
    if status is not None and status not in PROJECTION_STATUSES:
        raise InvalidQueryError(
            f"status={status!r}; give one of {', '.join(PROJECTION_STATUSES)}", field="status"
        )
    kind = raw.get("kind") or None
    if kind is not None and kind not in ("task", "flow"):
        raise InvalidQueryError(f"kind={kind!r}; give task or flow", field="kind")
    where = RecentFilter(
        status=status,
        task_type=raw.get("task_type") or None,
        kind=cast(RowKind | None, kind),
        since=parse_time("since", raw.get("since")),
        until=parse_time("until", raw.get("until")),
    )
    return OverviewParams(where, parse_limit(raw.get("limit")), raw.get("cursor") or None, raw)


def json_body(body: str | None) -> dict[str, Any]:
    """An action's JSON object body (empty: ``{}``)."""
    if body is None or not body.strip():
        return {}
    try:
        data = json.loads(body)
    except ValueError:
        raise InvalidQueryError("the body is not JSON; send a JSON object", field="body") from None
    if not isinstance(data, dict):
        raise InvalidQueryError("the body is not a JSON object; send one", field="body")
    return data


def optional_str(data: Mapping[str, Any], name: str) -> str | None:
    value = data.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InvalidQueryError(f"{name}={value!r}; give a string", field=name)
    return value


def optional_int(data: Mapping[str, Any], name: str) -> int | None:
    value = data.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidQueryError(f"{name}={value!r}; give a whole number >= 0", field=name)
    return value


def optional_keys(data: Mapping[str, Any]) -> list[str] | None:
    keys = data.get("keys")
    if keys is None:
        return None
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise InvalidQueryError("keys must be a list of poison record keys", field="keys")
    return keys
