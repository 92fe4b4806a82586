"""Test helpers (test-only): a manual clock, the at-least-once fault harness, the firing of
EventBridge schedules on moto, and Lambda events (``published_records``, ``kinesis_event``,
``sqs_event``).

Every name is imported on first use (a module ``__getattr__``), so that ``import tq_aws.testing``
loads no AWS SDK: only ``fire_due_schedules`` needs botocore, and only when it is asked for.
The moto server for tests and benchmarks is ``tq_aws.testing.moto.MotoServer``.
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tq_aws.backends.aws.schedule_firing import fire_due_schedules
    from tq_aws.testing.clock import DEFAULT_START, ManualClock
    from tq_aws.testing.events import (
        PublishedRecord,
        kinesis_event,
        kinesis_record,
        published_records,
        sqs_event,
        sqs_record,
    )
    from tq_aws.testing.faults import (
        FaultInjector,
        InjectedCrash,
        run_until_idle_through_crashes,
    )

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_START",
    "FaultInjector",
    "InjectedCrash",
    "ManualClock",
    "PublishedRecord",
    "fire_due_schedules",
    "kinesis_event",
    "kinesis_record",
    "published_records",
    "run_until_idle_through_crashes",
    "sqs_event",
    "sqs_record",
]

_HOMES = {
    "DEFAULT_START": "tq_aws.testing.clock",
    "FaultInjector": "tq_aws.testing.faults",
    "InjectedCrash": "tq_aws.testing.faults",
    "ManualClock": "tq_aws.testing.clock",
    "PublishedRecord": "tq_aws.testing.events",
    "kinesis_event": "tq_aws.testing.events",
    "kinesis_record": "tq_aws.testing.events",
    "published_records": "tq_aws.testing.events",
    "sqs_event": "tq_aws.testing.events",
    "sqs_record": "tq_aws.testing.events",
    "fire_due_schedules": "tq_aws.backends.aws.schedule_firing",
    "run_until_idle_through_crashes": "tq_aws.testing.faults",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # found once; later look-ups do not come here
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
