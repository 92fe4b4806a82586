"""Flows: fan out N step tasks, fan in to one join task when the policy says so.

This module is pure: the flow's definition, its barrier state, the step results, the decision
of when a flow closes and the join task it closes with. The FlowStore port keeps the state with
conditional writes; the engine's flow coordinator drives it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from tq_aws.core.task import Entity, Task
from tq_aws.errors import TaskValidationError
from tq_aws.ids import derived_id

FLOW_META = "flow_meta"
TIMEOUT_TYPE = "tq.flow.timeout"


class Join(BaseModel):
    """Where a flow's join task goes: the executor registered on ``(queue_id, type)``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    queue_id: str = Field(min_length=1)
    type: str = Field(min_length=1)


class FlowState(StrEnum):
    """A flow is open until it closes one way, once."""

    OPEN = "open"
    JOINED = "joined"
    ABORTED = "aborted"
    TIMED_OUT = "timed_out"


FailurePolicy = Literal["continue", "abort"]


@dataclass(slots=True)
class FlowRecord:
    """The barrier of one flow: definition and counters (small, whatever the step count)."""

    flow_id: str
    total: int
    join: Join
    failure_policy: FailurePolicy
    tolerated_failures: int | None
    tolerated_failure_percentage: float | None
    started_at: datetime
    deadline: datetime | None = None
    entity: Entity | None = None
    log_context: dict[str, str] = field(default_factory=dict)
    parent_task_id: str | None = None
    state: FlowState = FlowState.OPEN
    succeeded: int = 0
    failed: int = 0
    finished_at: datetime | None = None

    @property
    def completed(self) -> int:
        return self.succeeded + self.failed

    @property
    def join_task_id(self) -> str:
        return join_task_id(self.flow_id)

    def failure_threshold(self) -> float | None:
        """Abort once MORE than this many steps failed (``None``: never abort)."""
        if self.tolerated_failures is not None:
            return float(self.tolerated_failures)
        if self.tolerated_failure_percentage is not None:
            return self.total * self.tolerated_failure_percentage / 100.0
        if self.failure_policy == "abort":
            return 0.0
        return None


@dataclass(slots=True, frozen=True)
class StepResult:
    """The first terminal outcome of one step."""

    step_index: int
    status: Literal["success", "fail"]
    result: Any = None
    error: str | None = None

    def as_payload(self) -> dict[str, Any]:
        out: dict[str, Any] = {"step_index": self.step_index, "status": self.status}
        if self.status == "success":
            out["result"] = self.result
        else:
            out["error"] = self.error
        return out


class RecordOutcome(StrEnum):
    """What recording one step result did."""

    RECORDED = "recorded"
    DUPLICATE = "duplicate"
    """This step already had a result (first write wins)."""
    CLOSED = "closed"
    """The flow is no longer open; the result was not recorded."""
    UNKNOWN = "unknown"
    """No such flow."""


@dataclass(slots=True, frozen=True)
class FlowStatus:
    """What ``TaskQueue.flow_status`` returns."""

    flow_id: str
    state: str
    total: int
    succeeded: int
    failed: int
    pending: int
    started_at: datetime
    finished_at: datetime | None
    join_task_id: str
    failure_policy: FailurePolicy
    deadline: datetime | None
    join: Join
    """Where the join goes (queue id and type)."""
    entity: Entity | None
    parent_task_id: str | None
    """The task whose executor started the flow (``None`` for a batch executor without
    ``parent=``)."""


def status_of(record: FlowRecord) -> FlowStatus:
    return FlowStatus(
        flow_id=record.flow_id,
        state=record.state.value,
        total=record.total,
        succeeded=record.succeeded,
        failed=record.failed,
        pending=record.total - record.completed,
        started_at=record.started_at,
        finished_at=record.finished_at,
        join_task_id=record.join_task_id,
        failure_policy=record.failure_policy,
        deadline=record.deadline,
        join=record.join,
        entity=record.entity,
        parent_task_id=record.parent_task_id,
    )


def decide(record: FlowRecord, *, timed_out: bool = False) -> FlowState | None:
    """The state an open flow must move to now, or ``None`` to stay open."""
    if record.state is not FlowState.OPEN:
        return None
    threshold = record.failure_threshold()
    if threshold is not None and record.failed > threshold:
        return FlowState.ABORTED
    if record.completed >= record.total:
        return FlowState.JOINED
    if timed_out:
        return FlowState.TIMED_OUT
    return None


def join_task_id(flow_id: str) -> str:
    return derived_id(flow_id, "join")


def timeout_task_id(flow_id: str) -> str:
    return derived_id(flow_id, "timeout")


def flow_meta(task: Task) -> dict[str, Any] | None:
    meta = task.metadata.get(FLOW_META)
    return meta if isinstance(meta, dict) else None


def build_join(
    record: FlowRecord, results: Sequence[StepResult], state: FlowState, now: datetime
) -> Task:
    """The flow's one join task: id derived from the flow id, steps sorted by index."""
    flow_results: dict[str, Any] = {
        "flow_id": record.flow_id,
        "steps": [r.as_payload() for r in sorted(results, key=lambda r: r.step_index)],
    }
    if state is FlowState.ABORTED:
        flow_results["aborted"] = True
    elif state is FlowState.TIMED_OUT:
        flow_results["timed_out"] = True
    metadata: dict[str, Any] = {FLOW_META: {"flow_id": record.flow_id, "is_join": True}}
    if record.log_context:
        metadata["log_context"] = dict(record.log_context)
    return Task(
        id=record.join_task_id,
        type=record.join.type,
        queue_id=record.join.queue_id,
        payload={"flow_results": flow_results},
        execute_at=now,
        force_store=True,
        metadata=metadata,
        entity=record.entity,
    )


def build_timeout_sentinel(record: FlowRecord) -> Task:
    """The framework's own deadline task, delivered on the join's queue at the deadline."""
    return Task(
        id=timeout_task_id(record.flow_id),
        type=TIMEOUT_TYPE,
        queue_id=record.join.queue_id,
        payload={"flow_id": record.flow_id},
        execute_at=record.deadline,
        metadata={FLOW_META: {"flow_id": record.flow_id, "is_timeout": True}},
    )


@dataclass(slots=True)
class FlowStart:
    """A flow an executor started: its barrier and its step tasks, dispatched after the attempt
    (``start_flow`` gives a ``tq_aws.core.flow_steps.FlowSteps``: built as they go out)."""

    record: FlowRecord
    steps: Sequence[Task]


def validate_flow_options(
    steps: Sequence[Task],
    failure_policy: object,
    tolerated_failures: int | None,
    tolerated_failure_percentage: float | None,
    timeout: float | None,
) -> None:
    """Raise ``TaskValidationError`` naming the option at fault."""
    if not steps:
        raise TaskValidationError(
            "start_flow(steps=[]): a flow needs at least one step", field="steps"
        )
    if failure_policy not in ("continue", "abort"):
        raise TaskValidationError(
            f"start_flow(failure_policy={failure_policy!r}): use 'continue' or 'abort'",
            field="failure_policy",
        )
    if tolerated_failures is not None and (
        isinstance(tolerated_failures, bool)
        or not isinstance(tolerated_failures, int)
        or tolerated_failures < 0
    ):
        raise TaskValidationError(
            f"start_flow(tolerated_failures={tolerated_failures!r}): give a whole number >= 0",
            field="tolerated_failures",
        )
    if tolerated_failure_percentage is not None and not (
        isinstance(tolerated_failure_percentage, int | float)
        and 0 <= tolerated_failure_percentage <= 100
    ):
        raise TaskValidationError(
            "start_flow(tolerated_failure_percentage="
            f"{tolerated_failure_percentage!r}): give a number from 0 to 100",
            field="tolerated_failure_percentage",
        )
    if tolerated_failures is not None and tolerated_failure_percentage is not None:
        raise TaskValidationError(
            "start_flow: give tolerated_failures or tolerated_failure_percentage, not both",
            field="tolerated_failures",
        )
    if timeout is not None and (not isinstance(timeout, int | float) or timeout <= 0):
        raise TaskValidationError(
            f"start_flow(timeout={timeout!r}): give seconds > 0, or None for no deadline",
            field="timeout",
        )
