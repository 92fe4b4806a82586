"""``tq-aws status ENTITY_TYPE ENTITY_ID`` (``status entity``): the tasks and flows of one
entity, newest first; and ``status serve``: the status page and API on 127.0.0.1."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import typer
from rich.text import Text

from tq_aws.app import TaskQueue
from tq_aws.cli.groups import StatusGroup
from tq_aws.cli.loading import AppOption, AwsOption, JsonOption, resolve_app
from tq_aws.cli.render import (
    add_row,
    console,
    emit_json,
    error_text,
    short,
    status_text,
    table,
    when,
)
from tq_aws.core.projections import ProjectionRow
from tq_aws.core.task import Entity

status = typer.Typer(
    cls=StatusGroup,
    help="Status of an entity's tasks and flows (status ENTITY_TYPE ENTITY_ID), or serve the "
    "status page (status serve).",
)


def row_kind(row: ProjectionRow) -> str:
    return "flow" if getattr(row, "kind", "task") == "flow" else "task"


def row_document(row: ProjectionRow) -> dict[str, Any]:
    """A row as the status API gives it: ``task_id`` (``flow_id`` for a flow's own row),
    ``status``, ``task_type``, ``queue_id``, ``error``, ``result`` and the times."""
    document = row.model_dump(mode="json", exclude={"entity_id", "entity_type", "rank"})
    if row_kind(row) == "flow":
        document["flow_id"] = document.pop("task_id")
    return document


async def entity_rows(app: TaskQueue, entity: Entity) -> list[ProjectionRow]:
    """The entity's rows, newest first."""
    rows = await app.entity_status(entity)
    return sorted(rows, key=lambda r: (r.updated_at, r.version), reverse=True)


@status.command("entity")
def entity_status(
    entity_type: Annotated[str, typer.Argument(help="the entity's type, e.g. customer")],
    entity_id: Annotated[str, typer.Argument(help="the entity's id")],
    app: AppOption = None,
    aws: AwsOption = False,
    as_json: JsonOption = False,
) -> None:
    """The tasks and flows of one entity, newest first (also: status ENTITY_TYPE ENTITY_ID)."""
    queue = resolve_app(app, aws)
    entity = Entity(type=entity_type, id=entity_id)

    async def read() -> list[ProjectionRow]:
        try:
            return await entity_rows(queue, entity)
        finally:
            await queue.aclose()

    rows = asyncio.run(read())
    if as_json:
        emit_json(
            {
                "entity": {"type": entity_type, "id": entity_id},
                "tasks": [row_document(r) for r in rows if row_kind(r) == "task"],
                "flows": [row_document(r) for r in rows if row_kind(r) == "flow"],
            }
        )
        return
    out = console()
    if not rows:
        out.print(f"no tasks or flows for {entity_type} {entity_id}", markup=False)
        return
    title = Text(f"{entity_type} {entity_id}: {len(rows)} row(s), newest first")
    grid = table(title, "id", "kind", "queue/type", "status", "updated", "error", "result")
    for row in rows:
        add_row(
            grid,
            row.task_id,
            row_kind(row),
            f"{row.queue_id}/{row.task_type}",
            status_text(row.status),
            when(row.updated_at),
            error_text(row.error),
            short(row.result),
        )
    out.print(grid)


__all__ = ["entity_rows", "entity_status", "row_document", "row_kind", "status"]
