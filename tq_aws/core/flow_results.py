"""``FlowResults``: the typed view of a join task's ``payload["flow_results"]``.

The join payload is plain JSON on the wire (``{"flow_id", "steps": [...], "aborted"?: true,
"timed_out"?: true}``, built by ``tq_aws.core.flows.build_join``); this model parses it so a
join executor reads ``results.succeeded`` instead of filtering dicts by hand. Unknown keys are
ignored, so a join written by a newer producer still parses.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from tq_aws.core.task import Task
from tq_aws.errors import NotAJoinTaskError

StepStatus = Literal["success", "fail"]
"""A step's final outcome: ``success`` (executed, with its ``result``) or ``fail`` (failed
after its retries, failed for good, ignored or expired, with its ``error``)."""


class FlowStepResult(BaseModel):
    """The final outcome of one flow step."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    step_index: int
    """The step's position in the ``steps`` given to ``start_flow``."""
    status: StepStatus
    result: Any = None
    """What the step's executor gave ``actions.success`` (``None`` for a failed step)."""
    error: str | None = None
    """Why the step failed: its last error, ``unknown_executor`` or ``expired``."""

    @property
    def ok(self) -> bool:
        """Whether the step succeeded."""
        return self.status == "success"


class FlowResults(BaseModel):
    """What a flow's join task receives.

    Example:
        >>> @app.executor("orders", "all-charged")
        ... async def joined(task, actions):
        ...     results = FlowResults.from_task(task)
        ...     total = sum(step.result["amount"] for step in results.succeeded)
        ...     if results.failed:
        ...         actions.log.warning("steps %s failed", [s.step_index for s in results.failed])
        ...     actions.success(task, {"total": total})
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    flow_id: str
    steps: list[FlowStepResult]
    """Every step with a final outcome when the flow closed, sorted by ``step_index``. With
    ``aborted`` or ``timed_out`` the steps still running then are absent."""
    aborted: bool = False
    """The failure policy closed the flow early (``failure_policy="abort"``, or more failures
    than tolerated)."""
    timed_out: bool = False
    """The flow's ``timeout`` passed before every step had a final outcome."""

    @property
    def succeeded(self) -> list[FlowStepResult]:
        """The steps that succeeded, by index."""
        return [s for s in self.steps if s.status == "success"]

    @property
    def failed(self) -> list[FlowStepResult]:
        """The steps that failed, by index."""
        return [s for s in self.steps if s.status == "fail"]

    @property
    def state(self) -> Literal["joined", "aborted", "timed_out"]:
        """How the flow closed (as ``flow_status(flow_id).state`` says)."""
        if self.aborted:
            return "aborted"
        if self.timed_out:
            return "timed_out"
        return "joined"

    def step(self, index: int) -> FlowStepResult | None:
        """The outcome of step ``index``, or ``None`` if it had none when the flow closed."""
        for s in self.steps:
            if s.step_index == index:
                return s
        return None

    @classmethod
    def from_payload(cls, payload: Any) -> FlowResults:
        """Parse a join task's payload (``{"flow_results": {...}}``).

        Raises:
            NotAJoinTaskError: the payload has no ``flow_results`` object.
            pydantic.ValidationError: ``flow_results`` is not in the join's shape.
        """
        if not isinstance(payload, dict) or not isinstance(payload.get("flow_results"), dict):
            raise NotAJoinTaskError(
                "the payload has no 'flow_results' object: FlowResults parses the payload of "
                "a flow's join task (the executor registered on start_flow's join=)"
            )
        return cls.model_validate(payload["flow_results"])

    @classmethod
    def from_task(cls, task: Task) -> FlowResults:
        """Parse the payload of the join task ``task`` (see ``from_payload``)."""
        try:
            return cls.from_payload(task.payload)
        except NotAJoinTaskError as exc:
            raise NotAJoinTaskError(
                f"task {task.id} ({task.queue_id}/{task.type}): {exc}"
            ) from None
