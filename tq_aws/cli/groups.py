"""A command group with a default command: ``tq-aws status user u-1`` is ``status entity user
u-1`` beside ``status serve``, and ``tq-aws poison --app m:app`` is ``poison list`` beside
``poison redrive``."""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from typing import Any, ClassVar

from typer.core import TyperGroup

HELP = ("--help", "-h")


def help_of(command: Callable[..., Any]) -> str:
    """A command's docstring as help: paragraphs kept, the lines inside each joined (Rich help
    keeps every line break of a docstring as it is)."""
    text = inspect.cleandoc(command.__doc__ or "")
    return re.sub(r"(?<!\n)\n(?!\n)", " ", text)


class DefaultCommandGroup(TyperGroup):
    """Arguments that do not start with one of the group's commands go to ``default``."""

    default: ClassVar[str]

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if not args or (args[0] not in self.commands and args[0] not in HELP):
            args = [self.default, *args]
        return super().parse_args(ctx, args)


class StatusGroup(DefaultCommandGroup):
    default = "entity"


class PoisonGroup(DefaultCommandGroup):
    default = "list"


__all__ = ["DefaultCommandGroup", "PoisonGroup", "StatusGroup", "help_of"]
