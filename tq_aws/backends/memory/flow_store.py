"""Memory flow store: each method runs without awaiting, so each is atomic on the event loop,
as the DynamoDB store's conditional writes and transactions are."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from datetime import datetime

from tq_aws.core.flows import FlowRecord, FlowState, RecordOutcome, StepResult


class MemoryFlowStore:
    """Barriers by flow id, and step results by index until the join is dispatched."""

    def __init__(self) -> None:
        self._flows: dict[str, FlowRecord] = {}
        self._steps: dict[str, dict[int, StepResult]] = {}
        self.writes = 0

    async def init(self, record: FlowRecord) -> bool:
        if record.flow_id in self._flows:
            return False
        self._flows[record.flow_id] = copy.copy(record)
        self._steps[record.flow_id] = {}
        self.writes += 1
        return True

    async def get(self, flow_id: str) -> FlowRecord | None:
        record = self._flows.get(flow_id)
        return None if record is None else copy.copy(record)

    async def record_steps(
        self, flow_id: str, results: Sequence[StepResult]
    ) -> list[RecordOutcome]:
        record = self._flows.get(flow_id)
        if record is None:
            return [RecordOutcome.UNKNOWN] * len(results)
        steps = self._steps.setdefault(flow_id, {})
        out: list[RecordOutcome] = []
        for result in results:
            if not 0 <= result.step_index < record.total:
                raise ValueError(f"flow {flow_id}: step_index {result.step_index} out of range")
            if result.step_index in steps:
                out.append(RecordOutcome.DUPLICATE)
            elif record.state is not FlowState.OPEN:
                out.append(RecordOutcome.CLOSED)
            else:
                steps[result.step_index] = result
                if result.status == "success":
                    record.succeeded += 1
                else:
                    record.failed += 1
                self.writes += 2  # the step item and the barrier, in one transaction
                out.append(RecordOutcome.RECORDED)
        return out

    async def results(self, flow_id: str) -> list[StepResult]:
        steps = self._steps.get(flow_id, {})
        return [steps[i] for i in sorted(steps)]

    async def close(
        self, flow_id: str, to: FlowState, *, expected_completed: int, now: datetime
    ) -> bool:
        record = self._flows.get(flow_id)
        if record is None or record.state is not FlowState.OPEN:
            return False
        if record.completed != expected_completed:
            return False
        record.state = to
        record.finished_at = now
        self.writes += 1
        return True

    async def release_results(self, flow_id: str) -> None:
        record = self._flows.get(flow_id)
        if record is not None and record.state is not FlowState.OPEN:
            self._steps.pop(flow_id, None)

    def step_count(self, flow_id: str) -> int:
        """Step results held for a flow (0 once released)."""
        return len(self._steps.get(flow_id, {}))
