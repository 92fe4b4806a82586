"""The ``tq-aws`` command: its groups and commands, ``--version``, and ``main``."""

from __future__ import annotations

from collections.abc import Sequence
from importlib import metadata
from typing import Annotated

import typer
from typer.main import get_command

from tq_aws.cli.enqueue import enqueue
from tq_aws.cli.flows import flow
from tq_aws.cli.groups import help_of
from tq_aws.cli.poison import poison
from tq_aws.cli.status import status
from tq_aws.cli.tasks import cancel, retry, task
from tq_aws.cli.worker import worker

cli = typer.Typer(
    name="tq-aws",
    help="tq-aws: run workers, add tasks, read status and operate an app's TaskQueue, on the "
    "embedded default (--app module:attr) or on AWS (--aws, reading the TQ_* variables).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def version() -> str:
    """The installed distribution's version."""
    try:
        return metadata.version("tq-aws")
    except metadata.PackageNotFoundError:  # run from a source tree that is not installed
        return "unknown"


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"tq-aws {version()}")
        raise typer.Exit()


@cli.callback()
def root(
    show_version: Annotated[
        bool,
        typer.Option("--version", callback=_show_version, is_eager=True, help="print the version"),
    ] = False,
) -> None:
    """tq-aws: run workers, add tasks, read status and operate an app's TaskQueue."""


@cli.command()
def demo(
    fast: Annotated[bool, typer.Option("--fast", help="no pauses between frames")] = False,
) -> None:
    """Run the demo (a morning at a small shop) on the embedded in-memory default."""
    from tq_aws.demo import run_demo

    code = run_demo(fast=fast)
    if code:
        raise typer.Exit(code)


cli.command(help=help_of(worker))(worker)
cli.command(help=help_of(enqueue))(enqueue)
cli.add_typer(status, name="status")
cli.command(help=help_of(flow))(flow)
cli.command(help=help_of(task))(task)
cli.command(help=help_of(retry))(retry)
cli.command(help=help_of(cancel))(cancel)
cli.add_typer(poison, name="poison")


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``tq-aws`` with ``argv`` (default: the process's arguments); return the exit code."""
    command = get_command(cli)
    try:
        command.main(args=list(argv) if argv is not None else None, prog_name="tq-aws")
    except SystemExit as done:
        code = done.code
        if code is None:
            return 0
        if isinstance(code, int):
            return code
        typer.echo(str(code), err=True)
        return 1
    return 0


__all__ = ["cli", "main", "version"]
