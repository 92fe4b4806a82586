"""FlowStore on DynamoDB: a small barrier item per flow, one item per step result.

The barrier holds counters only (no set of done steps), so its size, and the cost of every
update to it, is the same at any flow size. A step counts (in the barrier's counters, in
``results`` and so in the join) once one transaction has added it to the barrier while the flow
was open: first write wins per step, and each step is counted exactly once (``flow_record``).

How the steps of one ``record_steps`` call are written (``flow_steps``):

- ``puts`` (the default for calls of three steps or more, ``auto``): each step item is one
  conditional ``PutItem`` (1 write unit for an item up to 1 KB), all at once, carrying the
  call's batch token; then one transaction of two items commits the batch (a marker item
  ``BATCH#<token>``) and adds the counts to the barrier, only while the flow is open. About
  ``1 + 4/n`` units per step for a call of ``n`` steps.
- ``transaction``: the step items are put inside that transaction (99 a transaction), which
  bills each item twice: about ``2 + 2/n`` units per step (and what ``auto`` does for calls of
  one or two steps, where it is the cheaper).

Both have the same outcomes, counters and results. Between the puts and the commit the steps are
stored but not counted, so nothing reads them: ``results`` returns only the steps that count
(no ``batch``, or a committed batch), which are exactly the steps in the counters, so a join
built from it carries every counted step and no other, even one read after the flow closed.
A crash in that window leaves uncounted steps; their redelivery finds them stored, and adopts
them (counts them in its own transaction, voiding the crashed batch so that it never counts
them too) instead of calling them duplicates. A step that arrives once the flow is closed is
refused (``CLOSED``) without a write when the flow is seen closed first, and deleted again when
the commit finds it closed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal

import pydantic_core
from pydantic import TypeAdapter

from tq_aws.backends.aws.clients import AwsSettings
from tq_aws.backends.aws.dynamodb.base import DEFAULT_ITEM_LIMIT, DynamoStore
from tq_aws.backends.aws.dynamodb.calls import gather_all
from tq_aws.backends.aws.dynamodb.flow_record import (
    StepRecorder,
    counts_raw,
    marker_state,
)
from tq_aws.backends.aws.dynamodb.items import expiry, from_iso, iso
from tq_aws.backends.aws.dynamodb.models import (
    BATCH_PREFIX,
    FLOW_SK,
    STEP_PREFIX,
    ConditionFailed,
    flow_pk,
    step_sk,
)
from tq_aws.core.flows import FlowRecord, FlowState, RecordOutcome, StepResult
from tq_aws.ports import BlobStore

logger = logging.getLogger(__name__)

FlowSteps = Literal["auto", "puts", "transaction"]
AUTO_TRANSACTION_STEPS = 2
"""``auto`` writes a call of at most this many steps in its transaction: ``2n + 2`` units
against ``n + 4`` for puts."""
LARGE_FIELDS = ("result", "error")
_RECORD = TypeAdapter(FlowRecord)
_COUNTERS = {"state", "succeeded", "failed", "finished_at"}


class DynamoFlowStore(DynamoStore):
    """Flow barriers and step results in DynamoDB, with the semantics of ``MemoryFlowStore``.

    Items: the barrier (pk ``FLOW#<id>``, sk ``FLOW``: the definition's JSON, ``state``,
    ``total``, ``succeeded``, ``failed``, ``completed``, ``finished_at``) and one item per step
    result (sk ``STEP#<index, 8 digits>``, with ``batch`` until its batch commits), and one
    marker per batch of steps put outside a transaction (sk ``BATCH#<token>``). Every change is
    one conditional write or one transaction, safe to repeat.

    Args:
        table: the table (create it with ``ensure_table``).
        settings: region and endpoint.
        blob_store: where a step's result (or error) goes when its JSON is over ``item_limit``;
            without one, such a step raises ``ItemTooLargeError``.
        item_limit: the largest step JSON kept in the item, in bytes.
        ttl_days: items expire this many days after they are written (the barrier: after its
            deadline, if later, and again from when it closes). Keep it longer than a flow can
            stay open. Released results are not deleted: they expire.
        flow_steps: how a call's steps are written (see the module's docstring): ``puts``,
            ``transaction``, or ``auto`` (puts for three steps or more).
        group_steps: with ``transaction``, put the steps of one call in one transaction (99 at
            most); ``False`` puts each in its own.

    Example:
        >>> store = DynamoFlowStore("tq", AwsSettings())
        >>> await store.init(record)
        True
        >>> await store.record_steps(record.flow_id, [StepResult(0, "success", 1)])
        [<RecordOutcome.RECORDED: 'recorded'>]
    """

    def __init__(
        self,
        table: str,
        settings: AwsSettings,
        *,
        blob_store: BlobStore | None = None,
        item_limit: int = DEFAULT_ITEM_LIMIT,
        ttl_days: float | None = 30,
        flow_steps: FlowSteps = "auto",
        group_steps: bool = True,
    ):
        super().__init__(
            table, settings, blob_store=blob_store, item_limit=item_limit, ttl_days=ttl_days
        )
        if flow_steps not in ("auto", "puts", "transaction"):
            raise ValueError(f"flow_steps={flow_steps!r}; use 'auto', 'puts' or 'transaction'")
        self.flow_steps: FlowSteps = flow_steps
        self.group_steps = group_steps

    # -- port ----------------------------------------------------------------------------------

    async def init(self, record: FlowRecord) -> bool:
        """Create the barrier if absent; return whether this call created it."""
        flow = self.models.flow
        item = flow(
            flow_pk(record.flow_id),
            FLOW_SK,
            definition=_RECORD.dump_json(record, exclude=_COUNTERS).decode(),
            state=record.state.value,
            total=record.total,
            succeeded=record.succeeded,
            failed=record.failed,
            completed=record.completed,
            finished_at=iso(record.finished_at),
            ttl=expiry(self.ttl_days, record.started_at, record.deadline),
        )
        return await self._put_item(item, flow.pk.does_not_exist())

    async def get(self, flow_id: str) -> FlowRecord | None:
        raw = await self._get_item(flow_pk(flow_id), FLOW_SK)
        return None if raw is None else self._record(raw)

    async def record_steps(
        self, flow_id: str, results: Sequence[StepResult]
    ) -> list[RecordOutcome]:
        """Record each step's result: first write wins per step index, counted only while the
        flow is open (``flow_record``).

        Raises:
            ValueError: a step index is out of range (nothing is recorded).
            FlowConflictError: the barrier stayed busy through every attempt.
        """
        for result in results:
            if result.step_index < 0:
                raise ValueError(f"flow {flow_id}: step_index {result.step_index} out of range")
        first: dict[int, int] = {}  # step index -> position of its first result in the call
        for position, result in enumerate(results):
            first.setdefault(result.step_index, position)
        steps = {index: results[p] for index, p in first.items()}
        barrier = await self._get_item(flow_pk(flow_id), FLOW_SK)
        if barrier is None:
            return [RecordOutcome.UNKNOWN] * len(results)
        total = int(barrier["total"]["N"])
        for index in steps:
            if index >= total:
                raise ValueError(f"flow {flow_id}: step_index {index} out of range")
        if barrier["state"]["S"] != FlowState.OPEN.value:
            recorder = StepRecorder(self, flow_id, steps, {}, mode="transaction")
            outcomes = await recorder.closed_outcomes()
        else:
            encoded = await gather_all(self._encode_step(flow_id, s) for s in steps.values())
            mode = self.flow_steps
            if mode == "auto":
                mode = "transaction" if len(steps) <= AUTO_TRANSACTION_STEPS else "puts"
            recorder = StepRecorder(
                self,
                flow_id,
                steps,
                dict(zip(steps, encoded, strict=True)),
                mode=mode,
                per_transaction=99 if self.group_steps else 1,
            )
            outcomes = await recorder.run()
        out: list[RecordOutcome] = []
        for position, result in enumerate(results):
            outcome = outcomes[result.step_index]
            if position != first[result.step_index] and outcome is RecordOutcome.RECORDED:
                outcome = RecordOutcome.DUPLICATE  # the same step twice in one call
            out.append(outcome)
        return out

    async def results(self, flow_id: str) -> list[StepResult]:
        """Every step result that counts, sorted by step index: one paginated query of the
        flow's items (markers sort before steps, so a step is never read before its marker)."""
        raws = await self._query(flow_pk(flow_id), sk_prefix=None)
        markers = {
            raw["sk"]["S"][len(BATCH_PREFIX) :]: marker_state(raw)
            for raw in raws
            if raw["sk"]["S"].startswith(BATCH_PREFIX)
        }
        counted = [
            raw
            for raw in raws
            if raw["sk"]["S"].startswith(STEP_PREFIX) and counts_raw(raw, markers)
        ]
        steps = await gather_all(self._decode_step(raw) for raw in counted)
        return sorted(steps, key=lambda s: s.step_index)

    async def close(
        self, flow_id: str, to: FlowState, *, expected_completed: int, now: datetime
    ) -> bool:
        """``SET state, finished_at`` if the flow is open with exactly ``expected_completed``
        results; return whether this call moved it."""
        flow = self.models.flow
        actions = [flow.state.set(to.value), flow.finished_at.set(iso(now))]
        ttl = expiry(self.ttl_days, now)
        if ttl is not None:
            actions.append(flow.ttl.set(ttl))
        condition = (flow.state == FlowState.OPEN.value) & (flow.completed == expected_completed)
        try:
            await self._update_item(flow_pk(flow_id), FLOW_SK, actions, condition)
        except ConditionFailed:
            return False
        return True

    async def release_results(self, flow_id: str) -> None:
        """Nothing to write: step items expire by TTL (``ttl_days``)."""

    # -- items ---------------------------------------------------------------------------------

    async def _encode_step(self, flow_id: str, step: StepResult) -> tuple[Any, int]:
        pk, sk = flow_pk(flow_id), step_sk(step.step_index)
        doc = pydantic_core.to_json(
            {
                "step_index": step.step_index,
                "status": step.status,
                "result": step.result,
                "error": step.error,
            }
        ).decode()
        doc, blobs = await self._pack(
            doc,
            LARGE_FIELDS,
            blob_key=f"flows/{flow_id}/steps/{step.step_index}",
            item_key=f"{pk} {sk}",
        )
        item = self.models.step(
            pk,
            sk,
            status=step.status,
            doc=doc,
            blobs=blobs,
            ttl=expiry(self.ttl_days),
        )
        return item, len(doc.encode()) + len(pk) + len(sk) + 64

    async def _decode_step(self, raw: dict[str, Any]) -> StepResult:
        item = self.models.step.from_raw_data(raw)
        data = await self._unpack(item)
        return StepResult(
            int(data["step_index"]), data["status"], data.get("result"), data.get("error")
        )

    def _record(self, raw: dict[str, Any]) -> FlowRecord:
        item = self.models.flow.from_raw_data(raw)
        record = _RECORD.validate_json(item.definition)
        record.state = FlowState(item.state)
        record.succeeded = int(item.succeeded)
        record.failed = int(item.failed)
        record.finished_at = from_iso(item.finished_at)
        return record
