"""The checks ``add_tasks`` makes on each task, so a call refuses at once what a backend would
fail on later: ids and keys, numbers, times, JSON data and sizes (the limits of
``tq_aws.core.limits``). Each failed check is a ``TaskValidationError`` naming the task's
index, the field and the fix."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from tq_aws.core.json_values import to_checked_json
from tq_aws.core.limits import (
    MAX_BYTES_BESIDE_PAYLOAD,
    MAX_ENTITY_FIELD_BYTES,
    MAX_ENTITY_FIELD_CHARS,
    MAX_NAME_CHARS,
    MAX_RETRIES,
    MAX_SCHEDULE_AHEAD,
    id_problem,
    partition_key_problem,
    seconds_problem,
    text_problem,
)
from tq_aws.core.task import Task, is_naive
from tq_aws.errors import TaskValidationError

NOTHING_ADDED = "no task of this call was added"
_TIMES = ("execute_at", "expires_at", "created_at")
_BESIDE_PAYLOAD = ("metadata", "execution_stats", "execution_result")
_NAMES_BYTES = 6 * 1024
"""What a task's JSON holds beside its payload and data fields at most: the field names and
the names that are limited in length (id, type, queue_id, partition_key, entity)."""


def where(task: Task, index: int) -> str:
    """``tasks[<index>] (<queue_id>/<type>)``: how errors name a task of the call."""
    return f"tasks[{index}] ({task.queue_id}/{task.type})"


def refuse(task: Task, index: int, field: str, problem: str, fix: str) -> TaskValidationError:
    """The error for ``field`` of the task at ``index``: what is wrong, and the fix."""
    fix = f"; {fix}" if fix else ""
    return TaskValidationError(
        f"{where(task, index)}: {field} {problem}{fix}. {NOTHING_ADDED.capitalize()}.",
        index=index,
        field=field,
    )


def check_task(task: Task, index: int, now: datetime) -> None:
    """Raise ``TaskValidationError`` for the first thing in ``task`` a backend would refuse."""
    _check_names(task, index)
    _check_numbers(task, index)
    _check_times(task, index, now)
    _check_data(task, index)


def check_id(task: Task, index: int, task_id: str) -> None:
    problem = id_problem(task_id)
    if problem is not None:
        raise refuse(
            task,
            index,
            "id",
            problem,
            "give an id of 1 to 256 characters (at most 512 bytes of UTF-8) without control "
            "characters, or leave id unset for a generated one",
        )


def check_partition_key(task: Task, index: int, key: str) -> None:
    problem = partition_key_problem(key)
    if problem is not None:
        raise refuse(
            task,
            index,
            "partition_key",
            problem,
            "give 1 to 256 characters (the Kinesis limit), e.g. a hash of a longer key",
        )


def _check_names(task: Task, index: int) -> None:
    if (task.queue_id, task.type) not in _CHECKED_NAMES:
        for field in ("type", "queue_id"):
            problem = text_problem(getattr(task, field), max_chars=MAX_NAME_CHARS)
            if problem is not None:
                raise refuse(task, index, field, problem, "give 1 to 256 printable characters")
        _remember(_CHECKED_NAMES, (task.queue_id, task.type))
    entity = task.entity
    if entity is None:
        return
    fields = ("id",) if entity.type in _CHECKED_ENTITY_TYPES else ("type", "id")
    for field in fields:
        problem = text_problem(
            getattr(entity, field),
            max_chars=MAX_ENTITY_FIELD_CHARS,
            max_bytes=MAX_ENTITY_FIELD_BYTES,
        )
        if problem is not None:
            raise refuse(
                task,
                index,
                f"entity.{field}",
                problem,
                "give 1 to 256 characters (at most 512 bytes of UTF-8) without control characters",
            )
    if "type" in fields:
        if "#" in entity.type:
            # the projection key is <type>#<id>: a '#' in the type would make two entities one
            raise refuse(
                task,
                index,
                "entity.type",
                f"{entity.type!r} holds '#'",
                "give an entity type without '#' (the entity id may hold it)",
            )
        _remember(_CHECKED_ENTITY_TYPES, entity.type)


_CHECKED_NAMES: set[tuple[str, str]] = set()
"""``(queue_id, type)`` pairs already found good: an app has few, and they repeat."""
_CHECKED_ENTITY_TYPES: set[str] = set()
"""Entity types already found good (ids vary, types repeat)."""


def _remember(seen: set[Any], value: Any) -> None:
    if len(seen) >= 4096:  # bounded: a producer that makes names up cannot grow it forever
        seen.clear()
    seen.add(value)


def _check_numbers(task: Task, index: int) -> None:
    retries = task.retries
    if retries is not None and (
        isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= MAX_RETRIES
    ):
        raise refuse(
            task, index, "retries", f"is {retries!r}", f"give a whole number 0..{MAX_RETRIES}"
        )
    if task.retry_after is not None:
        problem = seconds_problem(task.retry_after)
        if problem is not None:
            raise refuse(
                task,
                index,
                "retry_after",
                problem,
                "give a finite number of seconds >= 0, or None for the executor's",
            )


def _check_times(task: Task, index: int, now: datetime) -> None:
    for field in _TIMES:
        value: datetime | None = getattr(task, field)
        if value is not None and is_naive(value):
            raise refuse(
                task,
                index,
                field,
                f"is a naive datetime ({value.replace(tzinfo=None).isoformat()}, no time zone)",
                "give an aware one, e.g. datetime.now(UTC) or datetime(..., tzinfo=ZoneInfo(...))"
                " (a naive datetime.now() is local time, which would run at the wrong hour)",
            )
    execute_at = task.execute_at
    if execute_at is not None and execute_at - now > MAX_SCHEDULE_AHEAD:
        raise refuse(
            task,
            index,
            "execute_at",
            f"is {execute_at.isoformat()}, more than {MAX_SCHEDULE_AHEAD.days} days (ten years) "
            "after now",
            "schedule it at most ten years ahead",
        )
    if task.expires_at is not None and execute_at is not None and task.expires_at <= execute_at:
        raise refuse(
            task,
            index,
            "expires_at",
            "is not after execute_at, so the task could never run",
            "move expires_at later",
        )


def _check_data(task: Task, index: int) -> None:
    if task.payload is not None:
        _, problem = to_checked_json(task.payload, "payload")
        if problem is not None:
            raise refuse(task, index, problem.path, problem.reason, "")
    if not (
        task.metadata
        or task.execution_stats
        or task.execution_result
        or task.task_group
        or task.task_hash
    ):
        return  # nothing beside the payload (the common task); the loop skips falsy values
    size = 0
    largest = ("", 0)
    for field in _BESIDE_PAYLOAD:
        value = getattr(task, field)
        if not value:
            continue
        data, problem = to_checked_json(value, field)
        if problem is not None:
            raise refuse(task, index, problem.path, problem.reason, "")
        assert data is not None
        size += len(data)
        if len(data) > largest[1]:
            largest = (field, len(data))
    for text in (task.task_group, task.task_hash):
        if text:
            size += len(text.encode("utf-8", "surrogatepass"))
    if not size:
        return
    # the names beside (id, type, queue_id, partition_key, entity) are bounded: at most
    # _NAMES_BYTES together with the field names of the task's JSON
    size += _NAMES_BYTES
    if size > MAX_BYTES_BESIDE_PAYLOAD:
        raise refuse(
            task,
            index,
            largest[0] or "task",
            f"makes the task {size} bytes of JSON beside its payload, over the limit of "
            f"{MAX_BYTES_BESIDE_PAYLOAD}",
            "keep large data in the payload (it can move to the blob store; the rest cannot)",
        )
