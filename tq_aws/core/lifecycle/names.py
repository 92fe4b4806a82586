"""The events' names, without the events: what routing a provider needs, so that adding one
(the failure log every app has) does not load the event classes. ``events`` checks at import
that these are its classes' names, in order.

The event classes themselves (``events``, about 35 frozen dataclasses, some 25 ms of a cold
start) load with the first event built, through ``lazy_events``: an app whose providers never
receive an event on its path (a Lambda's happy path: the failure log hears of failures only)
never loads them.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

EVENT_NAMES: tuple[str, ...] = (
    "task_scheduled",
    "task_started",
    "task_completed",
    "task_failed",
    "task_exhausted",
    "task_ignored",
    "task_expired",
    "task_cancelled",
    "task_batch_started",
    "task_batch_completed",
    "batch_started",
    "batch_completed",
    "record_poisoned",
    "worker_started",
    "worker_heartbeat",
    "worker_stopped",
    "consumer_started",
    "consumer_stopped",
    "flow_started",
    "flow_completed",
    "flow_aborted",
    "flow_timed_out",
)
"""Every event's name, in the order of ``events.EVENT_TYPES``."""

FLOW_CLOSED_NAMES: frozenset[str] = frozenset({"flow_completed", "flow_aborted", "flow_timed_out"})
"""The events that are a ``FlowClosed`` (``on_flow_closed`` receives them too)."""

EVENTS_MODULE = "tq_aws.core.lifecycle.events"


class LazyEvents:
    """Stands for the ``events`` module until an attribute is asked for, then imports it and
    takes its names (so later lookups are plain attribute reads)."""

    def __getattr__(self, name: str) -> Any:
        module: ModuleType = importlib.import_module(EVENTS_MODULE)
        self.__dict__.update({n: getattr(module, n) for n in module.__all__})
        return getattr(module, name)


lazy_events = LazyEvents()
"""The ``events`` module, imported on first use."""
