"""Entity status projections: one row per (entity, task or flow), moving forward only.

A row is replaced only by one of higher rank, or of the same non-terminal rank with a newer
version; so a late ``scheduled`` or a duplicate delivery never moves a status back, and the
first terminal status of a task stays. The one way back is an operator's retry
(``Engine.retry_task``): it starts a new generation of the task, whose rows supersede every row
of the generations before it.

Failed task rows and flow rows are also listed by time across entities (``recent``): the status
page's overview.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from tq_aws.core.task import Entity, Task

RANKS: dict[str, int] = {
    "scheduled": 0,
    "processing": 1,
    "executed": 2,
    "failed": 2,
    "ignored": 2,
    "expired": 2,
    "cancelled": 2,
}
TERMINAL_RANK = 2
RowKind = Literal["task", "flow"]
PROJECTION_STATUSES = tuple(RANKS)
OPERATOR_RETRIES = "operator_retries"
"""``Task.metadata`` key: how many times an operator retried the task (its generation)."""


class ProjectionRow(BaseModel):
    """The latest known status of one task (or flow) of an entity."""

    # rows are read back from a shared table: during a rolling deploy an older reader meets
    # rows a newer writer wrote, so fields it does not know are skipped, not refused
    model_config = ConfigDict(extra="ignore")

    entity_id: str
    """The entity's id (``Entity.id``)."""
    entity_type: str
    """The entity's type (``Entity.type``)."""
    task_id: str
    """The task's id, or the flow's id for a flow-level row."""
    task_type: str
    """The task's type (a flow row: the join's type)."""
    queue_id: str
    """The task's queue (a flow row: the join's queue)."""
    status: str
    """``scheduled``, ``processing``, ``executed``, ``failed``, ``ignored``, ``expired`` or
    ``cancelled``."""
    rank: int
    """0 for ``scheduled``, 1 for ``processing``, 2 for every terminal status: a row is
    replaced only by one of higher rank (or the same non-terminal rank, newer version)."""
    version: int
    """Microseconds since the epoch when the row was built; orders writes of the same rank."""
    generation: int = 0
    """How many times an operator retried the task; a later generation supersedes any row of
    an earlier one, a terminal one included."""
    error: str | None = None
    """The last error of a failed task (or why a flow failed: ``flow_aborted``,
    ``flow_timeout``)."""
    result: Any = None
    """What an executed task gave ``actions.success`` (large values come back from the blob
    store)."""
    payload: Any = None
    """The task's payload, copied only with ``TaskQueue(include_payload=True)``."""
    created_at: datetime
    """When the task was added."""
    updated_at: datetime
    """When this row was written."""
    kind: RowKind = "task"
    """``task``: the row of one task. ``flow``: the flow's own row (``task_id`` is the flow id,
    ``task_type``/``queue_id`` where its join goes, the status the flow's): a flow started
    with ``entity=``."""

    @property
    def entity(self) -> Entity:
        return Entity(id=self.entity_id, type=self.entity_type)


def build_row(
    task: Task,
    status: str,
    now: datetime,
    *,
    error: str | None = None,
    result: Any = None,
    include_payload: bool = False,
) -> ProjectionRow | None:
    """The row for ``task`` at ``status``, or ``None`` when the task has no entity."""
    entity = task.entity
    if entity is None:
        return None
    return ProjectionRow(
        entity_id=entity.id,
        entity_type=entity.type,
        task_id=task.id or "",
        task_type=task.type,
        queue_id=task.queue_id,
        status=status,
        rank=RANKS[status],
        version=version_of(now),
        generation=generation_of(task),
        error=error,
        result=result,
        payload=task.payload if include_payload else None,
        created_at=task.created_at or now,
        updated_at=now,
    )


def generation_of(task: Task) -> int:
    """The task's generation: how many times an operator retried it (0 if never)."""
    value = task.metadata.get(OPERATOR_RETRIES, 0)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def version_of(now: datetime) -> int:
    """A row version from a timestamp (microseconds since the epoch)."""
    return int(now.timestamp() * 1_000_000)


def supersedes(new: ProjectionRow, old: ProjectionRow | None) -> bool:
    """Whether ``new`` may replace ``old`` (the condition every store applies atomically)."""
    if old is None:
        return True
    if new.generation != old.generation:
        return new.generation > old.generation
    if new.rank != old.rank:
        return new.rank > old.rank
    return new.rank < TERMINAL_RANK and new.version > old.version
