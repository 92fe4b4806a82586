"""Recording one ``record_steps`` call on DynamoDB: step items, batch markers and the barrier.

A step counts (is in the barrier's counters and in ``results``) when its item has no ``batch``
attribute (it was written in a transaction with the barrier's ``ADD``), or its ``batch`` names
a committed marker ``BATCH#<token>``. The marker is committed in one transaction with the
barrier's ``ADD`` of the counts of every step put under that token, only while the flow is open.
Nothing else counts a step, and nothing makes a counted step uncounted, so the counters are
exactly the number of counted steps and ``results`` returns exactly the counted steps.

``StepRecorder`` runs one call:

1. *puts* (``mode="puts"``): every step item is a conditional ``PutItem`` with the call's fresh
   token (first write wins), all at once; then one transaction of two items commits the token
   and adds the counts. *transaction*: the step items are put inside that transaction instead
   (without a token), so the call costs two units per step where puts cost one.
2. A step whose item is already stored is a duplicate if that item counts. If it does not (its
   batch's marker is absent: the writer crashed between its puts and its commit, or is still
   on its way; or void), this call *adopts* it: its transaction voids that marker (puts it
   void unless committed) and removes the item's ``batch`` (only if it is still that token),
   adding the stored item's counts to the barrier. A writer whose marker was voided before it
   committed finds its commit refused, and adopts its own items the same way: each step is
   counted by exactly one transaction whatever the interleaving.
3. The barrier is closed: the steps this call put are deleted (only while they still carry its
   token; a crash leaves them behind, uncounted, where nothing reads them) and come back
   ``CLOSED``; a step found counted is ``DUPLICATE`` (first write wins, even once closed).

Every transaction is one atomic step from one consistent state to the next; the puts before it
change nothing anyone counts. A crash anywhere leaves items that a redelivery adopts (or, once
the flow has closed, that stay uncounted).
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

from pynamodb.exceptions import TransactWriteError

from tq_aws.backends.aws.clients import THROTTLING_CODES
from tq_aws.backends.aws.dynamodb.base import DynamoStore
from tq_aws.backends.aws.dynamodb.calls import gather_all, in_thread
from tq_aws.backends.aws.dynamodb.items import expiry
from tq_aws.backends.aws.dynamodb.models import (
    FLOW_SK,
    ConditionFailed,
    batch_sk,
    flow_pk,
    step_sk,
)
from tq_aws.core.flows import FlowState, RecordOutcome, StepResult
from tq_aws.errors import FlowConflictError

logger = logging.getLogger(__name__)

Mode = Literal["puts", "transaction"]
MAX_TRANSACTION_ITEMS = 100
MAX_TRANSACTION_BYTES = 3_500_000
"""TransactWriteItems takes 4 MB in all; keep room for keys and attributes."""
MAX_ATTEMPTS = 8
"""Transactions a busy barrier may cancel before ``FlowConflictError``."""
MAX_REFUSALS = 32
"""Transactions of one call that conditions may cancel (each teaches it something about the
steps: a racing writer, a marker committed meanwhile) before ``FlowConflictError``."""
RETRY_BASE_SECONDS = 0.02
"""Backoff after the n-th cancellation: about ``RETRY_BASE_SECONDS * 2**n``, at most 1 s."""
TRANSIENT_REASONS = THROTTLING_CODES | {"TransactionConflict"}
CONDITION_FAILED = "ConditionalCheckFailed"
TOKEN_BYTES = 8
"""A batch token: 16 hex digits, random (unique among the batches of a flow)."""

Committed = Literal["committed", "void", "absent"]


def marker_state(raw: dict[str, Any] | None) -> Committed:
    """What a raw batch marker says: committed (its steps count), void, or absent."""
    if raw is None:
        return "absent"
    return "void" if raw.get("void", {}).get("BOOL") else "committed"


def counts_raw(raw: dict[str, Any], markers: dict[str, Committed]) -> bool:
    """Whether a raw step item counts, given the markers of its flow."""
    batch = raw.get("batch")
    return batch is None or markers.get(batch["S"]) == "committed"


@dataclass
class _Plan:
    """One transaction: its puts and updates (in that order, as pynamodb sends them) and what
    each stands for."""

    puts: list[dict[str, Any]] = field(default_factory=list)
    updates: list[dict[str, Any]] = field(default_factory=list)
    roles: list[tuple[str, Any]] = field(default_factory=list)
    """Per put, then per update: ``(fresh|own|void|adopt|barrier, index or token)``."""
    succeeded: int = 0
    failed: int = 0


class StepRecorder:
    """Records the steps of one ``record_steps`` call (see the module docstring).

    Args:
        store: the flow store (its models, blob store, counters).
        flow_id: the flow.
        steps: step index -> this call's result for it (one per index).
        items: step index -> the encoded step item and its size in bytes.
        mode: ``puts`` or ``transaction``.
        per_transaction: at most this many steps put inside one transaction.
    """

    def __init__(
        self,
        store: DynamoStore,
        flow_id: str,
        steps: dict[int, StepResult],
        items: dict[int, tuple[Any, int]],
        *,
        mode: Mode,
        per_transaction: int = MAX_TRANSACTION_ITEMS - 1,
    ):
        self.store = store
        self.models = store.models
        self.flow_id = flow_id
        self.pk = flow_pk(flow_id)
        self.steps = steps
        self.items = items
        self.mode = mode
        self.per_transaction = per_transaction
        self.token = secrets.token_hex(TOKEN_BYTES)
        self.fresh: dict[int, None] = {}
        """Steps to put inside the next transaction (no item of ours stored yet)."""
        self.stored: dict[int, tuple[str, str]] = {}
        """Steps stored, not counted yet: index -> (its item's batch token, its status)."""
        self.markers: dict[str, Committed] = {}
        self.own: set[int] = set()
        """Steps whose stored item is this call's (put with its token)."""
        self.outcomes: dict[int, RecordOutcome] = {}

    # -- the call ------------------------------------------------------------------------------

    async def run(self) -> dict[int, RecordOutcome]:
        """Every step's outcome (``FlowConflictError`` if the barrier stayed busy)."""
        if self.mode == "puts":
            await self._put_all()
        else:
            self.fresh = dict.fromkeys(self.steps)
        busy = refused = 0
        while busy < MAX_ATTEMPTS and refused < MAX_REFUSALS:
            await self._settle_markers()
            if not self.fresh and not self.stored:
                return self.outcomes
            plan = self._plan()
            self.store.requests["TransactWriteItems"] += 1
            reasons = await in_thread(self._transact_sync, plan)
            if reasons is None:
                self._committed(plan)
                continue
            codes = {r.code for r in reasons if r is not None}
            if CONDITION_FAILED in codes:
                refused += 1
                if await self._refused(plan, reasons):
                    return self.outcomes
            else:  # a busy item or throttling only: the same transaction again, later
                backoff = min(1.0, RETRY_BASE_SECONDS * 2**busy)
                busy += 1
                await asyncio.sleep(backoff * random.uniform(0.5, 1.5))
        raise FlowConflictError(
            f"flow {self.flow_id}: its barrier stayed busy through {MAX_ATTEMPTS} attempts; "
            "the steps of that call were not all recorded: record them again",
            flow_id=self.flow_id,
        )

    async def closed_outcomes(self) -> dict[int, RecordOutcome]:
        """The outcomes on a flow found closed before anything was written: ``DUPLICATE`` for
        a step whose stored item counts, ``CLOSED`` for the others. Reads only."""
        raws = await gather_all(
            self.store._get_item(self.pk, step_sk(index)) for index in self.steps
        )
        for index, raw in zip(self.steps, raws, strict=True):
            if raw is None:
                self.outcomes[index] = RecordOutcome.CLOSED
            else:
                self._classify(index, raw)
        await self._settle_markers()
        self._close_remaining()
        return self.outcomes

    # -- puts ------------------------------------------------------------------------------------

    async def _put_all(self) -> None:
        got = await gather_all(self._put(index) for index in self.steps)
        for index, old in zip(self.steps, got, strict=True):
            if old is None:
                self.own.add(index)
                self.stored[index] = (self.token, self.steps[index].status)
            else:
                self._classify(index, old)

    async def _put(self, index: int) -> dict[str, Any] | None:
        """Put the step with this call's token; ``None`` if put, else the stored item."""
        item, _ = self.items[index]
        item.batch = self.token
        kwargs = item.get_save_kwargs_from_instance(
            condition=self.models.step.pk.does_not_exist(),
            return_values_on_condition_failure="ALL_OLD",
        )
        self.store.requests["PutItem"] += 1
        try:
            await in_thread(self.models.execute, "PutItem", kwargs)
        except ConditionFailed as exc:
            if exc.old is None:  # a condition on absence fails only on a stored item
                raise RuntimeError(
                    f"flow {self.flow_id}: step {index} refused, none stored"
                ) from None
            return exc.old
        self.store.writes += 1
        return None

    def _classify(self, index: int, raw: dict[str, Any]) -> None:
        """A stored item was found for ``index``: a duplicate, or a step to adopt."""
        self.fresh.pop(index, None)
        batch = raw.get("batch")
        if batch is None:  # counted (perhaps by another call, adopting it)
            self.stored.pop(index, None)
            self.outcomes[index] = self._counted(index)
        else:
            self.stored[index] = (batch["S"], raw["status"]["S"])

    def _counted(self, index: int) -> RecordOutcome:
        """The outcome of a step now counted: recorded if the stored result is this call's,
        else a duplicate (first write wins: the result is another call's)."""
        return RecordOutcome.RECORDED if index in self.own else RecordOutcome.DUPLICATE

    async def _settle_markers(self) -> None:
        """Read the markers of the stored steps' batches (not this call's own); steps of a
        committed batch are duplicates."""
        unknown = {b for b, _ in self.stored.values() if b not in self.markers and b != self.token}
        if unknown:
            tokens = sorted(unknown)
            raws = await gather_all(self.store._get_item(self.pk, batch_sk(t)) for t in tokens)
            self.markers.update(zip(tokens, map(marker_state, raws), strict=True))
        for index, (batch, _) in list(self.stored.items()):
            if self.markers.get(batch) == "committed":
                del self.stored[index]
                self.outcomes[index] = RecordOutcome.DUPLICATE

    # -- transactions ----------------------------------------------------------------------------

    def _plan(self) -> _Plan:
        plan = _Plan()
        room = MAX_TRANSACTION_ITEMS - 1  # the barrier's update is the last item
        size = 0
        own = [i for i, (b, _) in self.stored.items() if b == self.token]
        if own and self.markers.get(self.token) != "void":
            plan.puts.append(self._marker(self.token, void=False, count=len(own)))
            plan.roles.append(("own", self.token))
            room -= 1
            for index in own:
                self._count(plan, self.stored[index][1])
        for inline, index in enumerate(self.fresh):
            item, item_size = self.items[index]
            full = size + item_size > MAX_TRANSACTION_BYTES
            if room < 1 or inline >= self.per_transaction or full:
                break
            item.batch = None
            plan.puts.append(
                item.get_save_kwargs_from_instance(
                    condition=self.models.step.pk.does_not_exist(),
                    return_values_on_condition_failure="ALL_OLD",
                )
            )
            plan.roles.append(("fresh", index))
            self._count(plan, self.steps[index].status)
            room -= 1
            size += item_size
        voided: set[str] = set()
        adopt: list[tuple[int, str]] = []
        for index, (batch, status) in self.stored.items():
            if batch == self.token and self.markers.get(self.token) != "void":
                continue  # counted by this call's own marker
            need = 1 if batch in voided else 2
            if room < need:
                break
            if batch not in voided:
                voided.add(batch)
                plan.puts.append(self._marker(batch, void=True))
                plan.roles.append(("void", batch))
            adopt.append((index, batch))
            self._count(plan, status)
            room -= need
        step = self.models.step
        for index, batch in adopt:
            plan.updates.append(
                self.models.connection.get_operation_kwargs(
                    self.pk,
                    step_sk(index),
                    actions=[step.batch.remove()],
                    condition=step.batch == batch,
                    return_values_on_condition_failure="ALL_OLD",
                )
            )
            plan.roles.append(("adopt", index))
        flow = self.models.flow
        actions = [flow.completed.add(plan.succeeded + plan.failed)]
        if plan.succeeded:
            actions.append(flow.succeeded.add(plan.succeeded))
        if plan.failed:
            actions.append(flow.failed.add(plan.failed))
        plan.updates.append(
            self.models.connection.get_operation_kwargs(
                self.pk,
                FLOW_SK,
                actions=actions,
                condition=flow.state == FlowState.OPEN.value,
                return_values_on_condition_failure="ALL_OLD",
            )
        )
        plan.roles.append(("barrier", None))
        return plan

    @staticmethod
    def _count(plan: _Plan, status: str) -> None:
        if status == "success":
            plan.succeeded += 1
        else:
            plan.failed += 1

    def _marker(self, token: str, *, void: bool, count: int = 0) -> dict[str, Any]:
        """A batch marker's put: committed (only if absent) or void (unless committed)."""
        item: dict[str, Any] = {"pk": {"S": self.pk}, "sk": {"S": batch_sk(token)}}
        if void:
            item["void"] = {"BOOL": True}
        else:
            item["steps"] = {"N": str(count)}
        ttl = expiry(self.store.ttl_days)
        if ttl is not None:
            item["ttl"] = {"N": str(int(ttl.timestamp()))}
        put: dict[str, Any] = {"TableName": self.models.table, "Item": item}
        if void:
            put["ConditionExpression"] = "attribute_not_exists(pk) OR #void = :true"
            put["ExpressionAttributeNames"] = {"#void": "void"}
            put["ExpressionAttributeValues"] = {":true": {"BOOL": True}}
        else:
            put["ConditionExpression"] = "attribute_not_exists(pk)"
        return put

    def _transact_sync(self, plan: _Plan) -> list[Any] | None:
        """Run the transaction; ``None`` when it committed, else its cancellation reasons (one
        per item, in the plan's order)."""
        try:
            # A fresh token per transaction of ours: botocore's own retry of one that did
            # commit then returns success instead of failing on what it has just written.
            self.models.connection.connection.transact_write_items(
                condition_check_items=[],
                delete_items=[],
                put_items=plan.puts,
                update_items=plan.updates,
                client_request_token=uuid.uuid4().hex,
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

    def _committed(self, plan: _Plan) -> None:
        self.store.writes += len(plan.roles)
        for role, key in plan.roles:
            if role == "own":
                for index in [i for i, (b, _) in self.stored.items() if b == self.token]:
                    del self.stored[index]
                    self.outcomes[index] = RecordOutcome.RECORDED
            elif role == "fresh":
                del self.fresh[key]
                self.outcomes[key] = RecordOutcome.RECORDED
            elif role == "adopt":
                del self.stored[key]
                self.outcomes[key] = self._counted(key)
            elif role == "void":
                self.markers[key] = "void"

    async def _refused(self, plan: _Plan, reasons: list[Any]) -> bool:
        """Learn from a cancelled transaction; ``True`` once every step has its outcome."""
        closed = False
        for (role, key), reason in zip(plan.roles, reasons, strict=True):
            if reason is None or reason.code != CONDITION_FAILED:
                continue
            if role == "fresh":
                self._classify(key, reason.raw_item)
            elif role == "own":  # another call adopted some of ours first
                self.markers[self.token] = "void"
            elif role == "void":
                self.markers[key] = "committed"
            elif role == "adopt":
                if reason.raw_item is None:  # deleted by a writer that found the flow closed
                    del self.stored[key]
                    self.fresh[key] = None
                else:
                    self._classify(key, reason.raw_item)
            elif not reason.raw_item:  # the barrier: no such flow (any more)
                for index in [*self.fresh, *self.stored]:
                    self.outcomes[index] = RecordOutcome.UNKNOWN
                return True
            else:  # the barrier: closed
                closed = True
        if not closed:
            return False
        await self._settle_markers()
        await self._drop_own()
        self._close_remaining()
        return True

    def _close_remaining(self) -> None:
        for index in [*self.fresh, *self.stored]:
            self.outcomes[index] = RecordOutcome.CLOSED
        self.fresh.clear()
        self.stored.clear()

    async def _drop_own(self) -> None:
        """Delete the steps this call put that still carry its token (never counted now)."""
        own = [i for i in self.own if self.stored.get(i, ("", ""))[0] == self.token]
        await gather_all(self._delete(index) for index in own)

    async def _delete(self, index: int) -> None:
        self.store.requests["DeleteItem"] += 1
        kwargs = self.models.connection.get_operation_kwargs(
            self.pk, step_sk(index), condition=self.models.step.batch == self.token
        )
        try:
            await in_thread(self.models.execute, "DeleteItem", kwargs)
        except ConditionFailed:
            return
        self.store.writes += 1
