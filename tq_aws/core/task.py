"""The task record, its statuses and the entity it reports on."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import TzInfo


class TaskStatus(StrEnum):
    """Where a task is in its life. The last five are terminal."""

    SCHEDULED = "scheduled"
    PROCESSING = "processing"
    EXECUTED = "executed"
    FAILED = "failed"
    IGNORED = "ignored"
    EXPIRED = "expired"
    CANCELLED = "cancelled"


_ZERO = timedelta(0)
_FIXED_OFFSETS = (timezone, TzInfo)

TERMINAL_STATUSES = frozenset(
    {
        TaskStatus.EXECUTED,
        TaskStatus.FAILED,
        TaskStatus.IGNORED,
        TaskStatus.EXPIRED,
        TaskStatus.CANCELLED,
    }
)


class _AssumedUtc(tzinfo):
    """The zone of a time given without one: it reads as UTC, and the mark stays, so
    ``add_tasks`` can refuse it (a naive ``datetime.now()`` is local time, not UTC)."""

    def utcoffset(self, dt: datetime | None) -> timedelta:
        return _ZERO

    def dst(self, dt: datetime | None) -> timedelta:
        return _ZERO

    def tzname(self, dt: datetime | None) -> str:
        return "UTC"

    def __repr__(self) -> str:
        return "tq_aws.core.task.ASSUMED_UTC"


ASSUMED_UTC = _AssumedUtc()
"""The tzinfo a naive datetime gets when a ``Task`` is built (see ``is_naive``)."""


def is_naive(value: datetime) -> bool:
    """Whether ``value`` was given without a time zone (naive, or marked so by ``Task``)."""
    return value.tzinfo is None or isinstance(value.tzinfo, _AssumedUtc)


def to_utc(value: datetime) -> datetime:
    """Return ``value`` as an aware UTC datetime; a naive value is taken to be UTC already."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


class Entity(BaseModel):
    """The business object a task reports its status on (a user, an order, a campaign)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(min_length=1, description="The entity's id within its type.")
    type: str = Field(min_length=1, description="The entity's type, e.g. ``user``.")

    @property
    def key(self) -> str:
        """The entity's partition key in stores: ``<type>#<id>``."""
        return f"{self.type}#{self.id}"


class Task(BaseModel):
    """One unit of work for the executor registered on ``(queue_id, type)``.

    Only ``type`` and ``queue_id`` are required; ``add_tasks`` fills in ``id``, ``created_at``,
    ``updated_at`` and ``execute_at`` (now) when they are absent.

    Example:
        >>> t = Task(type="send", queue_id="emails", payload={"to": "a@b.c"})
        >>> t.status
        <TaskStatus.SCHEDULED: 'scheduled'>
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=False)

    id: str | None = None
    """Identity, assigned by ``add_tasks`` (UUIDv7) unless given. Returned to the caller."""
    type: str = Field(min_length=1)
    """Task type; selects the executor together with ``queue_id``."""
    queue_id: str = Field(min_length=1)
    """Logical queue; mapped to a transport (stream or SQS queue) by configuration."""
    payload: Any = None
    """User data, JSON-serialisable. The framework never writes into it."""
    execute_at: datetime | None = None
    """Earliest time to run. A time in the future goes through the Scheduler and is stored."""
    status: TaskStatus = TaskStatus.SCHEDULED
    """Where the task is in its life; set by the framework (producers leave it out)."""
    created_at: datetime | None = None
    """When the task was added (UTC); set by ``add_tasks`` when absent."""
    updated_at: datetime | None = None
    """When the task's record last changed (UTC); the framework's own."""
    retries: int | None = Field(default=None, ge=0)
    """Maximum number of retries for this task; overrides the executor's ``retries``."""
    retry_after: float | None = Field(default=None, ge=0)
    """Base of the retry backoff in seconds; overrides the executor's ``retry_after``."""
    expires_at: datetime | None = None
    """A task delivered after this time is not run; it ends ``expired``."""
    processing_started_at: datetime | None = None
    """When its current attempt started (UTC); the framework's own."""
    force_store: bool = False
    """Keep a durable copy from the moment it is added (readable with ``get_task``)."""
    execution_stats: dict[str, Any] = Field(default_factory=dict)
    """Framework keys ``retry_count``, ``last_error``, ``last_error_stack``, ``failed_at``,
    ``ignored_reason``; ``fail(..., meta)`` keys are merged in."""
    partition_key: str | None = None
    """Ordering key on the transport; set from the executor's ``partition_key`` callable."""
    metadata: dict[str, Any] = Field(default_factory=dict)
    """Framework namespace: ``log_context`` (correlation keys) and ``flow_meta``."""
    task_group: str | None = None
    """A label of the caller's, carried with the task and not interpreted (the reference's
    ``task_group``)."""
    task_hash: str | None = None
    """A label of the caller's, carried with the task and not interpreted (the reference's
    ``task_hash``)."""
    execution_result: Any = None
    """The value given to ``actions.success``; large values are kept in the BlobStore."""
    entity: Entity | None = None
    """Entity whose status projection this task drives."""
    stored: bool = False
    """Set by the framework when a durable copy of the task exists in the TaskStore."""

    @field_validator(
        "execute_at", "created_at", "updated_at", "expires_at", "processing_started_at"
    )
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        tz = value.tzinfo
        if tz is None or isinstance(tz, _AssumedUtc):
            # read as UTC, as before, but marked: add_tasks refuses it with the fix
            return value.replace(tzinfo=ASSUMED_UTC)
        # already UTC (ours, or pydantic's own fixed zero offset from a "...Z" string): keep it
        # as it is. Only fixed offsets qualify: the engine may compare times under another
        # zero-offset tzinfo, which a zone that is at +00:00 only part of the year is not.
        if tz is UTC or (
            tz is not None and type(tz) in _FIXED_OFFSETS and tz.utcoffset(value) == _ZERO
        ):
            return value
        return to_utc(value)

    if not TYPE_CHECKING:  # type checkers keep pydantic's typed constructor

        def __init__(self, /, **data: Any) -> None:
            # The common construction (plain values of the declared types) is built directly:
            # the same fields pydantic would give, without its validation walk over every
            # field; anything else, an error included, goes through pydantic.
            fields = fast_fields(data, json=False)
            if fields is None:
                super().__init__(**data)
                return
            assemble(self, fields, set(data))

    def copy_with(self, **changes: Any) -> Task:
        """A shallow copy with ``changes`` applied, unvalidated (the framework's own fast
        ``model_copy(update=...)`` for values it has already checked)."""
        new = object.__new__(Task)
        values = self.__dict__.copy()
        values.update(changes)
        assemble(new, values, self.__pydantic_fields_set__ | changes.keys())
        return new

    @property
    def retry_count(self) -> int:
        """Retries already made (``execution_stats["retry_count"]``, 0 on the first attempt)."""
        value = self.execution_stats.get("retry_count", 0)
        return value if isinstance(value, int) else 0

    @property
    def log_context(self) -> dict[str, str]:
        """The task's user log-context keys (``metadata["log_context"]``), possibly empty."""
        ctx = self.metadata.get("log_context")
        return ctx if isinstance(ctx, dict) else {}


_SET_DICT = object.__setattr__
_SET_FIELDS_SET = BaseModel.__dict__["__pydantic_fields_set__"].__set__
_SET_EXTRA = BaseModel.__dict__["__pydantic_extra__"].__set__
_SET_PRIVATE = BaseModel.__dict__["__pydantic_private__"].__set__


def assemble(task: Task, fields: dict[str, Any], fields_set: set[str]) -> Task:
    """Give ``task`` (from ``object.__new__(Task)``) its fields, as pydantic would: for
    values already validated (``fast_fields``, ``Task.copy_with``)."""
    _SET_DICT(task, "__dict__", fields)
    _SET_FIELDS_SET(task, fields_set)
    _SET_EXTRA(task, None)
    _SET_PRIVATE(task, None)
    return task


# -- building a Task without pydantic's walk ---------------------------------------------------
# ``Task(...)`` and the codec build every task; most hold a few plain values of the declared
# types. ``fast_fields`` accepts exactly those (each check below is one pydantic would pass
# with the value unchanged, or changed the same way) and declines anything else, which then
# goes through pydantic (tests/unit/test_task_fast_path.py compares the two).

_NO = object()
_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{6})?(?:Z|[+-]\d\d:\d\d)")
_STATUSES = {s.value: s for s in TaskStatus}
_utc_after = Task._utc.__func__  # type: ignore[attr-defined]


def _text(value: Any, json: bool) -> Any:
    return value if value is None or type(value) is str else _NO


def _name(value: Any, json: bool) -> Any:
    return value if type(value) is str and value else _NO


def _any(value: Any, json: bool) -> Any:
    return value


def _flag(value: Any, json: bool) -> Any:
    return value if type(value) is bool else _NO


def _retries(value: Any, json: bool) -> Any:
    return value if value is None or (type(value) is int and value >= 0) else _NO


def _seconds(value: Any, json: bool) -> Any:
    return value if value is None or (type(value) is float and value >= 0) else _NO


def _status(value: Any, json: bool) -> Any:
    if type(value) is TaskStatus:
        return value
    return _STATUSES.get(value, _NO) if type(value) is str else _NO


def _time(value: Any, json: bool) -> Any:
    if value is None:
        return None
    if type(value) is datetime:
        return _utc_after(Task, value)
    if json and type(value) is str and _TIMESTAMP.fullmatch(value):
        return _utc_after(Task, datetime.fromisoformat(value))
    return _NO


def _mapping(value: Any, json: bool) -> Any:
    if type(value) is not dict:
        return _NO
    if json:  # a fresh dict of the decoded JSON: its keys are text
        return value
    for key in value:
        if type(key) is not str:
            return _NO
    return dict(value)  # pydantic gives a copy


def _entity(value: Any, json: bool) -> Any:
    if value is None or type(value) is Entity:
        return value
    if json and type(value) is dict:
        return value  # the codec makes the Entity (or hands the record to pydantic)
    return _NO


_CHECKS = {
    "id": _text,
    "type": _name,
    "queue_id": _name,
    "payload": _any,
    "execute_at": _time,
    "status": _status,
    "created_at": _time,
    "updated_at": _time,
    "retries": _retries,
    "retry_after": _seconds,
    "expires_at": _time,
    "processing_started_at": _time,
    "force_store": _flag,
    "execution_stats": _mapping,
    "partition_key": _text,
    "metadata": _mapping,
    "task_group": _text,
    "task_hash": _text,
    "execution_result": _any,
    "entity": _entity,
    "stored": _flag,
}
assert _CHECKS.keys() == Task.model_fields.keys(), "a Task field without its fast check"
_DEFAULTS = {  # every field in its declared order (the required ones are always given)
    name: None if info.is_required() or info.default_factory is not None else info.default
    for name, info in Task.model_fields.items()
}


_FREE = frozenset({"type", "queue_id", "payload", "execution_result"})
"""Fields checked inline (the names) or not at all (``Any``)."""
_FIELD_COUNT = len(_DEFAULTS)


def fast_fields(data: dict[str, Any], *, json: bool) -> dict[str, Any] | None:
    """A Task's ``__dict__`` for ``data`` (keyword arguments, or with ``json`` a decoded JSON
    object), or ``None`` when pydantic must build it (anything unusual, any error)."""
    fields = _DEFAULTS.copy()
    fields.update(data)
    if len(fields) != _FIELD_COUNT:
        return None  # a name that is not a field
    name, queue = fields["type"], fields["queue_id"]
    if type(name) is not str or not name or type(queue) is not str or not queue:
        return None
    rest = data.keys() - _FREE
    if rest:
        checks = _CHECKS
        for key in rest:
            value = checks[key](fields[key], json)
            if value is _NO:
                return None
            fields[key] = value
        if "execution_stats" not in rest:
            fields["execution_stats"] = {}
        if "metadata" not in rest:
            fields["metadata"] = {}
    else:
        fields["execution_stats"] = {}
        fields["metadata"] = {}
    return fields
