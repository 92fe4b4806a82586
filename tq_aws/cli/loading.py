"""Finding the app a command works on: ``--app module:attr`` (from the current directory too,
as Celery and Dramatiq do), and ``--aws`` for the resources the ``TQ_*`` variables name.

A mistake the user can fix (a module that is not there, a missing attribute, ``--aws`` without
the variables) is one line on stderr saying what to do, and exit code 2; never a traceback.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Annotated, NoReturn

import typer

from tq_aws.app import TaskQueue
from tq_aws.errors import TqError

USAGE = 2
"""Exit code of a mistake in what the command was given (as argparse and Click use)."""

AppOption = Annotated[
    str | None,
    typer.Option(
        "--app",
        envvar="TQ_APP",
        help="module:attribute of your TaskQueue (found from the current directory too)",
        show_default=False,
    ),
]
AwsOption = Annotated[
    bool,
    typer.Option(
        "--aws",
        help="use the AWS resources the TQ_* variables name (TQ_STREAM, TQ_QUEUE_URL, "
        "TQ_TABLE, TQ_REGION, TQ_ENDPOINT_URL...)",
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="JSON for machines instead of tables")]


def usage_error(message: str) -> NoReturn:
    """Print ``tq-aws: <message>`` on stderr and exit with code 2."""
    typer.echo(f"tq-aws: {message}", err=True)
    raise typer.Exit(USAGE)


def load_app(spec: str) -> TaskQueue:
    """Import ``module:attr`` and return the TaskQueue it names.

    The current directory is searched first for the module (it is put on ``sys.path``), so
    ``tq-aws worker --app tasks:app`` works where ``tasks.py`` is. An import error inside the
    module itself is the module's own bug and keeps its traceback.
    """
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        usage_error(f"--app {spec!r}: give module:attribute, e.g. --app myapp.tasks:app")
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if module_name == missing or module_name.startswith(missing + "."):
            usage_error(
                f"--app {spec}: no module named {missing!r} in {cwd} or on the Python path; "
                "run from the directory that holds it, or add that directory to PYTHONPATH"
            )
        raise
    except TqError as exc:  # e.g. TaskQueue.from_env() refusing a TQ_* value
        usage_error(f"--app {spec}: {exc}")
    target: object = module
    for part in attr.split("."):
        if not hasattr(target, part):
            where = getattr(module, "__file__", None) or module_name
            usage_error(
                f"--app {spec}: {module_name} ({where}) has no attribute {part!r}; "
                f"name the TaskQueue it defines, e.g. --app {module_name}:app"
            )
        target = getattr(target, part)
    if not isinstance(target, TaskQueue):
        what = (
            f"the class {target.__name__}"
            if isinstance(target, type)
            else f"of type {type(target).__name__}"
        )
        usage_error(
            f"--app {spec}: {attr} is {what}, not a tq_aws.TaskQueue; "
            "name the TaskQueue your module builds"
        )
    return target


def aws_app() -> TaskQueue:
    """``TaskQueue.from_env()``, refusing to fall back to the embedded default."""
    from tq_aws.backends.aws.factory import settings_from_env

    try:
        if settings_from_env() is None:
            usage_error(
                "--aws: none of TQ_STREAM, TQ_QUEUE_URL or a TQ_SQS_QUEUES mapping is set; "
                "set them (and TQ_TABLE, TQ_REGION, TQ_ENDPOINT_URL...) to name the resources"
            )
        return TaskQueue.from_env()
    except TqError as exc:
        usage_error(f"--aws: {exc}")


def resolve_app(spec: str | None, aws: bool) -> TaskQueue:
    """The app a command works on.

    ``--app`` alone: the module's TaskQueue as it builds itself. ``--aws`` alone: a TaskQueue on
    the ``TQ_*`` resources (enough to read status, add tasks and operate). Both: the module's
    executors on the ``TQ_*`` resources.
    """
    if aws:
        on_aws = aws_app()
        if spec is None:
            return on_aws
        app = load_app(spec)
        app.use_ports(on_aws.ports)
        app.resources = on_aws.resources
        return app
    if spec is None:
        usage_error(
            "give --app module:attribute (or set TQ_APP), or --aws to use the resources "
            "the TQ_* variables name"
        )
    return load_app(spec)


__all__ = [
    "USAGE",
    "AppOption",
    "AwsOption",
    "JsonOption",
    "aws_app",
    "load_app",
    "resolve_app",
    "usage_error",
]
