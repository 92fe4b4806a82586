"""Which methods of a provider receive which events, and with what arguments.

For each event, a provider is called through the methods it has, in this order: ``on_<event>``,
``on_flow_closed`` for the three ways a flow closes, then ``on_event``. A method it does not
have, and a ``LifecycleListener`` hook it did not override, are never called.

A method receives the event, unless it has the form the first hooks had before events were
typed (``LifecycleListener`` lists them): it then gets those arguments. A method has that older
form when it takes ``*args`` or more than one positional argument, or, for the four hooks that
took only the task (``on_task_scheduled``, ``on_task_started``, ``on_task_cancelled``,
``on_task_expired``), when its one parameter is named ``task`` or annotated ``Task``.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tq_aws.core.lifecycle.base import LifecycleEvent
from tq_aws.core.lifecycle.listener import LifecycleListener
from tq_aws.core.lifecycle.names import EVENT_NAMES, FLOW_CLOSED_NAMES

if TYPE_CHECKING:
    from tq_aws.core.lifecycle.events import (
        BatchCompleted,
        BatchStarted,
        FlowClosed,
        FlowStarted,
        TaskCompleted,
        TaskContext,
        TaskExhausted,
        TaskFailed,
        TaskIgnored,
    )

logger = logging.getLogger(__name__)

Call = Callable[[LifecycleEvent], Any]


def _task(e: TaskContext) -> tuple[Any, ...]:
    return (e.task,)


def _completed(e: TaskCompleted) -> tuple[Any, ...]:
    return (e.task, e.result)


def _failed(e: TaskFailed) -> tuple[Any, ...]:
    return (e.task, e.error, e.will_retry, e.next_attempt_at)


def _exhausted(e: TaskExhausted) -> tuple[Any, ...]:
    return (e.task, e.error, e.total_attempts)


def _ignored(e: TaskIgnored) -> tuple[Any, ...]:
    return (e.task, e.reason)


def _flow_started(e: FlowStarted) -> tuple[Any, ...]:
    return (e.flow_id, e.total_steps)


def _flow_closed(e: FlowClosed) -> tuple[Any, ...]:
    return (e.flow_id, e.state, e.steps_succeeded, e.steps_failed)


def _batch_started(e: BatchStarted) -> tuple[Any, ...]:
    return (e.queue_id, e.batch_size)


def _batch_completed(e: BatchCompleted) -> tuple[Any, ...]:
    return (e.queue_id, e.batch_size, e.succeeded, e.failed, e.duration_ms / 1000)


OLDER_FORMS: dict[str, tuple[int, Callable[[Any], tuple[Any, ...]]]] = {
    "on_task_scheduled": (1, _task),
    "on_task_started": (1, _task),
    "on_task_completed": (2, _completed),
    "on_task_failed": (4, _failed),
    "on_task_exhausted": (3, _exhausted),
    "on_task_ignored": (2, _ignored),
    "on_task_cancelled": (1, _task),
    "on_task_expired": (1, _task),
    "on_flow_started": (2, _flow_started),
    "on_flow_closed": (4, _flow_closed),
    "on_batch_started": (2, _batch_started),
    "on_batch_completed": (5, _batch_completed),
}
"""Hooks that had positional arguments before events were typed: their count and how to get
them from the event."""


def methods_for(event_name: str) -> tuple[str, ...]:
    """The provider methods that receive the event ``event_name``, in the order they are
    called."""
    own = f"on_{event_name}"
    if event_name in FLOW_CLOSED_NAMES:
        return (own, "on_flow_closed", "on_event")
    return (own, "on_event")


METHODS: dict[str, tuple[str, ...]] = {name: methods_for(name) for name in EVENT_NAMES}
"""Event name -> the provider methods that receive it (from the names alone: routing a
provider loads no event class)."""


@dataclass(frozen=True, slots=True)
class Route:
    """One provider method that receives one event."""

    provider: object
    label: str
    """The provider's name in logs: its ``name`` attribute, else its class name."""
    method: str
    call: Call
    sync: bool
    """Awaited before the engine goes on (``mode="sync"``)."""
    builtin: bool = False


def provider_label(provider: object) -> str:
    name = getattr(provider, "name", None)
    return name if isinstance(name, str) and name else type(provider).__name__


def routes_of(provider: object, *, sync: bool, builtin: bool = False) -> dict[str, list[Route]]:
    """Every event ``provider`` receives, with the routes (methods) that receive it."""
    label = provider_label(provider)
    calls: dict[str, Call | None] = {}
    out: dict[str, list[Route]] = {}
    for event_name, methods in METHODS.items():
        for method in methods:
            if method not in calls:
                calls[method] = _call_for(provider, method)
            call = calls[method]
            if call is not None:
                out.setdefault(event_name, []).append(
                    Route(provider, label, method, call, sync, builtin)
                )
    return out


def _call_for(provider: object, method: str) -> Call | None:
    """How to call ``provider.<method>`` with an event, or ``None`` if it has no such hook."""
    fn = getattr(provider, method, None)
    if fn is None or not callable(fn):
        return None
    base = getattr(LifecycleListener, method, None)
    if base is not None and getattr(type(provider), method, None) is base:
        return None  # the no-op of the base class, not overridden
    older = OLDER_FORMS.get(method)
    if older is None or not _takes_older_form(fn, older[0]):
        return fn  # type: ignore[no-any-return]
    arguments = older[1]

    def call(event: LifecycleEvent) -> Any:
        return fn(*arguments(event))

    return call


def _takes_older_form(fn: Callable[..., Any], count: int) -> bool:
    try:
        parameters = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):  # no signature to read (a builtin): give the event
        return False
    if any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in parameters):
        return True
    positional = [
        p
        for p in parameters
        if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    ]
    if len(positional) > 1:
        return True
    if count != 1 or len(positional) != 1:
        return False
    only = positional[0]
    annotation = only.annotation
    if annotation is inspect.Parameter.empty:
        return only.name == "task"
    named = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", "")
    return named == "Task" or (named != "" and named.endswith(".Task"))
