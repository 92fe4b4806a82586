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

The engine works on deliveries, Powertools on event records: a record is one delivery, or one
per user record of a KPL aggregate. Sub-batches are planned over the deliveries; a record is a
success when each of its deliveries is recorded (or kept as poison, or parked), and is reported
otherwise (by its own sequence number: an aggregate comes again whole). When a sub-batch could
not be recorded, the records that have now failed ``max_deliveries`` times are parked in the
poison store (``BatchProcessor.settle_unrecorded``) and are successes; the others are reported.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from tq_aws.core import kpl
from tq_aws.errors import HandedBackError, KeyBlockedError, RecordNotRecordedError
from tq_aws.ports import Delivery
from tq_aws.runtimes.aws_lambda.deadline import Deadline
from tq_aws.runtimes.aws_lambda.loop import run
from tq_aws.runtimes.aws_lambda.observability import subsegment
from tq_aws.runtimes.aws_lambda.planning import Verdict, plan_sub_batch, stop_key
from tq_aws.runtimes.aws_lambda.powertools_batch import BatchProcessor, EventType, ExceptionInfo
from tq_aws.runtimes.aws_lambda.records import (
    EventSource,
    decoder,
    key_reader,
    record_deliveries,
)

if TYPE_CHECKING:
    from tq_aws.engine.engine import Engine

logger = logging.getLogger(__name__)


class TaskBatchProcessor(BatchProcessor):
    """A Powertools ``BatchProcessor`` whose records run through an app's engine in
    sub-batches (see the module docstring).

    Args:
        app: the app (its engine's ``processor`` runs the sub-batches).
        source: Kinesis or SQS.
        sub_batch_size: deliveries per engine batch, at most.
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
        """Deliveries handed to the engine in the current (or last) invocation."""
        self.parked = 0
        """Deliveries settled after ``max_deliveries`` (this invocation): recorded when run
        alone, else parked in the poison store."""
        self._decode = decoder(source)
        self._deliveries_of = record_deliveries(source)
        self._key_of = key_reader(source)
        self._reset()

    def _reset(self) -> None:
        # The event's deliveries (items), in order: each one's delivery, ordering key and
        # event record (parallel lists: the planner reads them by index).
        self._deliveries: list[Delivery] = []
        self._keys: list[str | None] = []
        self._owners: list[int] = []
        self._spans: list[tuple[int, int]] | None = None
        """Per event record: the range of its items (``None``: one item per record)."""
        self._verdicts: list[Verdict | None] = []
        self._errors: dict[int, BaseException] = {}
        """Item index -> why its sub-batch was not recorded."""
        self._failed_keys: set[str] = set()
        self._next = 0
        """The first item no sub-batch has taken yet."""
        self._cursor = 0
        self._cut_reason = ""
        self._sub_error: BaseException | None = None
        self.sub_batches = self.records_run = self.parked = 0

    # Powertools' hooks ---------------------------------------------------------------------

    def _prepare(self) -> None:
        super()._prepare()  # type: ignore[no-untyped-call]
        self._reset()
        records, decode, key_of = self.records, self._decode, self._key_of
        deliveries = [decode(r) for r in records]
        self._keys = [key_of(r) for r in records]
        self._deliveries = deliveries
        if self.source is EventSource.KINESIS and any(
            d.task is None and kpl.is_aggregated(d.data) for d in deliveries
        ):
            self._expand_aggregates()
        self._verdicts = [None] * len(self._deliveries)

    def _expand_aggregates(self) -> None:
        """One item per user record of each KPL aggregate, with its own partition key."""
        plain, plain_keys = self._deliveries, self._keys
        deliveries: list[Delivery] = []
        keys: list[str | None] = []
        owners: list[int] = []
        spans: list[tuple[int, int]] = []
        for index, (record, delivery) in enumerate(zip(self.records, plain, strict=True)):
            first = len(deliveries)
            if delivery.task is None and kpl.is_aggregated(delivery.data):
                users = self._deliveries_of(record)
                deliveries.extend(users)
                keys.extend(d.partition_key for d in users)
                owners.extend(index for _ in users)
            else:
                deliveries.append(delivery)
                keys.append(plain_keys[index])
                owners.append(index)
            spans.append((first, len(deliveries)))
        self._deliveries, self._keys, self._owners, self._spans = deliveries, keys, owners, spans

    def _clean(self) -> None:
        self._failed_keys.clear()
        super()._clean()  # type: ignore[no-untyped-call]

    def _process_record(self, record: dict[str, Any]) -> Any:
        index = self._cursor
        self._cursor += 1
        spans = self._spans
        first, end = (index, index + 1) if spans is None else spans[index]
        while self._next < end:
            self._run_sub_batch()
        verdicts = self._verdicts
        outcome = verdicts[first] if end - first == 1 else _worst(verdicts[first:end])
        if outcome is Verdict.RECORDED:
            # recorded (or kept as poison, or parked): a success, without the handler's trip
            return self.success_handler(record=record, result=None)
        for key in self._keys[first:end]:  # the record comes again whole: its keys wait
            stop_key(self._failed_keys, key)
        if outcome is Verdict.HANDED_BACK:
            error = HandedBackError(self._cut_reason)
            return self._report(record, (HandedBackError, error, None))
        if outcome is Verdict.BLOCKED:
            keys = sorted({str(k) for k in self._keys[first:end] if k is not None})
            blocked = KeyBlockedError(
                f"an earlier record of key {keys[0] if len(keys) == 1 else keys!r} was reported"
            )
            return self._report(record, (KeyBlockedError, blocked, None))
        self._sub_error = next(
            (self._errors[i] for i in range(first, end) if i in self._errors), None
        )
        return super()._process_record(record)

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

    def _run_sub_batch(self) -> None:
        """Plan and run the next sub-batch from ``_next``; decide each of its items."""
        start = self._next
        everything, verdicts = self._deliveries, self._verdicts
        # the planner reads items by index: deliveries and keys are looked up, not rebuilt
        deliveries, poison, end = plan_sub_batch(
            range(len(everything)),
            start,
            self.sub_batch_size,
            self._failed_keys,
            everything.__getitem__,
            self._keys.__getitem__,
        )
        self._next = end
        skipped = len(deliveries) < end - start  # some left out: their key is blocked
        if skipped:
            planned = {id(d) for d in deliveries}
            for i in range(start, end):
                if id(everything[i]) not in planned:
                    verdicts[i] = Verdict.BLOCKED
        if not deliveries:
            return
        if not self.deadline.allows(len(deliveries)):
            self._hand_back(start, len(deliveries))
            return
        self.sub_batches += 1
        self.records_run += len(deliveries)
        processor = self.app.processor
        kept_before = len(processor.poison)
        error: BaseException | None = None
        kept: set[int] = set()
        with subsegment(self.tracer, "## tq_aws sub-batch") as annotate:
            annotate("records", len(deliveries))
            try:
                run(processor.process(deliveries))
            except Exception as exc:
                error = exc
                annotate("not_recorded", True)
                if len(processor.poison) - kept_before >= len(poison):
                    kept = {i for i in range(start, end) if i in poison}
                kept |= self._park(start, end, deliveries, exc)
                logger.warning(
                    "outcomes of %d record(s) (%s .. %s) could not be recorded; they are "
                    "reported for redelivery",
                    len(deliveries),
                    deliveries[0].position,
                    deliveries[-1].position,
                    exc_info=exc,
                )
        self.deadline.observe(len(deliveries))
        if error is None and not skipped:  # the common case: every item recorded
            verdicts[start:end] = [Verdict.RECORDED] * (end - start)
            return
        for i in range(start, end):
            if verdicts[i] is not None:
                continue
            if error is None or i in kept:
                verdicts[i] = Verdict.RECORDED
            else:
                verdicts[i] = Verdict.NOT_RECORDED
                self._errors[i] = error
                stop_key(self._failed_keys, self._keys[i])

    def _park(
        self, start: int, end: int, deliveries: list[Delivery], error: BaseException
    ) -> set[int]:
        """The items of a sub-batch that could not be recorded and are now settled (they have
        failed ``max_deliveries`` times: recorded when run alone, else parked); none if the
        count or the poison store fails."""
        try:
            parked = run(self.app.processor.settle_unrecorded(deliveries, error))
        except Exception:
            logger.warning("records that failed again could not be parked", exc_info=True)
            return set()
        if not parked:
            return set()
        self.parked += len(parked)
        ids = {id(d) for d in parked}
        return {i for i in range(start, end) if id(self._deliveries[i]) in ids}

    def _owner(self, item: int) -> int:
        """The event record of item ``item``."""
        return item if self._spans is None else self._owners[item]

    def _hand_back(self, start: int, planned: int) -> None:
        left = self.deadline.started_with or 0.0
        self._next = len(self._deliveries)
        for i in range(start, len(self._deliveries)):
            self._verdicts[i] = Verdict.HANDED_BACK
        self._cut_reason = (
            f"not started with {left:.3f} s left: the safety margin is "
            f"{self.deadline.margin:g} s and the next sub-batch was estimated at "
            f"{self.deadline.estimate(planned):.3f} s"
        )
        logger.warning(
            "%d record(s) handed back for redelivery: %s",
            len(self.records) - self._owner(start),
            self._cut_reason,
        )


_SEVERITY = {
    Verdict.HANDED_BACK: 3,
    Verdict.NOT_RECORDED: 2,
    Verdict.BLOCKED: 1,
    Verdict.RECORDED: 0,
}


def _worst(verdicts: list[Verdict | None]) -> Verdict:
    """A record of several deliveries (a KPL aggregate) is as bad as its worst one; a record
    of none (an empty aggregate) is simply recorded."""
    worst = Verdict.RECORDED
    for v in verdicts:
        if v is not None and _SEVERITY[v] > _SEVERITY[worst]:
            worst = v
    return worst


__all__ = ["TaskBatchProcessor"]
