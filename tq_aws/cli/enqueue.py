"""``tq-aws enqueue``: one task from flags, or many from a JSON-lines file (one ``Task`` object a
line; the flags fill in what a line leaves out) with a progress bar."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from tq_aws.app import TaskQueue
from tq_aws.cli.loading import AppOption, AwsOption, JsonOption, resolve_app, usage_error
from tq_aws.cli.render import console, emit_json
from tq_aws.core.prepare import prepare_tasks
from tq_aws.core.task import Task
from tq_aws.errors import TaskValidationError, TqError

FAILED = 1
"""Exit code when a later chunk of a file was refused after earlier chunks were added."""


def _json_value(flag: str, text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        usage_error(f'{flag}: not JSON ({exc}); e.g. {flag} \'{{"to": "a@b.c"}}\'')


def _validation_line(where: str, exc: ValidationError) -> str:
    first = exc.errors()[0]
    field = ".".join(str(p) for p in first["loc"]) or "task"
    return f"{where}: {field}: {first['msg']}"


def _lines(path: str) -> Iterator[tuple[int, str]]:
    if path == "-":
        yield from enumerate(sys.stdin, 1)
        return
    try:
        with Path(path).open(encoding="utf-8") as handle:
            yield from enumerate(handle, 1)
    except OSError as exc:
        usage_error(f"--file {path}: {exc.strerror or exc}")


def read_file(path: str, defaults: dict[str, Any]) -> tuple[list[Task], list[int]]:
    """The tasks of a JSON-lines file and the line number of each; blank lines are skipped. A
    line that is not a task is one error naming the line, before anything is added."""
    tasks: list[Task] = []
    numbers: list[int] = []
    for n, line in _lines(path):
        if not line.strip():
            continue
        try:
            document = json.loads(line)
        except ValueError as exc:
            usage_error(f"{path} line {n}: not JSON ({exc})")
        if not isinstance(document, dict):
            usage_error(f"{path} line {n}: give a JSON object with the fields of a Task")
        try:
            tasks.append(Task.model_validate({**defaults, **document}))
        except ValidationError as exc:
            usage_error(_validation_line(f"{path} line {n}", exc))
        numbers.append(n)
    return tasks, numbers


def _where(numbers: list[int], start: int, exc: TaskValidationError, path: str | None) -> str:
    if path is None or exc.index is None or not 0 <= start + exc.index < len(numbers):
        return ""
    return f"{path} line {numbers[start + exc.index]}: "


async def _add(
    app: TaskQueue, tasks: list[Task], numbers: list[int], path: str | None, chunk: int
) -> list[str]:
    ids: list[str] = []
    try:
        try:  # the whole file is checked first: a bad task anywhere adds nothing
            prepare_tasks(tasks, app.registry, app.clock.now())
        except TaskValidationError as exc:
            usage_error(f"{_where(numbers, 0, exc, path)}{exc}")
        if path is None:
            return await app.add_tasks(tasks)
        progress = Progress(
            TextColumn("enqueue"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console(stderr=True),
        )
        with progress:
            bar = progress.add_task("enqueue", total=len(tasks))
            for start in range(0, len(tasks), chunk):
                try:
                    ids += await app.add_tasks(tasks[start : start + chunk])
                except TaskValidationError as exc:
                    progress.stop()
                    typer.echo(
                        f"tq-aws: {_where(numbers, start, exc, path)}{exc} ({len(ids)} task(s) "
                        f"of the lines before line {numbers[start]} were added)",
                        err=True,
                    )
                    raise typer.Exit(FAILED) from None
                progress.advance(bar, min(chunk, len(tasks) - start))
        return ids
    except TqError as exc:
        usage_error(str(exc))
    finally:
        await app.aclose()


def enqueue(
    queue_id: Annotated[
        str | None, typer.Option("--queue", "-q", help="queue id of the task(s)")
    ] = None,
    task_type: Annotated[str | None, typer.Option("--type", "-t", help="task type")] = None,
    payload: Annotated[str | None, typer.Option(help="the payload as JSON (default: null)")] = None,
    task_id: Annotated[str | None, typer.Option("--id", help="an explicit task id")] = None,
    entity: Annotated[
        str | None,
        typer.Option(help="TYPE:ID of the entity whose status the task reports"),
    ] = None,
    execute_at: Annotated[
        str | None, typer.Option(help="ISO-8601 time to run at (with a UTC offset)")
    ] = None,
    expires_at: Annotated[
        str | None, typer.Option(help="ISO-8601 time after which it is not run")
    ] = None,
    retries: Annotated[
        int | None, typer.Option(min=0, help="retries (overrides the executor's)")
    ] = None,
    force_store: Annotated[
        bool, typer.Option("--force-store", help="keep a durable copy from the start")
    ] = False,
    file: Annotated[
        str | None,
        typer.Option("--file", "-f", help="JSON lines, one Task object a line ('-' for stdin)"),
    ] = None,
    chunk_size: Annotated[
        int, typer.Option(min=1, max=10_000, help="tasks per add_tasks call with --file")
    ] = 100,
    app: AppOption = None,
    aws: AwsOption = False,
    as_json: JsonOption = False,
) -> None:
    """Add one task from the flags, or the tasks of a JSON-lines file; print their ids."""
    fields: dict[str, Any] = {"queue_id": queue_id, "type": task_type, "id": task_id}
    if payload is not None:
        fields["payload"] = _json_value("--payload", payload)
    if entity is not None:
        kind, sep, key = entity.partition(":")
        if not sep or not kind or not key:
            usage_error(f"--entity {entity!r}: give TYPE:ID, e.g. --entity customer:c-42")
        fields["entity"] = {"type": kind, "id": key}
    fields.update(execute_at=execute_at, expires_at=expires_at, retries=retries)
    if force_store:
        fields["force_store"] = True
    given = {k: v for k, v in fields.items() if v is not None}
    queue = resolve_app(app, aws)
    if file is None:
        if queue_id is None or task_type is None:
            usage_error("enqueue: give --queue and --type (or --file with one task a line)")
        try:
            tasks, numbers = [Task.model_validate(given)], [1]
        except ValidationError as exc:
            usage_error(_validation_line("enqueue", exc))
    else:
        if task_id is not None:
            usage_error("enqueue --file: --id would give every line the same id; put ids in lines")
        tasks, numbers = read_file(file, given)
    ids = asyncio.run(_add(queue, tasks, numbers, file, chunk_size))
    if as_json:
        emit_json({"ids": ids})
    elif file is None:
        typer.echo(ids[0])
    else:
        typer.echo(f"added {len(ids)} task(s) from {file}")


__all__ = ["enqueue", "read_file"]
