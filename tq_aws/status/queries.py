"""What the status pages show, read from an app's stores: the overview of recent failures and
flows, an entity's tasks and flows, a flow with its counters and steps, a stored task, the
poison records. Each query is async; the routes run them on the app's private loop.

Reads only: one ``recent`` page (index queries) for the overview, one entity query, one flow
read (plus its step results, or its join task once closed), one task read, one poison listing.
Flow rows get their counters from the flow store, one read per flow shown.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Literal

from tq_aws.core.flows import FlowState, FlowStatus
from tq_aws.core.poison import PoisonRecord
from tq_aws.core.projections import ProjectionRow
from tq_aws.core.recent import RecentFilter
from tq_aws.core.task import Entity, Task
from tq_aws.engine import blobs
from tq_aws.engine.engine import Engine
from tq_aws.engine.operator import redrive_task
from tq_aws.status.positions import SourcePosition, source_position

StepState = Literal["succeeded", "failed", "pending"]


@dataclass(frozen=True, slots=True)
class Overview:
    """One page of the overview: rows newest first, the next page's cursor, flow counters."""

    rows: list[ProjectionRow]
    cursor: str | None
    where: RecentFilter
    flows: dict[str, FlowStatus]


@dataclass(frozen=True, slots=True)
class EntityView:
    """An entity's task rows and flow rows, newest first, with each flow's counters."""

    entity: Entity
    tasks: list[ProjectionRow]
    flows: list[ProjectionRow]
    progress: dict[str, FlowStatus]


@dataclass(frozen=True, slots=True)
class Step:
    """One step of a flow as the flow page shows it."""

    index: int
    state: StepState
    result: Any = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class FlowView:
    """A flow: its status (counters, state, times), its join task, and its steps."""

    status: FlowStatus
    steps: list[Step]
    join: Task | None
    failed_only: bool


@dataclass(frozen=True, slots=True)
class PoisonView:
    """A poison record, where it came from, and what a redrive would add (or has added)."""

    record: PoisonRecord
    source: SourcePosition
    task_id: str | None
    """The id of the task its bytes decode to now, or ``None`` while they still do not."""
    redriven: str | None
    """The status of that task in the task store when a redrive (or anything) stored it."""


class StatusQueries:
    """The status pages' reads over one app (``Engine``)."""

    def __init__(self, engine: Engine):
        self._engine = engine

    async def overview(
        self, where: RecentFilter, *, limit: int = 50, cursor: str | None = None
    ) -> Overview:
        """Recent failed task rows and flow rows across entities, newest first."""
        page = await self._engine.projection_store.recent(where, limit=limit, cursor=cursor)
        rows = [await self._resolved(r) for r in page.rows]
        return Overview(rows, page.cursor, where, await self._progress(rows))

    async def entity(self, entity: Entity) -> EntityView | None:
        """The entity's rows newest first (``None``: no task or flow of it is known)."""
        rows = await self._engine.entity_status(entity)
        if not rows:
            return None
        rows.sort(key=lambda r: (r.created_at, r.task_id), reverse=True)
        tasks = [r for r in rows if r.kind == "task"]
        flows = [r for r in rows if r.kind == "flow"]
        return EntityView(entity, tasks, flows, await self._progress(flows))

    async def flow_status(self, flow_id: str) -> FlowStatus | None:
        return await self._engine.flow_status(flow_id)

    async def flow(self, flow_id: str, *, failed_only: bool = False) -> FlowView | None:
        """The flow with its join task and its steps (``None``: unknown flow). An open flow's
        steps come from the flow store; a closed flow's from its join task's payload (the
        flow store drops the step results once the join is out)."""
        status = await self._engine.flow_status(flow_id)
        if status is None:
            return None
        join = await self._engine.get_task(status.join_task_id)
        if status.state == FlowState.OPEN.value:
            results = await self._engine.flow_store.results(flow_id)
            recorded: list[dict[str, Any]] = [r.as_payload() for r in results]
        else:
            recorded = _join_steps(join)
        steps = _steps(status.total, recorded)
        if failed_only:
            steps = [s for s in steps if s.state == "failed"]
        return FlowView(status, steps, join, failed_only)

    async def task(self, task_id: str) -> Task | None:
        """The stored task (its result read back from the blob store), or ``None``."""
        return await self._engine.get_task(task_id)

    async def poison(self, limit: int = 100) -> list[PoisonView]:
        """The poison records newest first, each with its source position and what its bytes
        decode to now."""
        records = await self._engine.poison_records(limit)
        decoded: list[str | None] = [_decodes_to(r) for r in records]
        stored = await asyncio.gather(
            *(self._engine.task_store.get(tid) for tid in decoded if tid is not None)
        )
        by_id = {t.id: t.status.value for t in stored if t is not None}
        return [
            PoisonView(
                record,
                source_position(record.queue_id, record.position),
                task_id,
                by_id.get(task_id) if task_id is not None else None,
            )
            for record, task_id in zip(records, decoded, strict=True)
        ]

    async def _progress(self, rows: list[ProjectionRow]) -> dict[str, FlowStatus]:
        flow_ids = [r.task_id for r in rows if r.kind == "flow"]
        found = await asyncio.gather(*(self._engine.flow_status(f) for f in flow_ids))
        return {f: s for f, s in zip(flow_ids, found, strict=True) if s is not None}

    async def _resolved(self, row: ProjectionRow) -> ProjectionRow:
        if not blobs.is_blob_ref(row.result):
            return row
        value = await blobs.resolve(self._engine.blob_store, row.result)
        return row.model_copy(update={"result": value})


def _join_steps(join: Task | None) -> list[dict[str, Any]]:
    payload = join.payload if join is not None else None
    flow_results = payload.get("flow_results") if isinstance(payload, dict) else None
    steps = flow_results.get("steps") if isinstance(flow_results, dict) else None
    return [s for s in steps if isinstance(s, dict)] if isinstance(steps, list) else []


def _steps(total: int, recorded: list[dict[str, Any]]) -> list[Step]:
    by_index: dict[int, dict[str, Any]] = {}
    for step in recorded:
        index = step.get("step_index")
        if isinstance(index, int):
            by_index[index] = step
    out = []
    for index in range(total):
        found = by_index.get(index)
        if found is None:
            out.append(Step(index, "pending"))
        elif found.get("status") == "success":
            out.append(Step(index, "succeeded", result=found.get("result")))
        else:
            out.append(Step(index, "failed", error=found.get("error")))
    return out


def _decodes_to(record: PoisonRecord) -> str | None:
    task = redrive_task(record, record.seen_at)
    return None if task is None else task.id
