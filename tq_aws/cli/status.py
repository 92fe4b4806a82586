"""``tq-aws status ENTITY_TYPE ENTITY_ID`` (``status entity``): the tasks and flows of one
entity, newest first; and ``status serve``: the status page and API on 127.0.0.1."""

from __future__ import annotations

import asyncio
import threading
from typing import Annotated

import typer
from rich.text import Text

from tq_aws.app import TaskQueue
from tq_aws.cli.groups import StatusGroup, help_of
from tq_aws.cli.loading import AppOption, AwsOption, JsonOption, resolve_app, usage_error
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
from tq_aws.cli.signals import StopSignals
from tq_aws.core.task import Entity
from tq_aws.status.queries import EntityView, StatusQueries
from tq_aws.status.serialize import entity_json

status = typer.Typer(
    cls=StatusGroup,
    help="Status of an entity's tasks and flows (status ENTITY_TYPE ENTITY_ID), or serve the "
    "status page (status serve).",
)


async def entity_view(app: TaskQueue, entity: Entity) -> EntityView | None:
    """The entity's task and flow rows, newest first, as the status page reads them."""
    return await StatusQueries(app).entity(entity)


def entity_status(
    entity_type: Annotated[str, typer.Argument(help="the entity's type, e.g. customer")],
    entity_id: Annotated[str, typer.Argument(help="the entity's id")],
    app: AppOption = None,
    aws: AwsOption = False,
    as_json: JsonOption = False,
) -> None:
    """The tasks and flows of one entity, newest first (also: status ENTITY_TYPE ENTITY_ID).

    --json gives what the status API answers: {"tasks": [...], "flows": [...]}.
    """
    queue = resolve_app(app, aws)
    entity = Entity(type=entity_type, id=entity_id)

    async def read() -> EntityView | None:
        try:
            return await entity_view(queue, entity)
        finally:
            await queue.aclose()

    view = asyncio.run(read())
    if as_json:
        emit_json(entity_json(view) if view is not None else {"tasks": [], "flows": []})
        return
    out = console()
    if view is None:
        out.print(f"no tasks or flows for {entity_type} {entity_id}", markup=False)
        return
    rows = sorted([*view.tasks, *view.flows], key=lambda r: (r.created_at, r.task_id), reverse=True)
    title = Text(f"{entity_type} {entity_id}: {len(rows)} row(s), newest first")
    grid = table(title, "id", "kind", "queue/type", "status", "updated", "error", "result")
    for row in rows:
        kind: str = row.kind
        progress = view.progress.get(row.task_id) if kind == "flow" else None
        if progress is not None:
            done = progress.succeeded + progress.failed
            kind = f"flow {done}/{progress.total}"
        add_row(
            grid,
            row.task_id,
            kind,
            f"{row.queue_id}/{row.task_type}",
            status_text(row.status),
            when(row.updated_at),
            error_text(row.error),
            short(row.result),
        )
    out.print(grid)


LOOPBACK = ("127.0.0.1", "localhost", "::1")


def serve(
    app: AppOption = None,
    aws: AwsOption = False,
    host: Annotated[
        str, typer.Option(help="where to listen (loopback unless a token is set)")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="the port (0: any free one)")] = 8080,
    token: Annotated[
        str | None,
        typer.Option(
            envvar="TQ_STATUS_TOKEN",
            help="require Authorization: Bearer <token>; operator actions need it",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Serve the status page and API of the app on HOST:PORT until SIGINT/SIGTERM.

    The page shows recent failures and flows, entities, flows, tasks and poison records, and
    refreshes itself; JSON with Accept: application/json. Without a token the page is
    read-only and only on loopback.
    """
    if token is None and host not in LOOPBACK and not host.startswith("127."):
        usage_error(
            f"status serve --host {host}: give --token (or TQ_STATUS_TOKEN) to listen "
            "beyond this machine"
        )
    queue = resolve_app(app, aws)
    stopped = threading.Event()
    server = queue.serve_status(host=host, port=port, token=token)
    try:
        with StopSignals(stopped.set, "stopping the status server"):
            access = "token required" if token else "read-only, no token"
            typer.echo(f"tq-aws status serve: {server.url} ({access}); SIGINT/SIGTERM stop it")
            stopped.wait()
    finally:
        server.stop()
        asyncio.run(queue.aclose())
    typer.echo("tq-aws status serve: stopped")


status.command("entity", help=help_of(entity_status))(entity_status)
status.command("serve", help=help_of(serve))(serve)

__all__ = ["entity_status", "entity_view", "serve", "status"]
