"""What a batch's outcomes must write: the plan, as plain data.

Given the runner's outcome of a batch (``tq_aws.core.runner.BatchOutcome``), the tasks it set
aside as expired and the first attempts whose ``processing`` row is still pending, this module
says what each task's outcome means (success, retry, final failure, ignored, expired, handed
off) and which records, schedules, projection rows, flow reports and children follow from it.
It writes nothing: the engine's recorder (``tq_aws.engine.recording``) makes these writes in
their crash-safe order.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pydantic_core

from tq_aws.core.actions import Decision
from tq_aws.core.flows import FlowStart, StepResult, flow_meta
from tq_aws.core.retry import DEFAULT_RETRY_AFTER, RetryPlan, plan_retry
from tq_aws.core.runner import BatchOutcome
from tq_aws.core.task import Task, TaskStatus

PERMANENT_KEY = "permanent_failure"
"""``execution_stats`` key set on a task failed for good before its retries ran out."""

DATA_ERROR_KEY = "data_error"
"""``execution_stats`` key set on a task ended ``failed`` because its own data could not be run
or recorded (``tq_aws.errors.TaskDataError``); ``last_error`` says the same."""

ProjectionItem = tuple[Task, str, str | None, object]
"""One projection row to write: ``(task, status, error, result)``."""


@dataclass(frozen=True, slots=True)
class Offload:
    """A success whose result is over the result limit: it lives in the BlobStore under
    ``key`` and a marker takes its place in ``BatchWrites.successes[index]``."""

    index: int
    key: str
    value: Any
    size: int


@dataclass(slots=True)
class BatchWrites:
    """The writes one batch's outcomes imply. Task lists hold the copies to write (status,
    times and stats already set), in delivery order."""

    now: datetime
    successes: list[Task] = field(default_factory=list)
    """Executed copies of the successes that leave a trace: stored tasks, entity tasks, tasks
    with metadata (flow steps, joins), or every one when lifecycle listeners are registered."""
    plain_successes: int = 0
    """Successes of plain tasks: nothing to write for them (the hot path)."""
    inline: dict[str, Any] = field(default_factory=dict)
    """Results as the executors gave them, by task id, for lifecycle events."""
    offloads: list[Offload] = field(default_factory=list)
    retries: list[RetryPlan] = field(default_factory=list)
    """Next attempts of retried tasks, each to be scheduled at ``at`` (and stored if stored)."""
    retried: list[Task] = field(default_factory=list)
    """The failed attempts behind ``retries``, for events."""
    finals: list[Task] = field(default_factory=list)
    ignored: list[Task] = field(default_factory=list)
    expired: list[Task] = field(default_factory=list)
    handoffs: list[Task] = field(default_factory=list)
    """Stored ``processing`` copies of tasks still running after their handoff timeout."""
    children: list[Task] = field(default_factory=list)
    """Children of finished attempts (and of batch executors), to dispatch."""
    starts: list[FlowStart] = field(default_factory=list)
    """Flows started by finished attempts (and by batch executors)."""
    processing: list[Task] = field(default_factory=list)
    """First attempts within the processing grace that will retry: they show ``processing``."""
    nothing: bool = False
    """Nothing to write at all: the common batch of plain tasks."""

    @property
    def succeeded(self) -> int:
        return len(self.successes) + self.plain_successes

    @property
    def failed(self) -> int:
        """Final failures and retried attempts."""
        return len(self.finals) + len(self.retries)

    def set_result(self, index: int, value: Any) -> None:
        """Put ``value`` (a blob marker) in place of the result of ``successes[index]``."""
        self.successes[index] = self.successes[index].copy_with(**{"execution_result": value})

    def stored(self) -> list[Task]:
        """The task records to write, in one store call."""
        return [
            *(t for t in self.successes if t.stored),
            *self.expired,
            *self.handoffs,
            *(p.task for p in self.retries if p.task.stored),
            *self.finals,
            *self.ignored,
        ]

    def finished(self) -> list[Task]:
        """Tasks in a terminal status: their projection rows and flow reports."""
        return [*self.successes, *self.finals, *self.ignored, *self.expired]

    def projection_rows(self) -> list[ProjectionItem]:
        """Rows in one store call: tasks that will retry show ``processing`` even within the
        grace; every other entity task its terminal row."""
        rows: list[ProjectionItem] = [(t, "processing", None, None) for t in self.processing]
        rows.extend(terminal_row(t) for t in self.finished() if t.entity is not None)
        return rows


def plan_writes(
    outcome: BatchOutcome,
    expired: Sequence[Task],
    pending_processing: Sequence[Task],
    *,
    now: datetime,
    result_limit: int,
    events: bool,
    ended: Mapping[str, str] | None = None,
) -> BatchWrites:
    """Classify every outcome of a batch and return the writes they imply.

    ``expired`` are tasks admission set aside past their ``expires_at``; ``pending_processing``
    the first attempts whose ``processing`` row was not written within the grace; ``events``
    whether lifecycle listeners are registered (every success then gets its executed copy);
    ``ended`` task ids whose outcome could not be recorded because of their own data, with
    the reason: each ends ``failed`` for good instead (``data_failure``).

    A failure whose own data cannot be recorded (``meta`` that is not JSON, a next attempt
    whose time cannot be computed) ends that task the same way, here, without raising."""
    plan = BatchWrites(now, children=list(outcome.batch_children), starts=list(outcome.batch_flows))
    successes, finals, retries, children, starts = (
        plan.successes,
        plan.finals,
        plan.retries,
        plan.children,
        plan.starts,
    )
    plain_successes = 0
    for o in outcome.outcomes:
        task = o.task
        if ended and task.id in ended:
            finals.append(data_failure(task, ended[task.id or ""], o.decision, now))
            continue
        if o.handed_off:
            plan.handoffs.append(_handed_off_copy(task, now))
            continue
        if o.ignored_reason is not None:
            stats = {
                **task.execution_stats,
                "ignored_reason": o.ignored_reason,
                "ignored_at": now.isoformat(),
            }
            plan.ignored.append(
                task.copy_with(
                    **{
                        "status": TaskStatus.IGNORED,
                        "updated_at": now,
                        "execution_stats": stats,
                    }
                )
            )
            continue
        decision = o.decision
        assert decision is not None
        if decision.kind == "success":
            children.extend(o.children)
            starts.extend(o.flows)
            if not (task.stored or task.entity or task.metadata or events):
                plain_successes += 1  # nothing to record: no copy needed (the hot path)
                continue
            result = decision.result
            if result is not None and decision.result_size > result_limit:
                plan.offloads.append(
                    Offload(len(successes), f"results/{task.id}", result, decision.result_size)
                )
            successes.append(
                task.copy_with(
                    **{
                        "status": TaskStatus.EXECUTED,
                        "updated_at": now,
                        "execution_result": result,
                    }
                )
            )
            plan.inline[task.id or ""] = result
            continue
        stats = dict(task.execution_stats)
        if decision.error is not None:
            stats["last_error"] = decision.error
            stats.pop("last_error_stack", None)
        if decision.stack is not None:
            stats["last_error_stack"] = decision.stack
        if decision.meta:
            problem = _not_json(decision.meta)
            if problem is not None:
                reason = f"fail(meta=...) holds a value that is not JSON: {problem}"
                finals.append(data_failure(task, reason, decision, now))
                continue
            stats.update(decision.meta)
            # the framework's counter is not the executor's to change: it bounds retries
            stats["retry_count"] = task.retry_count
        failed = task.copy_with(**{"execution_stats": stats, "updated_at": now})
        spec = o.spec
        retry_after = spec.retry_after if spec else DEFAULT_RETRY_AFTER
        try:
            retry = (
                plan_retry(
                    failed,
                    executor_retries=spec.retries if spec else 0,
                    executor_retry_after=retry_after,
                    now=now,
                )
                if decision.retry
                else None  # failed for good (PermanentFailure, fail(retry=False)): as if exhausted
            )
        except (ValueError, OverflowError, TypeError) as exc:  # e.g. retry_after=NaN
            base = task.retry_after if task.retry_after is not None else retry_after
            reason = f"the next attempt's time cannot be computed from retry_after={base!r}: {exc}"
            finals.append(data_failure(task, reason, decision, now))
            continue
        if retry is None:
            final_stats = {**stats, "failed_at": now.isoformat()}
            if not decision.retry:
                final_stats[PERMANENT_KEY] = True
            final = failed.copy_with(
                **{"status": TaskStatus.FAILED, "execution_stats": final_stats}
            )
            finals.append(final)
            children.extend(o.children)
            starts.extend(o.flows)
        else:
            # A retry is stored when a durable copy exists already (it must move on) or the
            # executor asked for failures to be kept; otherwise it travels by the scheduler.
            if task.stored or (spec is not None and spec.store_on_failure):
                retry = RetryPlan(retry.task.copy_with(**{"stored": True}), retry.at, retry.delay)
            retries.append(retry)
            plan.retried.append(failed)
    plan.plain_successes = plain_successes
    if plain_successes == len(outcome.outcomes) and not (
        expired or children or starts or pending_processing
    ):  # nothing to write: the common batch of plain tasks
        plan.nothing = True
        return plan
    plan.expired = [
        t.copy_with(**{"status": TaskStatus.EXPIRED, "updated_at": now}) for t in expired
    ]
    if pending_processing:
        retrying = {p.task.id for p in retries}
        plan.processing = [t for t in pending_processing if t.id in retrying]
    return plan


def data_failure(task: Task, reason: str, decision: Decision | None, now: datetime) -> Task:
    """The final ``failed`` copy of a task ended by its own data: ``reason`` in ``last_error``
    and ``data_error``, the executor's own error (if it failed) in ``executor_error``. What the
    outcome held (``meta``, a result, children, flows) is left out: it may be what failed."""
    stats = {
        **task.execution_stats,
        "last_error": reason,
        DATA_ERROR_KEY: reason,
        "failed_at": now.isoformat(),
    }
    if decision is not None and decision.kind == "fail" and decision.error is not None:
        stats["executor_error"] = decision.error
    return task.copy_with(
        **{
            "status": TaskStatus.FAILED,
            "updated_at": now,
            "execution_stats": stats,
            "execution_result": None,
            "processing_started_at": task.processing_started_at,
        }
    )


def _not_json(value: Any) -> str | None:
    """Why ``value`` cannot be stored as JSON (as the codec writes it), or ``None``."""
    try:
        pydantic_core.to_json(value)
    except (ValueError, TypeError, RecursionError) as exc:
        return str(exc) or type(exc).__name__
    return None


def _handed_off_copy(task: Task, now: datetime) -> Task:
    """The stored ``processing`` record of a handed-off task: its watchdog delivery finds it
    there if the worker dies before the task ends."""
    return task.copy_with(
        **{
            "stored": True,
            "status": TaskStatus.PROCESSING,
            "processing_started_at": now,
            "updated_at": now,
        }
    )


def terminal_row(task: Task) -> ProjectionItem:
    """The projection row of a task in a terminal status: executed with its result, the
    others with their reason."""
    stats = task.execution_stats
    if task.status is TaskStatus.EXECUTED:
        return task, "executed", None, task.execution_result
    if task.status is TaskStatus.IGNORED:
        return task, "ignored", str(stats.get("ignored_reason") or "ignored"), None
    if task.status is TaskStatus.EXPIRED:
        return task, "expired", "expired", None
    if task.status is TaskStatus.CANCELLED:
        return task, "cancelled", None, None
    return task, "failed", str(stats.get("last_error") or "task failed"), None


def step_result(task: Task) -> StepResult | None:
    """The flow step result a finished task reports, or ``None`` if it is not a flow step."""
    meta = flow_meta(task)
    if meta is None or "step_index" not in meta:
        return None
    index = int(meta["step_index"])
    if task.status is TaskStatus.EXECUTED:
        return StepResult(index, "success", task.execution_result)
    error = task.execution_stats.get("last_error") or task.execution_stats.get("ignored_reason")
    if task.status is TaskStatus.EXPIRED:
        error = "expired"
    return StepResult(index, "fail", error=str(error or "step failed"))


@dataclass(frozen=True, slots=True)
class JoinReport:
    """A flow's join task finished: its outcome goes onto the flow's entity row."""

    task: Task
    status: str
    error: str | None


@dataclass(slots=True)
class FlowReports:
    """What finished tasks report to their flows."""

    joins: list[JoinReport] = field(default_factory=list)
    steps: list[tuple[Task, StepResult]] = field(default_factory=list)
    """Final outcomes of flow steps, for their barriers (first write wins per step)."""


def flow_reports(finished: Iterable[Task]) -> FlowReports:
    """Sort finished tasks into flow joins and flow steps; other tasks report nothing."""
    reports = FlowReports()
    for task in finished:
        meta = flow_meta(task)
        if meta is None:
            continue
        if meta.get("is_join"):
            if task.status is TaskStatus.EXECUTED:
                reports.joins.append(JoinReport(task, "executed", None))
            else:
                error = task.execution_stats.get("last_error") or "join failed"
                reports.joins.append(JoinReport(task, "failed", str(error)))
            continue
        result = step_result(task)
        if result is not None:
            reports.steps.append((task, result))
    return reports
