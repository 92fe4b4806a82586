"""``tq-aws flow FLOW_ID``: a flow's state and counters (total, succeeded, failed, pending), its
join, and its steps (``--steps``, or ``--failed`` for the failed ones only)."""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass
from typing import Annotated, Any

import typer
from rich.console import Group
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from tq_aws.app import TaskQueue
from tq_aws.cli.loading import AppOption, AwsOption, JsonOption, resolve_app
from tq_aws.cli.render import (
    add_row,
    console,
    emit_json,
    error_text,
    jsonable,
    short,
    status_text,
    table,
    when,
)
from tq_aws.core.flow_results import FlowResults
from tq_aws.core.flows import FlowStatus
from tq_aws.core.task import Task

NOT_FOUND = 1


@dataclass(frozen=True, slots=True)
class Step:
    step_index: int
    status: str
    result: Any = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class FlowView:
    status: FlowStatus
    join: Task | None
    steps: list[Step]


async def flow_view(app: TaskQueue, flow_id: str) -> FlowView | None:
    """The flow, its join task (once dispatched) and the steps with a final outcome: from the
    flow store while it is open, from the join's payload once it closed."""
    found = await app.flow_status(flow_id)
    if found is None:
        return None
    join = await app.get_task(found.join_task_id)
    steps: list[Step]
    if found.state == "open":
        steps = [Step(**asdict(r)) for r in await app.flow_store.results(flow_id)]
    elif join is not None and isinstance(join.payload, dict) and "flow_results" in join.payload:
        results = FlowResults.model_validate(join.payload["flow_results"])
        steps = [Step(s.step_index, s.status, s.result, s.error) for s in results.steps]
    else:
        steps = []
    return FlowView(found, join, steps)


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
    steps: Annotated[bool, typer.Option("--steps", help="list every finished step")] = False,
    failed: Annotated[bool, typer.Option("--failed", help="list the failed steps only")] = False,
    as_json: JsonOption = False,
) -> None:
    """A flow's state (open, joined, aborted, timed_out), counters and join."""
    queue = resolve_app(app, aws)

    async def read() -> FlowView | None:
        try:
            return await flow_view(queue, flow_id)
        finally:
            await queue.aclose()

    view = asyncio.run(read())
    if view is None:
        typer.echo(f"tq-aws: no flow {flow_id}", err=True)
        raise typer.Exit(NOT_FOUND)
    listed = [s for s in view.steps if s.status == "fail"] if failed else view.steps
    if as_json:
        document = jsonable(view.status)
        document["join_status"] = view.join.status.value if view.join else None
        document["steps"] = jsonable(listed)
        emit_json(document)
        return
    found = view.status
    done = found.succeeded + found.failed
    join = view.join
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
        title = "failed steps" if failed else "steps with a final outcome"
        grid = table(title, "step", "status", "error", "result")
        for step in listed:
            add_row(
                grid,
                str(step.step_index),
                status_text(step.status),
                error_text(step.error),
                short(step.result),
            )
        out.print(grid)


__all__ = ["FlowView", "Step", "flow", "flow_view"]
