"""Preparing tasks for dispatch: ids, defaults, validation, log context, partition key.

Pure: given the registry and "now", it returns new task objects or raises
``TaskValidationError`` before anything is added (a call is all or nothing).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from pydantic import BaseModel, ValidationError

from tq_aws.core import log_context
from tq_aws.core.executors import ExecutorRegistry
from tq_aws.core.limits import MAX_PARTITION_KEY_CHARS
from tq_aws.core.task import Task, TaskStatus
from tq_aws.core.task_checks import (
    NOTHING_ADDED,
    check_id,
    check_partition_key,
    check_task,
    where,
)
from tq_aws.errors import TaskValidationError
from tq_aws.ids import new_id

MAX_PARTITION_KEY = MAX_PARTITION_KEY_CHARS
"""Kept for importers; the limit lives in ``tq_aws.core.limits``."""


def prepare_tasks(
    tasks: Sequence[Task],
    registry: ExecutorRegistry,
    now: datetime,
    *,
    inherit_context: Mapping[str, str] | None = None,
    validate: bool = True,
) -> list[Task]:
    """Return dispatch-ready copies of ``tasks``.

    Each copy has an id (kept if given), ``created_at``/``updated_at``/``execute_at`` defaults,
    status ``scheduled``, a sanitised log context (merged under ``inherit_context``: the child's
    own keys win) and the executor's partition key. A task a backend would refuse later
    (``tq_aws.core.task_checks``: ids, keys, numbers, times, JSON data, sizes), a payload that
    fails the executor's ``payload_model``, or two tasks of one id raise
    ``TaskValidationError`` naming the index and the field; nothing is returned then.
    ``validate=False`` skips the data checks, for tasks the framework builds itself (joins).
    """
    seen: dict[str, int] = {}
    out: list[Task] = []
    for index, task in enumerate(tasks):
        update = _prepared_fields(task, index, registry, now, inherit_context, validate, seen)
        out.append(task.copy_with(**update))
    return out


def check_tasks(
    tasks: Sequence[Task],
    registry: ExecutorRegistry,
    now: datetime,
    *,
    inherit_context: Mapping[str, str] | None = None,
    first_index: int = 0,
    seen: dict[str, int] | None = None,
) -> None:
    """Raise what ``prepare_tasks`` would raise for ``tasks``, building nothing: for callers
    that check a call at once and build the copies later (a flow's steps, as they are
    dispatched). ``first_index`` is the index of ``tasks[0]`` in the call; ``seen`` carries the
    explicit ids across the chunks of one call."""
    seen = {} if seen is None else seen
    for offset, task in enumerate(tasks):
        _prepared_fields(task, first_index + offset, registry, now, inherit_context, True, seen)


def _prepared_fields(
    task: Task,
    index: int,
    registry: ExecutorRegistry,
    now: datetime,
    inherit_context: Mapping[str, str] | None,
    validate: bool,
    seen: dict[str, int],
) -> dict[str, object]:
    """The fields ``prepare_tasks`` sets on its copy of ``task``, after its checks."""
    if not isinstance(task, Task):
        raise TaskValidationError(
            f"tasks[{index}] is a {type(task).__name__}; pass tq_aws.Task objects",
            index=index,
        )
    spec = registry.get(task.queue_id, task.type)
    if validate:
        check_task(task, index, now)
        if spec is not None and spec.payload_model is not None:
            _check_model(task, index, spec.payload_model)
    task_id = task.id or new_id()
    if task.id:
        check_id(task, index, task_id)
        first = seen.get(task_id)
        if first is not None:
            raise TaskValidationError(
                f"{where(task, index)}: id {task_id!r} is also the id of tasks[{first}]; "
                f"give each task of a call its own id. {NOTHING_ADDED.capitalize()}.",
                index=index,
                field="id",
            )
        seen[task_id] = index
    update: dict[str, object] = {
        "id": task_id,
        "status": TaskStatus.SCHEDULED,
        "created_at": task.created_at or now,
        "updated_at": now,
        "execute_at": task.execute_at or now,
    }
    metadata = _metadata(task, inherit_context, index)
    if metadata is not task.metadata:
        update["metadata"] = metadata
    if spec is not None:
        key = spec.key_for(task)
        if key is not None:
            update["partition_key"] = key
    final_key = update.get("partition_key", task.partition_key)
    if isinstance(final_key, str):
        check_partition_key(task, index, final_key)
    return update


def _check_model(task: Task, index: int, model: type[BaseModel]) -> None:
    try:
        model.model_validate(task.payload)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(["payload", *(str(p) for p in first["loc"])])
        raise TaskValidationError(
            f"{where(task, index)}: {field}: {first['msg']}. "
            f"Fix the payload to match {model.__name__}; {NOTHING_ADDED}.",
            index=index,
            field=field,
        ) from exc


def _metadata(task: Task, inherit: Mapping[str, str] | None, index: int) -> dict[str, object]:
    raw = task.metadata.get("log_context")
    if raw is None and not inherit:
        return task.metadata
    own = log_context.sanitize(raw, where=f"tasks[{index}]") if raw is not None else None
    merged = log_context.merge_into_child(inherit or {}, own or {})
    ctx = log_context.sanitize(merged, where=f"tasks[{index}]") if merged else None
    metadata = {k: v for k, v in task.metadata.items() if k != "log_context"}
    if ctx:
        metadata["log_context"] = ctx
    return metadata
