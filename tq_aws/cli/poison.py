"""``tq-aws poison``: the records no worker could decode, newest first (``poison list``, the
default), and ``poison redrive``: put them back on their way after a fix."""

from __future__ import annotations

import asyncio
import re
from typing import Annotated

import typer
from rich.text import Text

from tq_aws.app import TaskQueue
from tq_aws.cli.groups import PoisonGroup, help_of
from tq_aws.cli.loading import AppOption, AwsOption, JsonOption, resolve_app, usage_error
from tq_aws.cli.render import add_row, console, emit_json, short, table, when
from tq_aws.cli.tasks import ActorOption, actor_name, parse_time
from tq_aws.core.poison import PoisonRecord

poison = typer.Typer(
    cls=PoisonGroup,
    help="The records no worker could decode: list them (the default), redrive them.",
)

LimitOption = Annotated[int, typer.Option("--limit", min=1, help="how many records")]


def position_key(position: str) -> tuple[tuple[int, int, str], ...]:
    """Order positions as their numbers do: ``.../shard/10`` after ``.../shard/9``."""
    return tuple(
        (0, int(part), "") if part.isdigit() else (1, 0, part)
        for part in re.split(r"(\d+)", position)
        if part
    )


def newest_first(records: list[PoisonRecord]) -> list[PoisonRecord]:
    """Newest first, and within one batch (one ``seen_at``) the later position first."""
    return sorted(records, key=lambda r: (r.seen_at, position_key(r.position)), reverse=True)


async def recent(app: TaskQueue, limit: int) -> list[PoisonRecord]:
    """The newest ``limit`` records. The records of one batch share their ``seen_at`` and the
    store orders them by key: ask for more until the last batch shown is there whole."""
    asked = limit
    while True:
        records = await app.poison_records(asked)
        if len(records) < asked or records[-1].seen_at < records[limit - 1].seen_at:
            return newest_first(records)[:limit]
        asked *= 2


def preview(data: bytes, limit: int = 60) -> str:
    return repr(data[:limit].decode("utf-8", "replace").replace("\n", " "))


def list_records(
    app: AppOption = None,
    aws: AwsOption = False,
    limit: LimitOption = 20,
    as_json: JsonOption = False,
) -> None:
    """The kept poison records, newest first, with reason, error, position and key.

    --json: one object per line, the bytes as base64.
    """
    queue = resolve_app(app, aws)

    async def read() -> list[PoisonRecord]:
        try:
            return await recent(queue, limit)
        finally:
            await queue.aclose()

    records = asyncio.run(read())
    if as_json:
        for record in records:
            emit_json({"key": record.key, **record.model_dump(mode="json")})
        return
    out = console()
    if not records:
        out.print("no poison records")
        return
    grid = table(
        f"poison records (newest first, at most {limit})", "position", "key", "seen", "reason"
    )
    grid.add_column("error / data", overflow="fold")
    for record in records:
        add_row(
            grid,
            f"{record.queue_id} {record.position}",
            record.key,
            when(record.seen_at),
            record.reason,
            Text.assemble(
                (short(record.error, 100), "red"),
                f"\ndata ({len(record.data)} bytes): {preview(record.data)}",
            ),
        )
    out.print(grid)


def redrive(
    keys: Annotated[
        list[str] | None, typer.Argument(help="the records' keys (as poison list shows them)")
    ] = None,
    reason: Annotated[
        str | None, typer.Option(help="only records of this reason (e.g. unknown_version)")
    ] = None,
    source: Annotated[
        str | None, typer.Option("--source", help="only records of this stream, queue URL or id")
    ] = None,
    since: Annotated[
        str | None, typer.Option(help="only records first seen at or after this ISO time")
    ] = None,
    every: Annotated[
        bool, typer.Option("--all", help="every kept record (without keys or a filter)")
    ] = False,
    actor: ActorOption = None,
    app: AppOption = None,
    aws: AwsOption = False,
    as_json: JsonOption = False,
) -> None:
    """Add the tasks of poison records that decode now (after a fix).

    Records are chosen by key, by --reason, --source or --since, or --all. A redrive sent
    twice adds each task once.
    """
    who = actor_name(actor)
    chosen = bool(keys) or reason is not None or source is not None or since is not None
    if not chosen and not every:
        usage_error("poison redrive: give record keys, --reason, --source or --since, or --all")
    when_seen = parse_time("--since", since)
    queue = resolve_app(app, aws)

    async def go() -> int:
        try:
            return await queue.redrive_poison(
                keys or None, reason=reason, queue_id=source, since=when_seen, actor=who
            )
        finally:
            await queue.aclose()

    added = asyncio.run(go())
    if as_json:
        emit_json({"added": added})
    else:
        typer.echo(f"redrove poison records: {added} task(s) added")


poison.command("list", help=help_of(list_records))(list_records)
poison.command("redrive", help=help_of(redrive))(redrive)

__all__ = ["list_records", "newest_first", "poison", "position_key", "recent", "redrive"]
