"""The Lambda handler: ``LambdaHandler``, the function Lambda calls with a Kinesis or SQS event
(made by ``app.lambda_handler(**options)``); one invocation, start to response. What it does
with the records is the package docstring's story (``tq_aws.runtimes.aws_lambda``)."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Coroutine, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from tq_aws.errors import ConfigurationError
from tq_aws.runtimes.aws_lambda.deadline import (
    DEFAULT_MARGIN_FRACTION,
    DEFAULT_SAFETY_MARGIN,
    Deadline,
    await_handoffs,
)
from tq_aws.runtimes.aws_lambda.loop import IN_LOOP, in_running_loop, run
from tq_aws.runtimes.aws_lambda.observability import (
    bind_invocation_keys,
    counters,
    powertools_logger,
    powertools_metrics,
    powertools_tracer,
    publish_metrics,
    subsegment,
)
from tq_aws.runtimes.aws_lambda.processor import TaskBatchProcessor
from tq_aws.runtimes.aws_lambda.records import EventSource, event_records, event_source

if TYPE_CHECKING:
    from tq_aws.engine.engine import Engine

logger = logging.getLogger(__name__)

T = TypeVar("T")


class LambdaContextLike(Protocol):
    """The part of Lambda's context object the handler relies on."""

    function_name: str
    aws_request_id: str

    def get_remaining_time_in_millis(self) -> int: ...


class LambdaHandler:
    """``handler(event, context) -> {"batchItemFailures": [...]}`` for an app (made by
    ``TaskQueue.lambda_handler(**options)``; see the package docstring for what it does).

    Args:
        app: the app (its executors, stores and engine).
        sub_batch_size: records per engine batch (default: ``app.batch_size``). Smaller
            sub-batches report fewer records when a write fails and stop closer to the
            deadline; larger ones cost less per record.
        safety_margin: seconds of the invocation kept free: no sub-batch starts unless its
            estimate plus this much time is left, and handed-off tasks are awaited until only
            this much is left. Default 2 s, and never more than ``margin_fraction`` of the time
            the invocation has at its start.
        margin_fraction: the largest share (0 < f < 1, default 0.25) of the invocation's
            time kept free: a function with little time (a 3 s timeout keeps 0.75 s) still
            starts its first sub-batch, so every invocation makes progress.
        logger: a Powertools ``Logger``, or ``True`` to make one (service: ``service``). Its
            handlers get ``TaskLogContextFilter``, and the ``tq_aws`` logger is configured like
            it (its handlers and level, no propagation to the root logger), so the engine's
            lines are JSON with the invocation's keys too. Other loggers are left alone.
        metrics: a Powertools ``Metrics``, or ``True`` to make one (namespace from
            ``POWERTOOLS_METRICS_NAMESPACE``, else ``tq``); flushed at the end of each
            invocation.
        tracer: a Powertools ``Tracer``, or ``True`` to make one (needs ``aws-xray-sdk``;
            ``POWERTOOLS_TRACE_DISABLED=1`` turns it off).
        service: service name for what ``True`` makes (default ``POWERTOOLS_SERVICE_NAME``,
            else ``tq``).
        raise_on_entire_batch_failure: raise ``BatchProcessingError`` when every record is
            reported (an invocation error) instead of naming them all in the response.

    Example:
        >>> app = TaskQueue.from_env()
        >>> @app.executor("emails", "send")
        ... async def send(task, actions): ...
        >>> handler = app.lambda_handler(logger=True, metrics=True)
    """

    def __init__(
        self,
        app: Engine,
        *,
        sub_batch_size: int | None = None,
        safety_margin: float = DEFAULT_SAFETY_MARGIN,
        margin_fraction: float = DEFAULT_MARGIN_FRACTION,
        logger: Any = None,
        metrics: Any = None,
        tracer: Any = None,
        service: str | None = None,
        raise_on_entire_batch_failure: bool = False,
    ):
        size = app.batch_size if sub_batch_size is None else sub_batch_size
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ConfigurationError(
                f"sub_batch_size={sub_batch_size!r}; give a whole number >= 1 (or None for "
                "the app's batch_size)"
            )
        if (
            isinstance(safety_margin, bool)
            or not isinstance(safety_margin, int | float)
            or not safety_margin >= 0
        ):
            raise ConfigurationError(f"safety_margin={safety_margin!r}; give seconds >= 0")
        if (
            isinstance(margin_fraction, bool)
            or not isinstance(margin_fraction, int | float)
            or not 0 < margin_fraction < 1
        ):
            raise ConfigurationError(
                f"margin_fraction={margin_fraction!r}; give a share of the invocation's time "
                "between 0 and 1 (e.g. 0.25)"
            )
        self.margin_fraction = float(margin_fraction)
        self.app = app
        self.sub_batch_size = size
        self.safety_margin = float(safety_margin)
        self.raise_on_entire_batch_failure = bool(raise_on_entire_batch_failure)
        self.service = service or os.getenv("POWERTOOLS_SERVICE_NAME") or "tq"
        self.logger = powertools_logger(logger, self.service)
        self.metrics = powertools_metrics(metrics, self.service)
        self.tracer = powertools_tracer(tracer, self.service)
        self._processors: dict[EventSource, TaskBatchProcessor] = {}
        self._cold = True
        self.last: dict[str, Any] = {}
        """What the last invocation did: records, sub-batches, records run, reported,
        handed-off tasks still running, duration in ms."""

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the process loop the handler runs on (set-up at cold start, tests):
        e.g. ``handler.run(app.ensure_resources())``."""
        return run(coro)

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        """Run a Kinesis or SQS event; return ``{"batchItemFailures": [{"itemIdentifier":
        ...}]}`` naming the records Lambda must deliver again.

        Raises:
            LambdaEventError: the event is not a Kinesis or SQS event as Lambda sends it.
            RuntimeError: called inside a running event loop.
        """
        started = time.perf_counter()
        if in_running_loop():
            raise RuntimeError(IN_LOOP)
        records = event_records(event)
        source = event_source(records)
        if source is None:
            return {"batchItemFailures": []}
        if self.logger is not None:
            bind_invocation_keys(self.logger, context, cold_start=self._cold, source=source.value)
            self._cold = False
        before = counters(self.app)
        processor = self._processor(source)
        processor.deadline = deadline = Deadline(context, self.safety_margin, self.margin_fraction)
        still_running = 0
        try:
            with subsegment(self.tracer, "## tq_aws lambda_handler") as annotate:
                annotate("event_source", source.value)
                annotate("records", len(records))
                try:
                    with processor(records=records, handler=processor.record_handler):
                        processor.process()
                finally:
                    still_running = await_handoffs(self.app.async_tasks, deadline)
                    annotate("reported", len(processor.fail_messages))
        finally:
            duration_ms = (time.perf_counter() - started) * 1000.0
            reported = len(processor.fail_messages)
            self.last = {
                "records": len(records),
                "sub_batches": processor.sub_batches,
                "records_run": processor.records_run,
                "reported": reported,
                "handed_off_running": still_running,
                "duration_ms": duration_ms,
            }
            if self.metrics is not None:
                publish_metrics(self.metrics, before, counters(self.app), reported, duration_ms)
            logger.info(
                "%s event of %d record(s): %d run in %d sub-batch(es), %d reported, %.1f ms",
                source.name,
                len(records),
                processor.records_run,
                processor.sub_batches,
                reported,
                duration_ms,
            )
        return dict(processor.response())

    def _processor(self, source: EventSource) -> TaskBatchProcessor:
        processor = self._processors.get(source)
        if processor is None:
            processor = TaskBatchProcessor(
                self.app,
                source,
                sub_batch_size=self.sub_batch_size,
                tracer=self.tracer,
                raise_on_entire_batch_failure=self.raise_on_entire_batch_failure,
            )
            self._processors[source] = processor
        return processor


def reported_identifiers(response: Mapping[str, Sequence[Mapping[str, str]]]) -> list[str]:
    """The item identifiers a handler's response names (a convenience for tests and tools)."""
    return [item["itemIdentifier"] for item in response.get("batchItemFailures", [])]


__all__ = ["LambdaContextLike", "LambdaHandler", "reported_identifiers"]
