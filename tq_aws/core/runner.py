"""Running one delivered batch through its executors.

Tasks are grouped by ``(queue_id, type)`` in order of first appearance; each group goes to its
executor (sequential, parallel in chunks, or one batch call). The runner only records outcomes;
the engine persists them afterwards.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from tq_aws.core import log_context
from tq_aws.core.actions import (
    NO_DECISION_FAILURE,
    Actions,
    BatchBook,
    Decision,
    PrepareFn,
    failure_decision,
)
from tq_aws.core.blocking import DEFAULT_SLOW_CALLBACK_DURATION, run_timed
from tq_aws.core.executors import ExecutorKind, ExecutorRegistry, ExecutorSpec
from tq_aws.core.flows import FlowStart
from tq_aws.core.lifecycle import LifecycleBus
from tq_aws.core.task import Task

logger = logging.getLogger(__name__)

UNKNOWN_EXECUTOR = "unknown_executor"
_NONE: list[Task] = []  # shared empty defaults of outcomes: never appended to
_NO_FLOWS: list[FlowStart] = []


@dataclass(slots=True)
class TaskOutcome:
    """What became of one task in a batch run."""

    task: Task
    spec: ExecutorSpec | None
    decision: Decision | None
    ignored_reason: str | None = None
    children: list[Task] = field(default_factory=list)
    flows: list[FlowStart] = field(default_factory=list)
    handed_off: bool = False
    """Still running after ``handoff_timeout``; its outcome is recorded when it ends."""


@dataclass(slots=True)
class BatchOutcome:
    """Outcomes in delivery order, plus children added by batch executors without a parent."""

    outcomes: list[TaskOutcome]
    batch_children: list[Task]
    batch_flows: list[FlowStart] = field(default_factory=list)


HandoffHook = Callable[[ExecutorSpec, Task, "asyncio.Task[None]", BatchBook], bool]
"""Offered a task still running after its handoff timeout; returns whether it took it."""


class Runner:
    """Runs batches against a registry. ``worker_id`` is bound into every log context; a step
    of an async executor holding the event loop over ``slow_callback_duration`` seconds is
    logged (``None``: not timed)."""

    def __init__(
        self,
        registry: ExecutorRegistry,
        prepare: PrepareFn,
        *,
        worker_id: str,
        now: Callable[[], datetime],
        events: LifecycleBus | None = None,
        slow_callback_duration: float | None = DEFAULT_SLOW_CALLBACK_DURATION,
    ):
        self._registry = registry
        self._slow = slow_callback_duration
        self._prepare = prepare
        self._worker_id = worker_id
        self._now = now
        self._events = events
        self.handoff: HandoffHook | None = None

    async def run(self, tasks: Sequence[Task]) -> BatchOutcome:
        book = BatchBook(tasks={t.id or "": t for t in tasks})
        ignored: dict[str, str] = {}
        specs: dict[tuple[str, str], ExecutorSpec | None] = {}
        for groups in _segments(tasks):
            await self._run_segment(groups, book, ignored, specs)
        return self._outcomes(tasks, book, ignored, specs)

    async def _run_segment(
        self,
        groups: dict[tuple[str, str], list[Task]],
        book: BatchBook,
        ignored: dict[str, str],
        specs: dict[tuple[str, str], ExecutorSpec | None],
    ) -> None:
        for (queue_id, type_), group in groups.items():
            spec = self._registry.get(queue_id, type_)
            specs[(queue_id, type_)] = spec
            if spec is None:
                for task in group:
                    ignored[task.id or ""] = UNKNOWN_EXECUTOR
                logger.warning(
                    "no executor for %s/%s: %d task(s) ignored", queue_id, type_, len(group)
                )
            elif spec.kind is ExecutorKind.BATCH:
                await self._run_batch(spec, group, book)
            elif spec.kind is ExecutorKind.PARALLEL:
                for start in range(0, len(group), spec.chunk_size):
                    chunk = group[start : start + spec.chunk_size]
                    await asyncio.gather(*(self._run_one(spec, t, book) for t in chunk))
            elif not spec.is_async and (spec.handoff_timeout is None or self.handoff is None):
                await self._run_sequential_sync(spec, group, book)
            else:
                for task in group:
                    await self._run_one(spec, task, book)

    def _outcomes(
        self,
        tasks: Sequence[Task],
        book: BatchBook,
        ignored: dict[str, str],
        specs: dict[tuple[str, str], ExecutorSpec | None],
    ) -> BatchOutcome:
        children, flows, decisions = book.children, book.flows, book.decisions
        if len(specs) == 1 and not (ignored or book.handed_off or children or flows):
            # one executor, every task decided or not, nothing made: the common batch
            spec = next(iter(specs.values()))
            get = decisions.get
            return BatchOutcome(
                outcomes=[
                    TaskOutcome(
                        t, spec, get(t.id or "") or NO_DECISION_FAILURE, None, _NONE, _NO_FLOWS
                    )
                    for t in tasks
                ],
                batch_children=book.batch_children,
                batch_flows=book.batch_flows,
            )
        outcomes = []
        for task in tasks:
            tid = task.id or ""
            reason = ignored.get(tid)
            handed_off = tid in book.handed_off
            decision = None if reason or handed_off else decisions.get(tid)
            if reason is None and decision is None and not handed_off:
                decision = NO_DECISION_FAILURE
            outcomes.append(
                TaskOutcome(
                    task,
                    specs[(task.queue_id, task.type)],
                    decision,
                    reason,
                    children.get(tid) or _NONE,
                    flows.get(tid) or _NO_FLOWS,
                    handed_off,
                )
            )
        return BatchOutcome(
            outcomes=outcomes, batch_children=book.batch_children, batch_flows=book.batch_flows
        )

    def _context(self, task: Task) -> dict[str, str]:
        if not task.metadata:
            return {
                "task_id": task.id or "",
                "task_type": task.type,
                "queue_id": task.queue_id,
                "worker_id": self._worker_id,
            }
        return {
            **task.log_context,
            "task_id": task.id or "",
            "task_type": task.type,
            "queue_id": task.queue_id,
            "worker_id": self._worker_id,
        }

    async def _run_one(self, spec: ExecutorSpec, task: Task, book: BatchBook) -> None:
        ctx = self._context(task)
        actions = Actions(
            book, self._prepare, task, ctx, self._now, payload_model=spec.payload_model
        )
        events = self._events
        if events is not None and events.tracks_starts:
            await events.task_started(task)
        if spec.handoff_timeout is None or self.handoff is None:
            await self._invoke(spec, task, actions, ctx, book)
            return
        job = asyncio.ensure_future(self._invoke(spec, task, actions, ctx, book))
        done, _ = await asyncio.wait({job}, timeout=spec.handoff_timeout)
        if not done and self.handoff(spec, task, job, book):
            book.handed_off.add(task.id or "")
            return
        await job  # finished in time, or not taken (manager full): wait for it here

    async def _run_sequential_sync(
        self, spec: ExecutorSpec, group: list[Task], book: BatchBook
    ) -> None:
        """``_run_one`` for a plain sequential executor without hand-off: the common case,
        called directly rather than through a coroutine per task."""
        events = self._events if self._events is not None and self._events.tracks_starts else None
        bind, unbind = log_context.CURRENT.set, log_context.CURRENT.reset
        fn, context, prepare, now = spec.fn, self._context, self._prepare, self._now
        model = spec.payload_model
        for task in group:
            ctx = context(task)
            actions = Actions(book, prepare, task, ctx, now, payload_model=model)
            if events is not None:
                await events.task_started(task)
            token = bind(ctx)
            try:
                returned = fn(task, actions)
                if returned is not None and inspect.isawaitable(returned):  # a partial of async
                    await returned
            except Exception as exc:
                self._fail_pending(book, [task], exc)
            finally:
                unbind(token)

    async def _invoke(
        self,
        spec: ExecutorSpec,
        task: Task,
        actions: Actions,
        ctx: dict[str, str],
        book: BatchBook,
    ) -> None:
        token = log_context.bind(ctx)
        try:
            if spec.is_async:
                if self._slow is None:
                    await spec.fn(task, actions)
                else:
                    await run_timed(
                        spec.fn(task, actions), self._slow, spec.queue_id, spec.type, task.id
                    )
            elif spec.kind is ExecutorKind.PARALLEL or spec.handoff_timeout is not None:
                # in a thread, so the loop stays free (and can hand a long one off)
                await asyncio.to_thread(spec.fn, task, actions)
            else:
                returned = spec.fn(task, actions)
                if returned is not None and inspect.isawaitable(returned):  # a partial of async
                    await returned
        except Exception as exc:
            self._fail_pending(book, [task], exc)
        finally:
            log_context.unbind(token)

    async def _run_batch(self, spec: ExecutorSpec, group: list[Task], book: BatchBook) -> None:
        ctx = {
            "task_type": spec.type,
            "queue_id": spec.queue_id,
            "worker_id": self._worker_id,
            "batch_size": str(len(group)),
        }
        actions = Actions(
            book,
            self._prepare,
            task=None,
            context=ctx,
            now=self._now,
            batch_key=_group_key(group),
            payload_model=spec.payload_model,
        )
        events = self._events
        if events is not None:
            await events.task_batch_started(spec.queue_id, spec.type, group)
            if events.tracks_starts:
                for task in group:
                    await events.task_started(task)
        began = time.perf_counter()
        try:
            with log_context.bound(ctx):
                if spec.is_async:
                    if self._slow is None:
                        await _as_awaitable(spec.fn(list(group), actions))
                    else:
                        await run_timed(
                            spec.fn(list(group), actions),
                            self._slow,
                            spec.queue_id,
                            spec.type,
                            None,
                        )
                else:
                    returned = spec.fn(list(group), actions)
                    if returned is not None and inspect.isawaitable(returned):
                        await returned
        except Exception as exc:
            self._fail_pending(book, group, exc)
        if events is not None and events.wants("task_batch_completed"):
            decisions = book.decisions
            succeeded = [
                tid
                for t in group
                if (d := decisions.get(tid := t.id or "")) is not None and d.kind == "success"
            ]
            ms = (time.perf_counter() - began) * 1000.0
            await events.task_batch_completed(spec.queue_id, spec.type, group, succeeded, ms)

    @staticmethod
    def _fail_pending(book: BatchBook, tasks: Sequence[Task], exc: Exception) -> None:
        for task in tasks:
            if (task.id or "") not in book.decisions:
                book.decide(task, failure_decision(exc, None))


async def _as_awaitable(value: Awaitable[Any] | Any) -> Any:
    return await value


def _group_key(group: Sequence[Task]) -> str:
    """A batch group's identity, for ids of what its executor makes without ``parent=``: the
    same tasks at the same attempts give the same key (a redelivery in the same batch)."""
    members = ",".join(sorted(f"{t.id}.{t.retry_count}" for t in group))
    first = min((t.id or "" for t in group), default="")
    return f"{first}\x00batch:{hashlib.sha256(members.encode()).hexdigest()[:16]}"


def _segments(tasks: Sequence[Task]) -> list[dict[tuple[str, str], list[Task]]]:
    """Group a batch by executor, in order of first appearance, and split it where running it
    grouped would reorder a partition key: a key's records of different types stay in
    delivery order. With one executor, or the default key (the task id), nothing is split."""
    segments: list[dict[tuple[str, str], list[Task]]] = []
    groups: dict[tuple[str, str], list[Task]] = {}
    group_of_key: dict[str, tuple[str, str]] | None = None  # kept once a 2nd group shows up
    start = 0
    for i, task in enumerate(tasks):
        group = (task.queue_id, task.type)
        members = groups.get(group)
        if members is None and groups and group_of_key is None:
            first = next(iter(groups))  # every task so far in this segment is of this group
            group_of_key = {t.partition_key or t.id or "": first for t in tasks[start:i]}
        if group_of_key is not None:
            key = task.partition_key or task.id or ""
            if group_of_key.get(key, group) != group:
                segments.append(groups)
                groups, members, group_of_key, start = {}, None, None, i
            else:
                group_of_key[key] = group
        if members is None:
            groups[group] = members = []
        members.append(task)
    segments.append(groups)
    return segments
