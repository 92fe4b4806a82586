"""Typed errors raised by tq-aws. Each names the field at fault and how to fix it."""

from __future__ import annotations


class TqError(Exception):
    """Base class of every error tq-aws raises on purpose."""


class TaskValidationError(TqError, ValueError):
    """A task given to ``add_tasks`` (or ``actions.add_tasks``) is not acceptable.

    Raised before anything of that call is added: no task of the call is published or stored.

    Attributes:
        index: position of the offending task in the call's list.
        field: dotted path of the field at fault (``payload.to``, ``retry_after``...).
    """

    def __init__(self, message: str, *, index: int | None = None, field: str | None = None):
        super().__init__(message)
        self.index = index
        self.field = field


class ConfigurationError(TqError, ValueError):
    """An executor registration or a TaskQueue option is invalid."""


class CodecError(TqError, ValueError):
    """A record could not be decoded into a task (malformed bytes, unknown codec version).

    Attributes:
        reason: a short machine-readable reason: ``malformed``, ``unknown_version`` or
            ``invalid_task``.
    """

    def __init__(self, message: str, *, reason: str):
        super().__init__(message)
        self.reason = reason


class ResultNotSerializableError(TqError, TypeError):
    """``actions.success(task, result)`` was given a result that cannot be stored as JSON."""


class DecisionError(TqError, ValueError):
    """An action named a task that is not part of the running batch."""


class PublishError(TqError):
    """Tasks were accepted (ids assigned, maybe stored) but could not be handed to the transport.

    Attributes:
        task_ids: ids of the tasks that were not published.
    """

    def __init__(self, message: str, *, task_ids: list[str]):
        super().__init__(message)
        self.task_ids = task_ids
