"""``tq-aws task TASK_ID`` (the stored task: attempts, last error with its stack, result),
``retry TASK_ID`` (run a failed task again) and ``cancel TASK_ID`` (a task not started)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import typer
from rich.console import Group
from rich.text import Text

from tq_aws.app import TaskQueue
from tq_aws.cli.loading import AppOption, AwsOption, JsonOption, resolve_app
from tq_aws.cli.render import console, emit_json, short, status_text, when
from tq_aws.core.task import Task

NOT_DONE = 1
"""Exit code when the task is unknown, or the action did not apply to it."""

TaskId = Annotated[str, typer.Argument(help="the task's id")]


def _run(app: TaskQueue, call: Callable[[TaskQueue], Awaitable[Any]]) -> Any:
    async def go() -> Any:
        try:
            return await call(app)
        finally:
            await app.aclose()

    return asyncio.run(go())


def task(
    task_id: TaskId,
    app: AppOption = None,
    aws: AwsOption = False,
    as_json: JsonOption = False,
) -> None:
    """The stored task: status, times, attempts, last error with its stack, result."""
    queue = resolve_app(app, aws)
    found: Task | None = _run(queue, lambda q: q.get_task(task_id))
    if found is None:
        typer.echo(
            f"tq-aws: no stored task {task_id} (a task that succeeds at its first attempt "
            "is not stored unless force_store; its entity's status shows it)",
            err=True,
        )
        raise typer.Exit(NOT_DONE)
    if as_json:
        emit_json(found)
        return
    stats = found.execution_stats
    entity = f"{found.entity.type} {found.entity.id}" if found.entity else "-"
    retries = "executor's" if found.retries is None else str(found.retries)
    lines: list[Any] = [
        Text.assemble("task ", (found.id or "", "bold"), ": ", status_text(found.status.value)),
        Text(f"{found.queue_id}/{found.type}   entity {entity}"),
        Text(
            f"created {when(found.created_at)}   execute at {when(found.execute_at)}   "
            f"updated {when(found.updated_at)}"
        ),
        Text(f"attempts {found.retry_count + 1}   retries {retries}"),
    ]
    if stats.get("last_error"):
        lines.append(Text(f"last error: {stats['last_error']}", style="red"))
    if stats.get("last_error_stack"):
        lines.append(Text(str(stats["last_error_stack"]).rstrip(), style="dim red"))
    if stats.get("ignored_reason"):
        lines.append(Text(f"ignored: {stats['ignored_reason']}", style="magenta"))
    lines.append(Text(f"result: {short(found.execution_result, 400)}"))
    lines.append(Text(f"payload: {short(found.payload, 400)}"))
    console().print(Group(*lines))


def cancel(
    task_id: TaskId,
    app: AppOption = None,
    aws: AwsOption = False,
    as_json: JsonOption = False,
) -> None:
    """Cancel a stored task that has not started (a scheduled or delayed one)."""
    queue = resolve_app(app, aws)
    done: bool = _run(queue, lambda q: q.cancel(task_id))
    if as_json:
        emit_json({"task_id": task_id, "cancelled": done})
    elif done:
        typer.echo(f"cancelled {task_id}")
    else:
        typer.echo(
            f"tq-aws: {task_id} was not cancelled: only a stored task that has not started "
            "can be (this one is unknown, running or finished)",
            err=True,
        )
    if not done:
        raise typer.Exit(NOT_DONE)


__all__ = ["NOT_DONE", "cancel", "task"]
