"""A task's payload as its executor's ``payload_model``, for ``actions.payload``."""

from __future__ import annotations

from typing import TypeVar

from pydantic import BaseModel, ValidationError

from tq_aws.core.task import Task
from tq_aws.errors import PermanentFailure

M = TypeVar("M", bound=BaseModel)


def payload_as(task: Task, model: type[M]) -> M:
    """``task.payload`` validated into ``model``.

    Raises:
        PermanentFailure: naming the first field at fault. The payload travels with the task
            unchanged, so a retry would fail the same way.
    """
    try:
        return model.model_validate(task.payload)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(["payload", *(str(p) for p in first["loc"])])
        raise PermanentFailure(
            f"task {task.id} ({task.queue_id}/{task.type}): {where}: {first['msg']}; the "
            f"payload does not match {model.__name__}",
            meta={"payload_error_field": where},
        ) from exc
