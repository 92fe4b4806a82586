"""``tq-aws task TASK_ID`` (the stored task: attempts, last error with its stack, result),
``retry TASK_ID`` (run a failed task again) and ``cancel TASK_ID`` (a task not started)."""

from __future__ import annotations

import asyncio
import getpass
import os
import socket
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, Any

import typer
from rich.console import Group
from rich.text import Text

from tq_aws.app import TaskQueue
from tq_aws.cli.loading import AppOption, AwsOption, JsonOption, resolve_app, usage_error
from tq_aws.cli.render import console, emit_json, short, status_text, when
from tq_aws.core.task import Task

NOT_DONE = 1
"""Exit code when the task is unknown, or the action did not apply to it."""

TaskId = Annotated[str, typer.Argument(help="the task's id")]
ActorOption = Annotated[
    str | None,
    typer.Option(help="who asks, for the operator log (default: cli:<user>@<host>)"),
]


def actor_name(given: str | None) -> str:
    """Who an operator action is logged as: ``--actor``, or ``cli:<user>@<host>``."""
    if given:
        return given
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (containers)
        user = str(os.getuid())
    return f"cli:{user}@{socket.gethostname()}"


def parse_time(flag: str, text: str | None) -> datetime | None:
    """An ISO-8601 time with its UTC offset (``Z`` too); a time without one is refused."""
    if text is None:
        return None
    try:
        found = datetime.fromisoformat(text)
    except ValueError:
        usage_error(f"{flag} {text!r}: not an ISO-8601 time; e.g. {flag} 2026-03-01T12:00:00Z")
    if found.tzinfo is None:
        usage_error(f"{flag} {text!r}: give the UTC offset, e.g. {flag} {text}Z")
    return found


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


def retry(
    task_id: Annotated[
        str | None, typer.Argument(help="the failed task's id (or --failed for many)")
    ] = None,
    failed: Annotated[
        bool, typer.Option("--failed", help="retry the failed tasks of entities, by filter")
    ] = False,
    task_type: Annotated[str | None, typer.Option("--type", help="with --failed")] = None,
    queue_id: Annotated[str | None, typer.Option("--queue", help="with --failed")] = None,
    since: Annotated[
        str | None, typer.Option(help="with --failed: failed at or after this ISO time")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="with --failed: at most this many")] = 1000,
    failed_attempt: Annotated[
        int | None,
        typer.Option(min=0, help="retry only if it failed at this attempt (its retry_count)"),
    ] = None,
    actor: ActorOption = None,
    app: AppOption = None,
    aws: AwsOption = False,
    as_json: JsonOption = False,
) -> None:
    """Run a failed task again as its next attempt (--failed: many, by filter).

    With --failed, the failed tasks of entities of a type, queue or time are retried, at most
    --limit. A retry sent twice starts one attempt (--failed-attempt makes a replay safe).
    """
    who = actor_name(actor)
    if failed == (task_id is not None):
        usage_error("retry: give a TASK_ID, or --failed (with --type, --queue, --since) for many")
    if not failed and (task_type or queue_id or since):
        usage_error("retry: --type, --queue and --since choose tasks with --failed")
    queue = resolve_app(app, aws)
    if failed:
        started: int = _run(
            queue,
            lambda q: q.retry_failed(
                task_type, queue_id, parse_time("--since", since), actor=who, limit=limit
            ),
        )
        if as_json:
            emit_json({"retried": started})
        else:
            typer.echo(f"retried {started} failed task(s)")
        return
    assert task_id is not None

    async def one(q: TaskQueue) -> tuple[bool, Task | None]:
        done = await q.retry_task(task_id, actor=who, failed_attempt=failed_attempt)
        return done, await q.get_task(task_id)

    done, found = _run(queue, one)
    if as_json:
        emit_json({"task_id": task_id, "retried": done})
    elif done and found is not None:
        typer.echo(f"retried {task_id}: attempt {found.retry_count + 1} is on its way")
    elif not done:
        state = "not stored" if found is None else f"{found.status.value}, attempt "
        if found is not None:
            state += str(found.retry_count + 1)
        typer.echo(
            f"tq-aws: {task_id} was not retried: only a stored task that failed can be "
            f"(this one is {state})",
            err=True,
        )
    if not done:
        raise typer.Exit(NOT_DONE)


def cancel(
    task_id: TaskId,
    actor: ActorOption = None,
    app: AppOption = None,
    aws: AwsOption = False,
    as_json: JsonOption = False,
) -> None:
    """Cancel a stored task that has not started (a scheduled or delayed one)."""
    who = actor_name(actor)
    queue = resolve_app(app, aws)
    done: bool = _run(queue, lambda q: q.cancel(task_id, actor=who))
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


__all__ = ["NOT_DONE", "actor_name", "cancel", "parse_time", "retry", "task"]
