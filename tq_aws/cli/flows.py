"""``tq-aws flow FLOW_ID``: a flow's state and counters (total, succeeded, failed, pending), its
join, and its steps (``--steps``, or ``--failed`` for the failed ones only), read as the status
page reads them (``tq_aws.status.queries``)."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import typer
from rich.console import Group
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

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
from tq_aws.status.queries import FlowView, StatusQueries
from tq_aws.status.serialize import flow_json, steps_json

NOT_FOUND = 1


def bar(done: int, total: int) -> Table:
    """``━━━━━━━━━━━━━━━━ 5/6 finished``: the flow's progress on one line."""
    grid = Table.grid(padding=(0, 1))
    grid.add_row(
        ProgressBar(total=max(total, 1), completed=done, width=40),
        Text(f"{done}/{total} finished"),
    )
    return grid


def flow(
    flow_id: Annotated[str, typer.Argument(help="the flow's id")],
    app: AppOption = None,
    aws: AwsOption = False,
    steps: Annotated[bool, typer.Option("--steps", help="list every step")] = False,
    failed: Annotated[bool, typer.Option("--failed", help="list the failed steps only")] = False,
    as_json: JsonOption = False,
) -> None:
    """A flow's state (open, joined, aborted, timed_out), counters, join and steps.

    --json gives the fields of flow_status (as the status API answers), the join task's
    status, and the steps (the failed ones with --failed).
    """
    queue = resolve_app(app, aws)

    async def read() -> FlowView | None:
        try:
            return await StatusQueries(queue).flow(flow_id, failed_only=failed)
        finally:
            await queue.aclose()

    view = asyncio.run(read())
    if view is None:
        typer.echo(f"tq-aws: no flow {flow_id}", err=True)
        raise typer.Exit(NOT_FOUND)
    join = view.join
    if as_json:
        document = flow_json(view.status)
        document["join_status"] = join.status.value if join else None
        document["steps"] = steps_json(view)["steps"]
        emit_json(document)
        return
    found = view.status
    done = found.succeeded + found.failed
    lines: list[Any] = [
        Text.assemble("flow ", (found.flow_id, "bold"), ": ", status_text(found.state)),
        Text(
            f"total {found.total}   succeeded {found.succeeded}   failed {found.failed}   "
            f"pending {found.pending}"
        ),
        bar(done, found.total),
        Text(f"started {when(found.started_at)}   finished {when(found.finished_at)}"),
        Text.assemble(
            f"join {found.join.queue_id}/{found.join.type} task {found.join_task_id}: ",
            status_text(join.status.value) if join else Text("not dispatched yet"),
        ),
        Text(
            f"failure policy {found.failure_policy}   deadline {when(found.deadline)}   "
            f"entity {found.entity.type + ' ' + found.entity.id if found.entity else '-'}   "
            f"parent task {found.parent_task_id or '-'}"
        ),
    ]
    out = console()
    out.print(Group(*lines))
    if steps or failed:
        grid = table("failed steps" if failed else "steps", "step", "status", "error", "result")
        for step in view.steps:
            add_row(
                grid,
                str(step.index),
                status_text(step.state),
                error_text(step.error),
                short(step.result),
            )
        out.print(grid)


__all__ = ["bar", "flow"]
