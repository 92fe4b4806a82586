"""The Powertools processor of the Lambda runtime: ``TaskBatchProcessor`` runs an event's
records through the engine in sub-batches and reports each record's share of the outcome.

This is still Powertools batch processing, not a loop beside it. ``TaskBatchProcessor`` is a
Powertools ``BatchProcessor`` subclassed the way ``SqsFifoPartialProcessor(skip_group_on_error=
True)`` is: Powertools walks the records one by one through ``_process_record``, calls the
record handler and collects successes and failures; its ``_clean`` builds the response (item
identifiers: sequence numbers or message ids) and handles the case where every record failed
(``raise_on_entire_batch_failure``, off by default here: a response naming every record
redelivers them all without an invocation error). What the subclass adds: the first record of
a sub-batch runs the whole sub-batch through the engine, and the record handler then reports
each record's share of that outcome; like the FIFO processor it keys a circuit breaker, by the
Kinesis partition key or the SQS FIFO ``MessageGroupId`` (the rules: ``planning``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType
from aws_lambda_powertools.utilities.batch.exceptions import ExceptionInfo

from tq_aws.errors import HandedBackError, KeyBlockedError, RecordNotRecordedError
from tq_aws.runtimes.aws_lambda.deadline import Deadline
from tq_aws.runtimes.aws_lambda.loop import run
from tq_aws.runtimes.aws_lambda.observability import subsegment
from tq_aws.runtimes.aws_lambda.planning import Verdict, plan_sub_batch, stop_key, verdict
from tq_aws.runtimes.aws_lambda.records import EventSource, decoder, key_reader

if TYPE_CHECKING:
    from tq_aws.engine.engine import Engine

logger = logging.getLogger(__name__)


class TaskBatchProcessor(BatchProcessor):
    """A Powertools ``BatchProcessor`` whose records run through an app's engine in
    sub-batches (see the module docstring).

    Args:
        app: the app (its engine's ``processor`` runs the sub-batches).
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
        self.deadline = Deadline(None, 0.0)
        self.sub_batches = 0
        """Sub-batches run in the current (or last) invocation."""
        self.records_run = 0
        """Records handed to the engine in the current (or last) invocation."""
        self._decode = decoder(source)
        self._key_of = key_reader(source)
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
        key = self._key_of(record)
        self._current_key = key
        outcome = verdict(
            index,
            key,
            cut_from=self._cut_from,
            poison=self._poison,
            failed_keys=self._failed_keys,
            recorded=self._sub_error is None,
        )
        if outcome is Verdict.RECORDED:
            # recorded (or kept as poison): a success, without the record handler's round trip
            return self.success_handler(record=record, result=None)
        if outcome is Verdict.HANDED_BACK:
            error = HandedBackError(self._cut_reason)
            return self._report(record, (HandedBackError, error, None))
        if outcome is Verdict.BLOCKED:
            blocked = KeyBlockedError(f"an earlier record of key {key!r} was reported")
            return self._report(record, (KeyBlockedError, blocked, None))
        return super()._process_record(record)

    def failure_handler(self, record: Any, exception: ExceptionInfo) -> Any:
        # As SqsFifoPartialProcessor(skip_group_on_error=True): a reported record stops its key.
        stop_key(self._failed_keys, self._current_key)
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
        deliveries, poison, end = plan_sub_batch(
            self.records,
            start,
            self.sub_batch_size,
            self._failed_keys,
            self._decode,
            self._key_of,
        )
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
        with subsegment(self.tracer, "## tq_aws sub-batch") as annotate:
            annotate("records", len(deliveries))
            try:
                run(self.app.processor.process(deliveries))
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


__all__ = ["TaskBatchProcessor"]
