"""Memory task store. Each method runs without awaiting, so each is atomic on the event loop,
as the conditional writes of the DynamoDB store are.

A record is kept as the codec's bytes, as a real store keeps it, beside the two fields its
conditions read (status and attempt): nothing is shared with the caller, every read is a fresh
copy, and a large task (a join carrying every step's result) costs its JSON, not a second
set of Python objects."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import NamedTuple, Protocol

from tq_aws.core.codec import decode_task, encode_task
from tq_aws.core.limits import id_problem
from tq_aws.core.task import TERMINAL_STATUSES, Task, TaskStatus
from tq_aws.errors import TaskValidationError
from tq_aws.ports import Claim, ClaimState

logger = logging.getLogger(__name__)


class Versioned(Protocol):
    """What the store's conditions read of a stored record."""

    @property
    def status(self) -> TaskStatus: ...

    @property
    def retry_count(self) -> int: ...


class _Record(NamedTuple):
    data: bytes
    status: TaskStatus
    retry_count: int

    def task(self) -> Task:
        return decode_task(self.data)


def _record(task: Task) -> _Record:
    return _Record(encode_task(task), task.status, task.retry_count)


def may_replace(stored: Versioned | None, new: Task) -> bool:
    """The condition of every ``put``: a record is never replaced once terminal, nor by an
    earlier attempt, so a late duplicate cannot undo an outcome."""
    if stored is None:
        return True
    if stored.status in TERMINAL_STATUSES:
        return False
    return stored.retry_count <= new.retry_count


class MemoryTaskStore:
    """Task records by id."""

    def __init__(self) -> None:
        self._tasks: dict[str, _Record] = {}
        self.writes = 0

    async def put(self, tasks: Sequence[Task]) -> list[bool]:
        return self._write(tasks, may_replace)

    async def create(self, tasks: Sequence[Task]) -> list[bool]:
        return self._write(tasks, lambda stored, _: stored is None)

    def _write(
        self, tasks: Sequence[Task], condition: Callable[[Versioned | None, Task], bool]
    ) -> list[bool]:
        """Store each task whose ``condition(stored copy or None, task)`` holds, in order (a
        later task of the same id sees the earlier one); return which were written."""
        for index, task in enumerate(tasks):
            problem = "is missing" if not task.id else id_problem(task.id)
            if problem is not None:  # what the DynamoDB store refuses, refused here too
                raise TaskValidationError(
                    f"a stored task's id {problem}; add it with add_tasks, which checks ids "
                    "and assigns one when none is given",
                    index=index,
                    field="id",
                )
        out = []
        for task in tasks:
            assert task.id is not None
            if not condition(self._tasks.get(task.id), task):
                out.append(False)
                continue
            self._tasks[task.id] = _record(task.copy_with(stored=True))
            self.writes += 1
            out.append(True)
        return out

    async def get(self, task_id: str) -> Task | None:
        record = self._tasks.get(task_id)
        return None if record is None else record.task()

    async def claim(self, tasks: Sequence[Task], now: datetime) -> dict[str, Claim]:
        out: dict[str, Claim] = {}
        for task in tasks:
            tid = task.id or ""
            stored = self._tasks.get(tid)
            if stored is None:
                out[tid] = Claim(ClaimState.ABSENT)
            elif stored.status is TaskStatus.CANCELLED:
                out[tid] = Claim(ClaimState.CANCELLED, stored.task())
            elif stored.status in TERMINAL_STATUSES:
                out[tid] = Claim(ClaimState.DONE, stored.task())
            elif stored.retry_count > task.retry_count:
                out[tid] = Claim(ClaimState.STALE, stored.task())
            else:
                copy = stored.task()
                self._tasks[tid] = _record(
                    copy.copy_with(
                        status=TaskStatus.PROCESSING,
                        processing_started_at=now,
                        updated_at=now,
                        execution_stats={**copy.execution_stats, "retry_count": task.retry_count},
                    )
                )
                self.writes += 1
                out[tid] = Claim(ClaimState.RUN)
        return out

    async def cancel(self, task_id: str, now: datetime) -> Task | None:
        stored = self._tasks.get(task_id)
        if stored is None or stored.status is not TaskStatus.SCHEDULED:
            return None
        cancelled = stored.task().copy_with(status=TaskStatus.CANCELLED, updated_at=now)
        self._tasks[task_id] = _record(cancelled)
        self.writes += 1
        return cancelled

    async def reopen(self, task: Task, *, failed_attempt: int) -> bool:
        stored = self._tasks.get(task.id or "")
        if (
            stored is None
            or stored.status is not TaskStatus.FAILED
            or stored.retry_count != failed_attempt
        ):
            return False
        self._tasks[task.id or ""] = _record(task.copy_with(stored=True))
        self.writes += 1
        return True

    def __len__(self) -> int:
        return len(self._tasks)
