"""Powertools Logger, Metrics and Tracer for the Lambda runtime, each optional.

``logger=`` (a Powertools ``Logger``, or ``True`` for one): the engine's ``tq_aws`` loggers log
through its handlers too, and every line written while a task runs carries the task's log
context as ``tq_log_context`` (``TaskLogContextFilter``). ``metrics=`` (Powertools ``Metrics``,
EMF): ``Processed``, ``Failed``, ``Retried``, ``Poison``, ``Reported`` and ``Duration`` per
invocation, from ``app.stats`` deltas. ``tracer=`` (Powertools ``Tracer``): a subsegment per
invocation and per sub-batch. Powertools is imported only for what is asked for."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from tq_aws.core import log_context
from tq_aws.errors import ConfigurationError

if TYPE_CHECKING:
    from tq_aws.engine.engine import Engine

logger = logging.getLogger(__name__)

METRIC_NAMES = ("Processed", "Failed", "Retried", "Poison", "Reported", "Duration")


class TaskLogContextFilter(logging.Filter):
    """For a JSON handler (Powertools'): puts the bound task log context on every record as
    ``tq_log_context`` (a mapping, written as an object), and removes what a JSON line does
    not need: the rendered ``tq_context`` string, and the empty ``tq_log_context`` of lines
    written outside tasks. It changes the record, so a text handler formatting
    ``%(tq_context)s`` should not share a logger with it."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = getattr(record, "tq_log_context", None) or log_context.current()
        if context:
            record.tq_log_context = dict(context)
        else:
            record.__dict__.pop("tq_log_context", None)
        record.__dict__.pop("tq_context", None)
        return True


# -- the options -----------------------------------------------------------------------------


def powertools_logger(option: Any, service: str) -> Any:
    """The ``logger=`` option as a Powertools ``Logger`` (or ``None``): its handlers get
    ``TaskLogContextFilter`` and the ``tq_aws`` logger is configured like it."""
    if option is None or option is False:
        return None
    if option is True:
        from aws_lambda_powertools import Logger

        option = Logger(service=service)
    if not all(hasattr(option, name) for name in ("append_keys", "handlers")):
        raise ConfigurationError(
            f"logger={option!r}; give an aws_lambda_powertools.Logger, True to make one, or None"
        )
    from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers

    for handler in option.handlers:
        if not any(isinstance(f, TaskLogContextFilter) for f in handler.filters):
            handler.addFilter(TaskLogContextFilter())
    logging.getLogger("tq_aws")  # registered, so its configuration is copied
    copy_config_to_registered_loggers(source_logger=option, include={"tq_aws"})
    return option


def powertools_metrics(option: Any, service: str) -> Any:
    """The ``metrics=`` option as a Powertools ``Metrics`` (or ``None``)."""
    if option is None or option is False:
        return None
    if option is True:
        from aws_lambda_powertools import Metrics

        namespace = os.getenv("POWERTOOLS_METRICS_NAMESPACE") or "tq"
        option = Metrics(namespace=namespace, service=service)
    if not all(hasattr(option, name) for name in ("add_metric", "flush_metrics")):
        raise ConfigurationError(
            f"metrics={option!r}; give an aws_lambda_powertools.Metrics, True to make one, or None"
        )
    return option


def powertools_tracer(option: Any, service: str) -> Any:
    """The ``tracer=`` option as a Powertools ``Tracer`` (or ``None``)."""
    if option is None or option is False:
        return None
    if option is True:
        from aws_lambda_powertools import Tracer

        option = Tracer(service=service)
    if not hasattr(getattr(option, "provider", None), "in_subsegment"):
        raise ConfigurationError(
            f"tracer={option!r}; give an aws_lambda_powertools.Tracer, True to make one, or None"
        )
    return option


# -- per invocation --------------------------------------------------------------------------


def bind_invocation_keys(log: Any, context: Any, *, cold_start: bool, source: str) -> None:
    """Append the invocation's keys to ``log`` (a Powertools ``Logger``): cold start, event
    source, and the function name and request id of Lambda's ``context`` (where it has them)."""
    keys: dict[str, Any] = {"cold_start": cold_start, "event_source": source}
    for attribute, key in (
        ("function_name", "function_name"),
        ("aws_request_id", "function_request_id"),
    ):
        value = getattr(context, attribute, None)
        if value is not None:
            keys[key] = value
    log.append_keys(**keys)


def counters(app: Engine) -> dict[str, int]:
    """The app's counters the metrics are deltas of."""
    stats = app.stats
    return {
        "executed": stats.executed,
        "failed": stats.failed,
        "retried": stats.retried,
        "poison": stats.poison,
    }


def publish_metrics(
    metrics: Any, before: Mapping[str, int], after: Mapping[str, int], reported: int, ms: float
) -> None:
    """Add one invocation's metrics (``METRIC_NAMES``) to a Powertools ``metrics`` and flush:
    the counters' deltas from ``before`` to ``after``, the records reported, the duration."""
    from aws_lambda_powertools.metrics import MetricUnit

    delta = {name: after[name] - before[name] for name in after}
    values = (
        ("Processed", delta["executed"] + delta["failed"] + delta["retried"]),
        ("Failed", delta["failed"]),
        ("Retried", delta["retried"]),
        ("Poison", delta["poison"]),
        ("Reported", reported),
    )
    for name, value in values:
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
    metrics.add_metric(name="Duration", unit=MetricUnit.Milliseconds, value=ms)
    metrics.flush_metrics()


@contextmanager
def subsegment(tracer: Any, name: str) -> Iterator[Callable[[str, Any], None]]:
    """A tracer subsegment, yielding ``annotate(key, value)``; a no-op without a tracer."""
    if tracer is None:
        yield _no_annotation
        return
    with tracer.provider.in_subsegment(name) as segment:
        yield segment.put_annotation


def _no_annotation(key: str, value: Any) -> None:
    return None


__all__ = [
    "METRIC_NAMES",
    "TaskLogContextFilter",
    "bind_invocation_keys",
    "counters",
    "powertools_logger",
    "powertools_metrics",
    "powertools_tracer",
    "publish_metrics",
    "subsegment",
]
