"""Executor registrations: what runs a ``(queue_id, type)`` and with which options."""

from __future__ import annotations

import builtins
import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import BaseModel

from tq_aws.core.limits import MAX_NAME_CHARS, MAX_RETRIES, seconds_problem, text_problem
from tq_aws.core.retry import DEFAULT_RETRY_AFTER
from tq_aws.core.task import Task
from tq_aws.errors import ConfigurationError

logger = logging.getLogger(__name__)

PartitionKeyFn = Callable[[Task], str]


class ExecutorKind(StrEnum):
    """How an executor is called."""

    SINGLE = "single"
    """One task per call, the group's tasks one after another in delivery order."""
    PARALLEL = "parallel"
    """One task per call, ``chunk_size`` calls at once, chunks one after another."""
    BATCH = "batch"
    """The whole same-type group of a delivered batch in one call (``list[Task]``)."""


@dataclass(frozen=True, slots=True)
class ExecutorSpec:
    """A registered executor and its options (see ``TaskQueue.executor``)."""

    queue_id: str
    type: str
    fn: Callable[..., Any]
    kind: ExecutorKind
    is_async: bool
    chunk_size: int = 1
    retries: int = 0
    retry_after: float = DEFAULT_RETRY_AFTER
    store_on_failure: bool = False
    partition_key: PartitionKeyFn | None = None
    payload_model: builtins.type[BaseModel] | None = None
    handoff_timeout: float | None = None
    max_duration: float | None = None

    def key_for(self, task: Task) -> str | None:
        """The partition key this executor assigns to ``task`` (``None``: keep the task's)."""
        if self.partition_key is None:
            return None
        key = self.partition_key(task)
        if not isinstance(key, str) or not key:
            raise ConfigurationError(
                f"partition_key of executor {self.queue_id}/{self.type} returned {key!r}; "
                "it must return a non-empty string"
            )
        return key


def make_spec(
    queue_id: str,
    type: str,
    fn: Callable[..., Any],
    *,
    kind: ExecutorKind,
    chunk_size: int | None,
    retries: int,
    retry_after: float,
    store_on_failure: bool,
    partition_key: PartitionKeyFn | None,
    payload_model: builtins.type[BaseModel] | None,
    handoff_timeout: float | None = None,
    max_duration: float | None = None,
) -> ExecutorSpec:
    """Validate registration options and build the spec; errors name the option and the fix."""
    where = f"executor {queue_id!r}/{type!r}"
    for name, value in (("queue_id", queue_id), ("type", type)):
        if not isinstance(value, str):
            raise ConfigurationError(
                f"{where}: {name}={value!r} is a {builtins.type(value).__name__}; give a "
                "non-empty string"
            )
        problem = text_problem(value, max_chars=MAX_NAME_CHARS)
        if problem is not None:
            raise ConfigurationError(
                f"{where}: {name} {problem}; give 1 to {MAX_NAME_CHARS} printable characters"
            )
    if not callable(fn):
        raise ConfigurationError(f"{where}: the executor must be callable")
    _check_signature(fn, kind, where)
    if isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= MAX_RETRIES:
        raise ConfigurationError(
            f"{where}: retries={retries!r}; give a whole number 0..{MAX_RETRIES}"
        )
    problem = seconds_problem(retry_after)
    if problem is not None:
        raise ConfigurationError(
            f"{where}: retry_after={retry_after!r} {problem}; give a finite number of "
            "seconds >= 0 (the backoff base)"
        )
    if kind is ExecutorKind.PARALLEL:
        size = 10 if chunk_size is None else chunk_size
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ConfigurationError(
                f"{where}: chunk_size={chunk_size!r}; give a whole number >= 1"
            )
    else:
        if chunk_size is not None:
            raise ConfigurationError(f"{where}: chunk_size applies only with parallel=True")
        size = 1
    if partition_key is not None and not callable(partition_key):
        raise ConfigurationError(f"{where}: partition_key must be a callable (task) -> str")
    if payload_model is not None and not (
        isinstance(payload_model, builtins.type) and issubclass(payload_model, BaseModel)
    ):
        raise ConfigurationError(f"{where}: payload_model must be a pydantic BaseModel subclass")
    for name, seconds in (("handoff_timeout", handoff_timeout), ("max_duration", max_duration)):
        if seconds is not None and seconds_problem(seconds, positive=True) is not None:
            raise ConfigurationError(
                f"{where}: {name}={seconds!r}; give a finite number of seconds > 0, or None"
            )
    if handoff_timeout is not None and kind is not ExecutorKind.SINGLE:
        raise ConfigurationError(
            f"{where}: handoff_timeout applies to single-task executors without parallel=True"
        )
    if max_duration is not None and handoff_timeout is None:
        raise ConfigurationError(f"{where}: max_duration applies only with handoff_timeout")
    return ExecutorSpec(
        queue_id=queue_id,
        type=type,
        fn=fn,
        kind=kind,
        is_async=_is_async(fn),
        chunk_size=size,
        retries=retries,
        retry_after=float(retry_after),
        store_on_failure=store_on_failure,
        partition_key=partition_key,
        payload_model=payload_model,
        handoff_timeout=handoff_timeout,
        max_duration=max_duration,
    )


def _check_signature(fn: Callable[..., Any], kind: ExecutorKind, where: str) -> None:
    """Refuse an executor that cannot be called as ``fn(task, actions)`` (batch:
    ``fn(tasks, actions)``), which would otherwise fail every task it is given."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):  # some builtins have no signature to read: let them be
        return
    try:
        signature.bind(object(), object())
    except TypeError as exc:
        first = "tasks" if kind is ExecutorKind.BATCH else "task"
        name = getattr(fn, "__qualname__", None) or builtins.type(fn).__name__
        raise ConfigurationError(
            f"{where}: {name}{signature} cannot be called as ({first}, actions) ({exc}); "
            f"define it as def {name.rsplit('.', 1)[-1]}({first}, actions)"
        ) from exc


def _is_async(fn: Callable[..., Any]) -> bool:
    """Whether calling ``fn`` gives a coroutine: an ``async def`` function, or an object whose
    ``__call__`` is one."""
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        builtins.type(fn).__call__
    )


class ExecutorRegistry:
    """Executors by ``(queue_id, type)``; exactly one per pair (a new one replaces the old)."""

    def __init__(self) -> None:
        self._specs: dict[tuple[str, str], ExecutorSpec] = {}

    def add(self, spec: ExecutorSpec) -> None:
        key = (spec.queue_id, spec.type)
        if key in self._specs:
            logger.warning("executor %s/%s registered again; the new one replaces it", *key)
        self._specs[key] = spec

    def get(self, queue_id: str, type: str) -> ExecutorSpec | None:
        return self._specs.get((queue_id, type))

    def queues(self) -> list[str]:
        return sorted({q for q, _ in self._specs})

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(list(self._specs.values()))

    def __len__(self) -> int:
        return len(self._specs)
