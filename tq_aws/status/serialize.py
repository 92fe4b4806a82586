"""The status API's JSON: plain dicts of the queries' results, times ISO-8601 UTC (``Z``).

- an entity: ``{"tasks": [...], "flows": [...]}``, each row with ``task_id`` (or ``flow_id``),
  ``status``, ``task_type``, ``queue_id``, ``error``, ``result``, ``created_at``,
  ``updated_at`` (a flow row also its ``progress``: the flow's counters and state);
- a flow: the fields of ``flow_status`` (``finished_at`` null while the flow is open);
- a flow's steps: ``{"flow_id", "failed_only", "steps": [{"step_index", "status", "result",
  "error"}]}``;
- a task: the stored task, as ``Task.model_dump(mode="json")``;
- the overview: ``{"rows": [...], "cursor": ...}``; the poison records: ``{"records": [...]}``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from tq_aws.core.flows import FlowStatus
from tq_aws.core.projections import ProjectionRow
from tq_aws.core.task import Task, to_utc
from tq_aws.status.queries import EntityView, FlowView, Overview, PoisonView


def iso(value: datetime | None) -> str | None:
    """ISO-8601 UTC with ``Z``, as pydantic writes the tasks' times."""
    if value is None:
        return None
    return to_utc(value).isoformat().replace("+00:00", "Z")


def progress_json(status: FlowStatus) -> dict[str, Any]:
    return {
        "state": status.state,
        "total": status.total,
        "succeeded": status.succeeded,
        "failed": status.failed,
        "pending": status.pending,
    }


def row_json(row: ProjectionRow, progress: FlowStatus | None = None) -> dict[str, Any]:
    """One projection row; a flow row names its id ``flow_id``."""
    out: dict[str, Any] = {
        ("flow_id" if row.kind == "flow" else "task_id"): row.task_id,
        "kind": row.kind,
        "status": row.status,
        "task_type": row.task_type,
        "queue_id": row.queue_id,
        "entity": {"type": row.entity_type, "id": row.entity_id},
        "error": row.error,
        "result": row.result,
        "created_at": iso(row.created_at),
        "updated_at": iso(row.updated_at),
        "generation": row.generation,
    }
    if row.kind == "flow":
        out["progress"] = None if progress is None else progress_json(progress)
    return out


def entity_json(view: EntityView) -> dict[str, Any]:
    return {
        "tasks": [row_json(r) for r in view.tasks],
        "flows": [row_json(r, view.progress.get(r.task_id)) for r in view.flows],
    }


def flow_json(status: FlowStatus) -> dict[str, Any]:
    """The fields of ``FlowStatus``, JSON-ready."""
    return {
        "flow_id": status.flow_id,
        "state": status.state,
        "total": status.total,
        "succeeded": status.succeeded,
        "failed": status.failed,
        "pending": status.pending,
        "started_at": iso(status.started_at),
        "finished_at": iso(status.finished_at),
        "join_task_id": status.join_task_id,
        "failure_policy": status.failure_policy,
        "deadline": iso(status.deadline),
        "join": status.join.model_dump(mode="json"),
        "entity": None if status.entity is None else status.entity.model_dump(mode="json"),
        "parent_task_id": status.parent_task_id,
    }


def steps_json(view: FlowView) -> dict[str, Any]:
    return {
        "flow_id": view.status.flow_id,
        "failed_only": view.failed_only,
        "steps": [
            {"step_index": s.index, "status": s.state, "result": s.result, "error": s.error}
            for s in view.steps
        ],
    }


def task_json(task: Task) -> dict[str, Any]:
    """The stored task, exactly as ``Task.model_dump(mode="json")`` gives it."""
    return task.model_dump(mode="json")


def overview_json(view: Overview) -> dict[str, Any]:
    where = view.where
    return {
        "rows": [row_json(r, view.flows.get(r.task_id)) for r in view.rows],
        "cursor": view.cursor,
        "filter": {
            "status": where.status,
            "task_type": where.task_type,
            "kind": where.kind,
            "since": iso(where.since),
            "until": iso(where.until),
        },
    }


def poison_json(views: list[PoisonView]) -> dict[str, Any]:
    records = []
    for view in views:
        record, source = view.record, view.source
        records.append(
            {
                "key": record.key,
                "queue_id": record.queue_id,
                "position": record.position,
                "source": source.kind,
                "stream": source.stream,
                "shard": source.shard,
                "sequence_number": source.sequence_number,
                "message_id": source.message_id,
                "reason": record.reason,
                "error": record.error,
                "seen_at": iso(record.seen_at),
                "size": len(record.data),
                "task_id": view.task_id,
                "redriven": view.redriven,
            }
        )
    return {"records": records}


__all__ = [
    "entity_json",
    "flow_json",
    "iso",
    "overview_json",
    "poison_json",
    "row_json",
    "steps_json",
    "task_json",
]
