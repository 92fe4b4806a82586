"""TaskStore on DynamoDB: one item per task, every change one conditional write."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from tq_aws.backends.aws.dynamodb.base import DynamoStore
from tq_aws.backends.aws.dynamodb.calls import gather_all, in_key_order
from tq_aws.backends.aws.dynamodb.items import expiry, from_iso, iso
from tq_aws.backends.aws.dynamodb.models import TASK_SK, ConditionFailed, task_pk
from tq_aws.core.limits import id_problem
from tq_aws.core.task import TERMINAL_STATUSES, Task, TaskStatus
from tq_aws.errors import TaskValidationError
from tq_aws.ports import Claim, ClaimState

logger = logging.getLogger(__name__)

TERMINAL = sorted(s.value for s in TERMINAL_STATUSES)
CLAIMABLE = (TaskStatus.SCHEDULED.value, TaskStatus.PROCESSING.value)
LARGE_FIELDS = ("payload", "execution_result")


class DynamoTaskStore(DynamoStore):
    """Task records in DynamoDB (pk ``TASK#<id>``, sk ``TASK``), with the semantics of
    ``MemoryTaskStore``: every change is one conditional ``PutItem`` or ``UpdateItem``, safe to
    repeat, and several tasks are written concurrently.

    The item holds the task's JSON (``doc``) and, beside it, what conditions need (``status``,
    ``retry_count``, ``updated_at``) and what a claim changes without rewriting the JSON
    (``started_at``, ``claimed``). A task whose JSON is larger than ``item_limit`` keeps its
    ``payload`` and/or ``execution_result`` in the blob store; ``get`` and ``claim`` read them
    back, so callers always see the real values.

    Args:
        table: the table (create it with ``ensure_table``).
        settings: region and endpoint.
        blob_store: where values over ``item_limit`` go (``S3BlobStore``); without one, such a
            task raises ``ItemTooLargeError``.
        item_limit: the largest task JSON kept in the item, in bytes (at most 400 000).
        ttl_days: items expire this many days after their last write (or after the task's
            ``execute_at``, if later); ``None`` keeps them.

    ``writes`` counts the items written (conditions that held), ``requests`` the DynamoDB
    requests by operation.

    Example:
        >>> store = DynamoTaskStore("tq", AwsSettings(region="eu-west-1"), blob_store=s3)
        >>> await store.create([task])
        [True]
    """

    # -- port ----------------------------------------------------------------------------------

    async def put(self, tasks: Sequence[Task]) -> list[bool]:
        """Insert or replace each record unless the stored one is terminal or at a later
        attempt; return which were written."""
        items = await self._items(tasks)
        model = self.models.task

        async def put_one(i: int) -> bool:
            n = tasks[i].retry_count
            condition = model.pk.does_not_exist() | (
                ~model.status.is_in(*TERMINAL) & (model.retry_count <= n)
            )
            return await self._put_item(items[i], condition)

        return await in_key_order([t.id or "" for t in tasks], put_one)

    async def create(self, tasks: Sequence[Task]) -> list[bool]:
        """Insert each record only if no record has its id; return which were created."""
        items = await self._items(tasks)
        condition = self.models.task.pk.does_not_exist()

        async def create_one(i: int) -> bool:
            return await self._put_item(items[i], condition)

        return await in_key_order([t.id or "" for t in tasks], create_one)

    async def get(self, task_id: str) -> Task | None:
        if id_problem(task_id) is not None:
            return None  # no stored task can have it: DynamoDB would refuse the key
        raw = await self._get_item(task_pk(task_id), TASK_SK)
        return None if raw is None else await self._decode(raw)

    async def claim(self, tasks: Sequence[Task], now: datetime) -> dict[str, Claim]:
        """Move each delivered task's stored copy to ``processing`` if it is ``scheduled`` or
        ``processing`` at an attempt no later than the delivered one (one conditional
        ``UpdateItem`` each, concurrently); the old item tells why when it is not."""
        keys = [t.id or "" for t in tasks]
        claims = await in_key_order(keys, lambda i: self._claim_one(tasks[i], now))
        return dict(zip(keys, claims, strict=True))

    async def cancel(self, task_id: str, now: datetime) -> Task | None:
        """Move a ``scheduled`` record to ``cancelled`` and return it; ``None`` if it was not
        scheduled."""
        if id_problem(task_id) is not None:
            return None
        model = self.models.task
        actions = [
            model.status.set(TaskStatus.CANCELLED.value),
            model.updated_at.set(iso(now)),
        ]
        ttl = expiry(self.ttl_days, now)
        if ttl is not None:
            actions.append(model.ttl.set(ttl))
        try:
            raw = await self._update(task_id, actions, model.status == TaskStatus.SCHEDULED.value)
        except ConditionFailed:
            return None
        return await self._decode(raw)

    async def reopen(self, task: Task, *, failed_attempt: int) -> bool:
        """Replace a ``failed`` record at attempt ``failed_attempt`` with ``task`` (one
        conditional ``PutItem``); whether it was replaced."""
        [item] = await self._items([task])
        model = self.models.task
        condition = (model.status == TaskStatus.FAILED.value) & (
            model.retry_count == failed_attempt
        )
        return await self._put_item(item, condition)

    # -- internals -----------------------------------------------------------------------------

    async def _claim_one(self, task: Task, now: datetime) -> Claim:
        model = self.models.task
        n = task.retry_count
        actions = [
            model.status.set(TaskStatus.PROCESSING.value),
            model.updated_at.set(iso(now)),
            model.started_at.set(iso(now)),
            model.claimed.set(n),
            model.retry_count.set(n),
        ]
        ttl = expiry(self.ttl_days, now, task.execute_at)
        if ttl is not None:
            actions.append(model.ttl.set(ttl))
        condition = model.status.is_in(*CLAIMABLE) & (model.retry_count <= n)
        try:
            await self._update(task.id or "", actions, condition, return_new=False)
        except ConditionFailed as failed:
            if failed.old is None:
                return Claim(ClaimState.ABSENT)
            stored = await self._decode(failed.old)
            if stored.status is TaskStatus.CANCELLED:
                return Claim(ClaimState.CANCELLED, stored)
            if stored.status in TERMINAL_STATUSES:
                return Claim(ClaimState.DONE, stored)
            if stored.retry_count > n:
                return Claim(ClaimState.STALE, stored)
            raise RuntimeError(  # the condition and the old item disagree: never expected
                f"task {task.id}: claim refused, yet the stored copy is {stored.status.value} "
                f"at attempt {stored.retry_count}"
            ) from None
        return Claim(ClaimState.RUN)  # the delivered task runs: no need to read the item back

    async def _update(
        self, task_id: str, actions: list[Any], condition: Any, *, return_new: bool = True
    ) -> dict[str, Any]:
        """One conditional ``UpdateItem`` returning the new item (if ``return_new``);
        ``ConditionFailed`` carries the old one."""
        return await self._update_item(
            task_pk(task_id),
            TASK_SK,
            actions,
            condition,
            return_values="ALL_NEW" if return_new else "NONE",
            old_on_failure=True,
        )

    async def _items(self, tasks: Sequence[Task]) -> list[Any]:
        for index, task in enumerate(tasks):
            # the id is in the item's key: refused here with the fix, not by DynamoDB
            problem = "is missing" if not task.id else id_problem(task.id)
            if problem is not None:
                raise TaskValidationError(
                    f"a stored task's id {problem}; add it with add_tasks, which checks ids "
                    "and assigns one when none is given",
                    index=index,
                    field="id",
                )
        return await gather_all(self._encode(t) for t in tasks)

    async def _encode(self, task: Task) -> Any:
        record = task.model_copy(update={"stored": True})
        key = task_pk(record.id or "")
        doc, blobs = await self._pack(
            record.model_dump_json(exclude_none=True, exclude_defaults=True),
            LARGE_FIELDS,
            blob_key=f"tasks/{record.id}",
            item_key=key,
        )
        return self.models.task(
            key,
            TASK_SK,
            status=record.status.value,
            retry_count=record.retry_count,
            updated_at=iso(record.updated_at),
            doc=doc,
            blobs=blobs,
            ttl=expiry(self.ttl_days, record.updated_at, record.execute_at),
        )

    async def _decode(self, raw: dict[str, Any]) -> Task:
        item = self.models.task.from_raw_data(raw)
        task = Task.model_validate(await self._unpack(item))
        update: dict[str, Any] = {"status": TaskStatus(item.status)}
        if item.updated_at is not None:
            update["updated_at"] = from_iso(item.updated_at)
        if item.claimed is not None:  # written by a claim after the JSON
            update["processing_started_at"] = from_iso(item.started_at)
            update["execution_stats"] = {**task.execution_stats, "retry_count": int(item.claimed)}
        return task.model_copy(update=update)
