"""FlowStore on DynamoDB: a small barrier item per flow, one item per step result.

Recording steps is transactional: the step items are put only if absent (first write wins) and
the barrier's counters move in the same ``TransactWriteItems``, only while the flow is open. The
barrier holds counters only (no set of done steps), so its size, and the cost of every update
to it, is the same at any flow size.

Steps of one ``record_steps`` call are recorded together: one transaction puts up to 99 step
items and adds their counts to the barrier once. The transaction commits only when every step is
new and the flow is open, and then its effect is exactly that of recording the steps one by one
with nothing in between (which is also what the memory store does: a call is atomic there). If it
is cancelled by a condition (a duplicate step, a closed flow, an index out of range), the steps
are recorded one transaction each, in order, and the cancellation reasons of each say what
happened to it: so the outcomes are those of the one-by-one path in every case.
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import pydantic_core
from pydantic import TypeAdapter
from pynamodb.exceptions import TransactWriteError
from pynamodb.transactions import TransactWrite

from tq_aws.backends.aws.clients import THROTTLING_CODES, AwsSettings
from tq_aws.backends.aws.dynamodb.base import DEFAULT_ITEM_LIMIT, DynamoStore
from tq_aws.backends.aws.dynamodb.calls import gather_all, in_thread
from tq_aws.backends.aws.dynamodb.items import expiry, from_iso, iso
from tq_aws.backends.aws.dynamodb.models import (
    FLOW_SK,
    STEP_PREFIX,
    ConditionFailed,
    flow_pk,
    step_sk,
)
from tq_aws.core.flows import FlowRecord, FlowState, RecordOutcome, StepResult
from tq_aws.errors import FlowConflictError
from tq_aws.ports import BlobStore

logger = logging.getLogger(__name__)

MAX_STEPS_PER_TRANSACTION = 99
"""TransactWriteItems takes 100 items: the steps and the barrier."""
MAX_TRANSACTION_BYTES = 3_500_000
"""TransactWriteItems takes 4 MB in all; keep room for keys and attributes."""
MAX_ATTEMPTS = 8
"""Transactions a busy barrier may cancel before ``FlowConflictError``."""
RETRY_BASE_SECONDS = 0.02
"""Backoff after the n-th cancellation: about ``RETRY_BASE_SECONDS * 2**n``, at most 1 s."""
TRANSIENT_REASONS = THROTTLING_CODES | {"TransactionConflict"}
"""Cancellation reasons a retry of the transaction may get past: a busy item, or throttling."""
CONDITION_FAILED = "ConditionalCheckFailed"
LARGE_FIELDS = ("result", "error")
_RECORD = TypeAdapter(FlowRecord)
_COUNTERS = {"state", "succeeded", "failed", "finished_at"}


class DynamoFlowStore(DynamoStore):
    """Flow barriers and step results in DynamoDB, with the semantics of ``MemoryFlowStore``.

    Items: the barrier (pk ``FLOW#<id>``, sk ``FLOW``: the definition's JSON, ``state``,
    ``total``, ``succeeded``, ``failed``, ``completed``, ``finished_at``) and one item per step
    result (sk ``STEP#<index, 8 digits>``). Every change is one conditional write or one
    transaction, safe to repeat.

    Args:
        table: the table (create it with ``ensure_table``).
        settings: region and endpoint.
        blob_store: where a step's result (or error) goes when its JSON is over ``item_limit``;
            without one, such a step raises ``ItemTooLargeError``.
        item_limit: the largest step JSON kept in the item, in bytes.
        ttl_days: items expire this many days after they are written (the barrier: after its
            deadline, if later, and again from when it closes). Keep it longer than a flow can
            stay open. Released results are not deleted: they expire.
        group_steps: record the steps of one call in one transaction (see the module's
            docstring); ``False`` always uses one transaction per step.

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
        group_steps: bool = True,
    ):
        super().__init__(
            table, settings, blob_store=blob_store, item_limit=item_limit, ttl_days=ttl_days
        )
        self.group_steps = group_steps
        # ``writes``: a recorded step counts two (its item and the barrier).

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
        """Record each step's result: first write wins per step index, only while the flow is
        open, with the barrier's counters in the same transaction.

        Raises:
            ValueError: a step index is out of range (steps before it may be recorded).
            FlowConflictError: the barrier stayed busy through every attempt.
        """
        for result in results:
            if result.step_index < 0:
                raise ValueError(f"flow {flow_id}: step_index {result.step_index} out of range")
        first: dict[int, int] = {}  # step index -> position of its first result in the call
        for position, result in enumerate(results):
            first.setdefault(result.step_index, position)
        unique = list(first.values())
        encoded = await gather_all(self._encode_step(flow_id, results[p]) for p in unique)
        items = dict(zip(unique, encoded, strict=True))
        outcomes: dict[int, RecordOutcome] = {}
        for chunk in self._chunks(unique, encoded):
            steps = [results[p] for p in chunk]
            got = await self._record_chunk(flow_id, steps, [items[p] for p in chunk])
            outcomes.update(zip(chunk, got, strict=True))
            if RecordOutcome.UNKNOWN in got:
                outcomes.update((p, RecordOutcome.UNKNOWN) for p in unique if p not in outcomes)
                break
        out: list[RecordOutcome] = []
        for position, result in enumerate(results):
            outcome = outcomes[first[result.step_index]]
            if position != first[result.step_index] and outcome is RecordOutcome.RECORDED:
                outcome = RecordOutcome.DUPLICATE  # the same step twice in one call
            out.append(outcome)
        return out

    async def results(self, flow_id: str) -> list[StepResult]:
        """Every recorded step result, sorted by step index (paginated query of ``STEP#``)."""
        raws = await self._query(flow_pk(flow_id), sk_prefix=STEP_PREFIX)
        steps = await gather_all(self._decode_step(raw) for raw in raws)
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

    # -- recording -----------------------------------------------------------------------------

    def _chunks(self, positions: list[int], items: list[tuple[Any, int]]) -> list[list[int]]:
        if not self.group_steps:
            return [[p] for p in positions]
        chunks: list[list[int]] = []
        size = 0
        for position, (_, item_size) in zip(positions, items, strict=True):
            if (
                not chunks
                or len(chunks[-1]) >= MAX_STEPS_PER_TRANSACTION
                or size + item_size > MAX_TRANSACTION_BYTES
            ):
                chunks.append([])
                size = 0
            chunks[-1].append(position)
            size += item_size
        return chunks

    async def _record_chunk(
        self, flow_id: str, steps: list[StepResult], items: list[tuple[Any, int]]
    ) -> list[RecordOutcome]:
        if len(steps) > 1:
            reasons = await self._transact(flow_id, steps, [item for item, _ in items])
            if reasons is None:
                self.writes += len(steps) + 1
                return [RecordOutcome.RECORDED] * len(steps)
            barrier = reasons[-1]
            if barrier is not None and barrier.code == CONDITION_FAILED and not barrier.raw_item:
                return [RecordOutcome.UNKNOWN] * len(steps)
            # a duplicate, a closed flow or an index out of range: step by step says which
        out: list[RecordOutcome] = []
        for step, (item, _) in zip(steps, items, strict=True):
            outcome = await self._record_one(flow_id, step, item)
            out.append(outcome)
            if outcome is RecordOutcome.UNKNOWN:
                out.extend([RecordOutcome.UNKNOWN] * (len(steps) - len(out)))
                break
        return out

    async def _record_one(self, flow_id: str, step: StepResult, item: Any) -> RecordOutcome:
        reasons = await self._transact(flow_id, [step], [item])
        if reasons is None:
            self.writes += 2
            return RecordOutcome.RECORDED
        step_reason, barrier = reasons
        duplicate = step_reason is not None and step_reason.code == CONDITION_FAILED
        if barrier is not None and barrier.code == CONDITION_FAILED:
            if not barrier.raw_item:
                return RecordOutcome.UNKNOWN
            old = self.models.flow.from_raw_data(barrier.raw_item)
            if step.step_index >= int(old.total):
                raise ValueError(f"flow {flow_id}: step_index {step.step_index} out of range")
            if duplicate:  # first write wins, even once the flow is closed (as in memory)
                return RecordOutcome.DUPLICATE
            if old.state != FlowState.OPEN.value:
                return RecordOutcome.CLOSED
        elif duplicate:
            return RecordOutcome.DUPLICATE
        raise RuntimeError(  # the reasons and the conditions disagree: never expected
            f"flow {flow_id}: step {step.step_index} was refused for no known reason ({reasons})"
        )

    async def _transact(
        self, flow_id: str, steps: list[StepResult], items: list[Any]
    ) -> list[Any] | None:
        """Run the transaction of ``steps``; ``None`` when it committed, else its cancellation
        reasons (the steps' then the barrier's) when conditions cancelled it. Retries what a
        busy barrier cancels."""
        for attempt in range(MAX_ATTEMPTS):
            self.requests["TransactWriteItems"] += 1
            reasons = await in_thread(self._transact_sync, flow_id, steps, items)
            if reasons is None:
                return None
            codes = {r.code for r in reasons if r is not None}
            if not codes & TRANSIENT_REASONS:
                return reasons
            if attempt + 1 < MAX_ATTEMPTS:
                backoff = min(1.0, RETRY_BASE_SECONDS * 2**attempt)
                await asyncio.sleep(backoff * random.uniform(0.5, 1.5))
        raise FlowConflictError(
            f"flow {flow_id}: its barrier stayed busy through {MAX_ATTEMPTS} attempts "
            f"({', '.join(sorted(codes))}); the steps of that transaction were not recorded: "
            "record them again",
            flow_id=flow_id,
        )

    def _transact_sync(
        self, flow_id: str, steps: list[StepResult], items: list[Any]
    ) -> list[Any] | None:
        flow, step_model = self.models.flow, self.models.step
        succeeded = sum(1 for s in steps if s.status == "success")
        failed = len(steps) - succeeded
        actions = [flow.completed.add(len(steps))]
        if succeeded:
            actions.append(flow.succeeded.add(succeeded))
        if failed:
            actions.append(flow.failed.add(failed))
        condition = (flow.state == FlowState.OPEN.value) & (
            flow.total > max(s.step_index for s in steps)
        )
        # A fresh token per attempt of ours: botocore's own retry of a transaction that did
        # commit then returns success instead of failing on the steps it has just written.
        transaction = TransactWrite(
            connection=self.models.connection.connection,
            client_request_token=uuid.uuid4().hex,
        )
        try:
            with transaction:
                for item in items:  # pynamodb sends puts before updates: steps, then barrier
                    transaction.save(item, condition=step_model.pk.does_not_exist())
                transaction.update(
                    flow(flow_pk(flow_id), FLOW_SK),
                    actions=actions,
                    condition=condition,
                    return_values="ALL_OLD",
                )
        except TransactWriteError as exc:
            if exc.cause_response_code != "TransactionCanceledException":
                raise
            reasons = list(exc.cancellation_reasons)
            codes = {r.code for r in reasons if r is not None}
            if codes - TRANSIENT_REASONS - {CONDITION_FAILED}:
                raise
            return reasons
        return None

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
