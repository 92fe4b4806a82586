"""The AWS Lambda runtime: ``handler = app.lambda_handler()``, then ``handler(event, context)``
for the events of a Kinesis or SQS event source mapping (with ``ReportBatchItemFailures``
turned on), returning ``{"batchItemFailures": [...]}``.

How an event is run
-------------------
The records are decoded (``lambda_records``) and run through the engine
(``BatchProcessor.process``) in **sub-batches** of consecutive records, in record order. The
engine works a batch at a time (it groups tasks by executor, runs batch executors on the whole
group, writes outcomes in a few store calls), so the unit that succeeds or fails is the
sub-batch, not the record:

- an executor's own failure is a decision like any other: the task goes to the retry path and
  its record is *not* a batch item failure;
- ``process`` raises only when outcomes could not be recorded (a store or transport write
  failed). Then every record of that sub-batch is reported, so Lambda delivers them again; each
  outcome write is conditional and safe to repeat, so running them again is harmless.

This is still Powertools batch processing, not a loop beside it. ``TaskBatchProcessor`` is a
Powertools ``BatchProcessor`` subclassed the way ``SqsFifoPartialProcessor(skip_group_on_error=
True)`` is: Powertools walks the records one by one through ``_process_record``, calls the
record handler and collects successes and failures; its ``_clean`` builds the response (item
identifiers: sequence numbers or message ids) and handles the case where every record failed
(``raise_on_entire_batch_failure``, off by default here: a response naming every record
redelivers them all without an invocation error). What the subclass adds: the first record of
a sub-batch runs the whole sub-batch through the engine, and the record handler then reports
each record's share of that outcome; like the FIFO processor it keys a circuit breaker, by the
Kinesis partition key or the SQS FIFO ``MessageGroupId``.

Ordering per key
----------------
Once a record is reported, the later records of the **same key** in the event are not run and
are reported too; other keys keep going. A sub-batch never holds records of one key in an
order the engine's grouping by executor could change (the sub-batch ends there instead).

With Kinesis, Lambda restarts the shard from the **lowest reported sequence number**: every
record after it comes again, including records of other keys that ran and were recorded in this
invocation. For stored tasks the claim drops those duplicates (the stored copy is terminal, so
they do not run twice, and their projection and flow report are written again). Plain tasks
(never stored) run again: delivery is at-least-once, as after any redelivery. With SQS only the
reported messages come back (FIFO groups keep their order, standard queues promise none).

Poison records
--------------
A record that cannot be decoded (not base64, not codec JSON, an unknown codec version, an
invalid task) is kept in the app's poison store (DynamoDB on AWS) with its raw bytes, reason
and position, before anything of its sub-batch runs; it is counted in ``app.stats.poison`` and
reported as a success: it never blocks the records behind it, its key included, and it does not
come back forever. ``tq-aws poison`` and ``app.poison_records()`` list what was kept. Only when
the poison store write itself fails is the record reported, with the rest of its sub-batch.

Time
----
The handler watches ``context.get_remaining_time_in_millis()`` and starts no sub-batch it cannot
finish: it needs the sub-batch's estimate (the slowest time per record of the sub-batches run
so far, times its size, measured on the remaining time itself) plus ``safety_margin`` seconds
left. Records not started are reported (handed back) before the timeout, so Lambda delivers
them again instead of failing the whole batch on a timeout. A sub-batch is never interrupted:
the margin must cover the variance of one sub-batch.

Executors with ``handoff_timeout`` may leave long tasks running when the last sub-batch is done
(``app.async_tasks``). Their records are already recorded (stored ``processing``, with a
delivery watchdog scheduled after their maximum duration), so the response does not wait for
them; the handler then awaits them until only the margin is left. Whatever still runs is left
to its durable record: when Lambda freezes the process it pauses, it resumes in a later
invocation of the same warm process, and if the process is gone the watchdog delivers the task
again and the claim lets it run (at-least-once).

Process and observability
-------------------------
The handler is a plain function that runs its own event loop: one loop per process
(``process_loop``), reused across invocations while Lambda keeps the process warm, so AWS
clients (cached per loop by ``AwsClients``) and connections are reused. Call it outside any
running loop, as Lambda does, one invocation at a time.

``logger=`` (a Powertools ``Logger``, or ``True`` for one), ``metrics=`` (Powertools
``Metrics``, EMF: ``Processed``, ``Failed``, ``Retried``, ``Poison``, ``Reported`` and
``Duration`` per invocation, from ``app.stats`` deltas) and ``tracer=`` (Powertools ``Tracer``:
a subsegment per invocation and per sub-batch) are each optional. With a logger, the engine's
``tq_aws`` loggers log through its handler too, and every line written while a task runs
carries the task's log context as ``tq_log_context`` (task id, type, queue, worker and the
task's own keys).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType
from aws_lambda_powertools.utilities.batch.exceptions import ExceptionInfo

from tq_aws.core import log_context
from tq_aws.errors import (
    ConfigurationError,
    HandedBackError,
    KeyBlockedError,
    RecordNotRecordedError,
)
from tq_aws.ports import Delivery
from tq_aws.runtimes.lambda_records import (
    EventSource,
    event_records,
    event_source,
    ordering_key,
    to_delivery,
)

if TYPE_CHECKING:
    from tq_aws.engine.engine import Engine
    from tq_aws.engine.handoff import AsyncTaskManager

logger = logging.getLogger("tq_aws.lambda")

T = TypeVar("T")

DEFAULT_SAFETY_MARGIN = 2.0
"""Seconds kept free at the end of an invocation (see ``LambdaHandler``)."""

METRIC_NAMES = ("Processed", "Failed", "Retried", "Poison", "Reported", "Duration")


class LambdaContextLike(Protocol):
    """The part of Lambda's context object the handler relies on."""

    function_name: str
    aws_request_id: str

    def get_remaining_time_in_millis(self) -> int: ...


# -- the process's event loop ---------------------------------------------------------------

_loop: asyncio.AbstractEventLoop | None = None
_loop_lock = threading.Lock()


def process_loop() -> asyncio.AbstractEventLoop:
    """The event loop every Lambda handler of this process runs on: made on first use and kept
    open, so a warm process reuses it (and the AWS clients cached on it) across invocations."""
    global _loop
    with _loop_lock:
        if _loop is None or _loop.is_closed():
            _loop = asyncio.new_event_loop()
        return _loop


def close_process_loop() -> None:
    """Cancel whatever still runs on the process loop and close it; the next invocation makes
    a new one. For tests and tools; Lambda itself never needs it. Close AWS clients first
    (``handler.run(app.aclose())``)."""
    global _loop
    with _loop_lock:
        loop, _loop = _loop, None
    if loop is None or loop.is_closed():
        return
    pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for task in pending:
        task.cancel()
    if pending:
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
    loop.run_until_complete(loop.shutdown_asyncgens())
    loop.close()


def _run(coro: Coroutine[Any, Any, T]) -> T:
    if _in_running_loop():
        coro.close()
        raise RuntimeError(_IN_LOOP)
    return process_loop().run_until_complete(coro)


_IN_LOOP = (
    "the Lambda handler was called inside a running event loop; it runs its own loop, as "
    "Lambda's Python runtime calls it: call it from synchronous code"
)


def _in_running_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


# -- why a record is reported ----------------------------------------------------------------


# -- time -----------------------------------------------------------------------------------


class _Deadline:
    """The invocation's remaining time, and the estimate of a sub-batch from those run so far
    (measured on the remaining time itself, so a test's context drives it)."""

    __slots__ = ("_remaining_ms", "margin", "per_record", "started_with")

    def __init__(self, context: Any, margin: float):
        self._remaining_ms: Callable[[], int] | None = getattr(
            context, "get_remaining_time_in_millis", None
        )
        self.margin = margin
        self.per_record = 0.0
        self.started_with: float | None = None

    def remaining(self) -> float | None:
        """Seconds left in the invocation (``None``: no context, no limit)."""
        return None if self._remaining_ms is None else self._remaining_ms() / 1000.0

    def estimate(self, records: int) -> float:
        return self.per_record * records

    def allows(self, records: int) -> bool:
        """Whether a sub-batch of ``records`` can start and finish before the margin."""
        left = self.remaining()
        self.started_with = left
        return left is None or left - self.margin > self.estimate(records)

    def observe(self, records: int) -> None:
        """A sub-batch of ``records`` (started after ``allows``) is done."""
        before, left = self.started_with, self.remaining()
        if before is None or left is None or records <= 0:
            return
        self.per_record = max(self.per_record, max(0.0, before - left) / records)


# -- the Powertools processor ---------------------------------------------------------------


class TaskBatchProcessor(BatchProcessor):
    """A Powertools ``BatchProcessor`` whose records run through a TaskQueue's engine in
    sub-batches (see the module docstring).

    Args:
        app: the TaskQueue.
        source: Kinesis or SQS.
        sub_batch_size: records per engine batch, at most.
        tracer: a Powertools ``Tracer`` (or ``None``): a subsegment per sub-batch.
        raise_on_entire_batch_failure: Powertools' option: raise ``BatchProcessingError``
            when every record is reported instead of naming them all in the response.
    """

    def __init__(
        self,
        app: Engine,
        source: EventSource,
        *,
        sub_batch_size: int,
        tracer: Any = None,
        raise_on_entire_batch_failure: bool = False,
    ):
        event_type = (
            EventType.KinesisDataStreams if source is EventSource.KINESIS else EventType.SQS
        )
        super().__init__(event_type, raise_on_entire_batch_failure=raise_on_entire_batch_failure)
        self.app = app
        self.source = source
        self.sub_batch_size = sub_batch_size
        self.tracer = tracer
        self.deadline = _Deadline(None, 0.0)
        self.sub_batches = 0
        """Sub-batches run in the current (or last) invocation."""
        self.records_run = 0
        """Records handed to the engine in the current (or last) invocation."""
        self._failed_keys: set[str] = set()
        self._current_key: str | None = None
        self._cursor = 0
        self._sub_end = 0
        self._cut_from: int | None = None
        self._cut_reason = ""
        self._poison: set[int] = set()
        self._recorded = False
        """The current sub-batch was recorded, with no poison record and no blocked key in it."""
        self._sub_error: BaseException | None = None

    # Powertools' hooks ---------------------------------------------------------------------

    def _prepare(self) -> None:
        super()._prepare()  # type: ignore[no-untyped-call]
        self._failed_keys.clear()
        self._current_key = None
        self._cursor = self._sub_end = 0
        self._cut_from = None
        self._poison = set()
        self._recorded = False
        self._sub_error = None
        self.sub_batches = self.records_run = 0

    def _clean(self) -> None:
        self._failed_keys.clear()
        self._current_key = None
        super()._clean()  # type: ignore[no-untyped-call]

    def _process_record(self, record: dict[str, Any]) -> Any:
        index = self._cursor
        self._cursor += 1
        if index == self._sub_end and self._cut_from is None:
            self._start_sub_batch(index)
        if self._recorded:  # the common case: nothing in this sub-batch to report or skip
            return self.success_handler(record, None)
        key = ordering_key(self.source, record)
        self._current_key = key
        if self._cut_from is not None and index >= self._cut_from:
            error = HandedBackError(self._cut_reason)
            return self._report(record, (HandedBackError, error, None))
        if index in self._poison:  # recorded in app.poison: never reported, never blocks
            return self.success_handler(record=record, result=None)
        if key is not None and key in self._failed_keys:
            blocked = KeyBlockedError(f"an earlier record of key {key!r} was reported")
            return self._report(record, (KeyBlockedError, blocked, None))
        if self._sub_error is None:
            # its sub-batch was recorded: a success, without the record handler's round trip
            return self.success_handler(record=record, result=None)
        return super()._process_record(record)

    def failure_handler(self, record: Any, exception: ExceptionInfo) -> Any:
        # As SqsFifoPartialProcessor(skip_group_on_error=True): a reported record stops its key.
        if self._current_key is not None:
            self._failed_keys.add(self._current_key)
        return super().failure_handler(record, exception)

    def record_handler(self, record: Any) -> None:
        """The Powertools record handler: the record's share of its sub-batch's outcome."""
        if self._sub_error is not None:
            raise RecordNotRecordedError(
                f"the outcomes of this record's sub-batch could not be recorded: "
                f"{self._sub_error!r}"
            ) from self._sub_error

    def _report(self, record: dict[str, Any], exception: ExceptionInfo) -> Any:
        data = self._to_batch_type(record=record, event_type=self.event_type, model=self.model)
        return self.failure_handler(record=data, exception=exception)

    # sub-batches ---------------------------------------------------------------------------

    def _start_sub_batch(self, start: int) -> None:
        self._recorded = False
        blocked_keys = bool(self._failed_keys)
        deliveries, poison, end = self._plan(start)
        self._sub_end = end
        self._poison = poison
        self._sub_error = None
        if not deliveries:
            return
        if not self.deadline.allows(len(deliveries)):
            self._hand_back(start, len(deliveries))
            return
        self.sub_batches += 1
        self.records_run += len(deliveries)
        kept_before = len(self.app.processor.poison)
        with _subsegment(self.tracer, "## tq_aws sub-batch") as annotate:
            annotate("records", len(deliveries))
            try:
                _run(self.app.processor.process(deliveries))
            except Exception as exc:
                self._sub_error = exc
                if len(self.app.processor.poison) - kept_before < len(poison):
                    self._poison = set()  # not kept either: reported with the rest, to come again
                annotate("not_recorded", True)
                logger.warning(
                    "outcomes of %d record(s) (%s .. %s) could not be recorded; they are "
                    "reported for redelivery",
                    len(deliveries),
                    deliveries[0].position,
                    deliveries[-1].position,
                    exc_info=exc,
                )
        self.deadline.observe(len(deliveries))
        # every record of the sub-batch ran and was recorded: each one is simply a success
        self._recorded = self._sub_error is None and not poison and not blocked_keys

    def _plan(self, start: int) -> tuple[list[Delivery], set[int], int]:
        """The next sub-batch from ``start``: its deliveries, the indexes of poison records in
        it, and the index after it. Records of a blocked key are left out (reported later);
        a key whose records would be reordered by the engine's grouping ends the sub-batch."""
        records = self.records
        source = self.source
        failed_keys = self._failed_keys
        deliveries: list[Delivery] = []
        poison: set[int] = set()
        first_group: tuple[str, str] | None = None
        # Only once a second executor group appears: executor group -> index of its first
        # record, and key -> (its group, its index).
        first_seen: dict[tuple[str, str], int] | None = None
        last: dict[str, tuple[tuple[str, str], int]] = {}
        index = start
        while index < len(records) and len(deliveries) < self.sub_batch_size:
            record = records[index]
            delivery = to_delivery(source, record)
            task = delivery.task
            if task is None:
                poison.add(index)
                deliveries.append(delivery)
                index += 1
                continue
            # keys matter only once one is blocked, or a second executor group shows up
            key = ordering_key(source, record) if failed_keys or first_seen is not None else None
            if key is not None and key in failed_keys:
                index += 1
                continue
            group = (task.queue_id, task.type)
            if first_group is None:
                first_group = group
            if first_seen is None and group != first_group:
                first_seen = {first_group: start}
                for i in range(start, index):  # every record so far is of the first group
                    k = None if i in poison else ordering_key(source, records[i])
                    if k is not None and k not in failed_keys:
                        last[k] = (first_group, i)
                key = ordering_key(source, record)
            if first_seen is not None:
                seen = first_seen.setdefault(group, index)
                previous = last.get(key) if key is not None else None
                # The engine runs a batch group by group, in order of first appearance: a key
                # moving to a group that appeared before its previous record could run out of
                # order, so the sub-batch ends here.
                if previous is not None and previous[0] != group and seen < previous[1]:
                    break
                if key is not None:
                    last[key] = (group, index)
            deliveries.append(delivery)
            index += 1
        return deliveries, poison, index

    def _hand_back(self, start: int, planned: int) -> None:
        left = self.deadline.started_with or 0.0
        self._cut_from = start
        self._sub_end = len(self.records)
        self._poison = set()
        self._cut_reason = (
            f"not started with {left:.3f} s left: the safety margin is "
            f"{self.deadline.margin:g} s and the next sub-batch was estimated at "
            f"{self.deadline.estimate(planned):.3f} s"
        )
        logger.warning(
            "%d record(s) handed back for redelivery: %s",
            len(self.records) - start,
            self._cut_reason,
        )


@contextmanager
def _subsegment(tracer: Any, name: str) -> Iterator[Callable[[str, Any], None]]:
    """A tracer subsegment, yielding ``annotate(key, value)``; a no-op without a tracer."""
    if tracer is None:
        yield _no_annotation
        return
    with tracer.provider.in_subsegment(name) as subsegment:
        yield subsegment.put_annotation


def _no_annotation(key: str, value: Any) -> None:
    return None


# -- the handler ----------------------------------------------------------------------------


class LambdaHandler:
    """``handler(event, context) -> {"batchItemFailures": [...]}`` for a TaskQueue (made by
    ``TaskQueue.lambda_handler(**options)``; see the module docstring for what it does).

    Args:
        app: the TaskQueue (its executors, stores and engine).
        sub_batch_size: records per engine batch (default: ``app.batch_size``). Smaller
            sub-batches report fewer records when a write fails and stop closer to the
            deadline; larger ones cost less per record.
        safety_margin: seconds of the invocation kept free: no sub-batch starts unless its
            estimate plus this much time is left, and handed-off tasks are awaited until only
            this much is left. Default 2 s; keep it well under the function's timeout.
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
        self.app = app
        self.sub_batch_size = size
        self.safety_margin = float(safety_margin)
        self.raise_on_entire_batch_failure = bool(raise_on_entire_batch_failure)
        self.service = service or os.getenv("POWERTOOLS_SERVICE_NAME") or "tq"
        self.logger = _powertools_logger(logger, self.service)
        self.metrics = _powertools_metrics(metrics, self.service)
        self.tracer = _powertools_tracer(tracer, self.service)
        self._processors: dict[EventSource, TaskBatchProcessor] = {}
        self._cold = True
        self.last: dict[str, Any] = {}
        """What the last invocation did: records, sub-batches, records run, reported,
        handed-off tasks still running, duration in ms."""

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the process loop the handler runs on (set-up at cold start, tests):
        e.g. ``handler.run(app.ensure_resources())``."""
        return _run(coro)

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        """Run a Kinesis or SQS event; return ``{"batchItemFailures": [{"itemIdentifier":
        ...}]}`` naming the records Lambda must deliver again.

        Raises:
            LambdaEventError: the event is not a Kinesis or SQS event as Lambda sends it.
            RuntimeError: called inside a running event loop.
        """
        started = time.perf_counter()
        if _in_running_loop():
            raise RuntimeError(_IN_LOOP)
        records = event_records(event)
        source = event_source(records)
        if source is None:
            return {"batchItemFailures": []}
        self._bind_logger(context, source)
        before = _counters(self.app)
        processor = self._processor(source)
        processor.deadline = deadline = _Deadline(context, self.safety_margin)
        still_running = 0
        try:
            with _subsegment(self.tracer, "## tq_aws lambda_handler") as annotate:
                annotate("event_source", source.value)
                annotate("records", len(records))
                try:
                    with processor(records=records, handler=processor.record_handler):
                        processor.process()
                finally:
                    still_running = self._await_handoffs(deadline)
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
            self._publish_metrics(before, reported, duration_ms)
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

    def _await_handoffs(self, deadline: _Deadline) -> int:
        """Await handed-off tasks until only the margin is left; return how many still run."""
        manager = self.app.async_tasks
        if not manager.active:
            return 0
        left = deadline.remaining()
        budget = None if left is None else left - self.safety_margin
        if budget is None or budget > 0:
            _run(_await_handoffs(manager, budget))
        if manager.active:
            logger.info(
                "%d handed-off task(s) still running at the margin: their stored record and "
                "delivery watchdog bring them back if this process does not finish them",
                manager.active,
            )
        return manager.active

    # -- observability --------------------------------------------------------------------

    def _bind_logger(self, context: Any, source: EventSource) -> None:
        if self.logger is None:
            return
        keys: dict[str, Any] = {"cold_start": self._cold, "event_source": source.value}
        for attribute, key in (
            ("function_name", "function_name"),
            ("aws_request_id", "function_request_id"),
        ):
            value = getattr(context, attribute, None)
            if value is not None:
                keys[key] = value
        self.logger.append_keys(**keys)
        self._cold = False

    def _publish_metrics(self, before: Mapping[str, int], reported: int, ms: float) -> None:
        if self.metrics is None:
            return
        from aws_lambda_powertools.metrics import MetricUnit

        after = _counters(self.app)
        delta = {name: after[name] - before[name] for name in after}
        values = (
            ("Processed", delta["executed"] + delta["failed"] + delta["retried"]),
            ("Failed", delta["failed"]),
            ("Retried", delta["retried"]),
            ("Poison", delta["poison"]),
            ("Reported", reported),
        )
        for name, value in values:
            self.metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
        self.metrics.add_metric(name="Duration", unit=MetricUnit.Milliseconds, value=ms)
        self.metrics.flush_metrics()


async def _await_handoffs(manager: AsyncTaskManager, budget: float | None) -> None:
    loop = asyncio.get_running_loop()
    end = None if budget is None else loop.time() + budget
    while manager.active:
        if end is None:
            await manager.wait_any()
            continue
        left = end - loop.time()
        if left <= 0:
            return
        try:
            await asyncio.wait_for(manager.wait_any(), timeout=left)
        except TimeoutError:
            return


def _counters(app: Engine) -> dict[str, int]:
    stats = app.stats
    return {
        "executed": stats.executed,
        "failed": stats.failed,
        "retried": stats.retried,
        "poison": stats.poison,
    }


# -- Powertools Logger, Metrics, Tracer -----------------------------------------------------


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


def _powertools_logger(option: Any, service: str) -> Any:
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


def _powertools_metrics(option: Any, service: str) -> Any:
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


def _powertools_tracer(option: Any, service: str) -> Any:
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


def reported_identifiers(response: Mapping[str, Sequence[Mapping[str, str]]]) -> list[str]:
    """The item identifiers a handler's response names (a convenience for tests and tools)."""
    return [item["itemIdentifier"] for item in response.get("batchItemFailures", [])]


__all__ = [
    "DEFAULT_SAFETY_MARGIN",
    "METRIC_NAMES",
    "HandedBackError",
    "KeyBlockedError",
    "LambdaContextLike",
    "LambdaHandler",
    "RecordNotRecordedError",
    "TaskBatchProcessor",
    "TaskLogContextFilter",
    "close_process_loop",
    "process_loop",
    "reported_identifiers",
]
