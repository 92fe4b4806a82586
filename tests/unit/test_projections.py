"""Entity status projections: when rows are written, how many calls, and monotonic status."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.events import USER, make_task
from tq_aws import Actions, Entity, ProjectionRow, Task, TaskQueue
from tq_aws.backends.memory import MemoryProjectionStore
from tq_aws.core.projections import RANKS, build_row
from tq_aws.testing import ManualClock


class SpyProjectionStore(MemoryProjectionStore):
    """The memory store, keeping the statuses of every upsert call."""

    def __init__(self) -> None:
        super().__init__()
        self.log: list[list[tuple[str, str]]] = []

    async def upsert(self, rows: Sequence[ProjectionRow]) -> None:
        self.log.append([(r.task_id, r.status) for r in rows])
        await super().upsert(rows)

    def statuses(self) -> list[list[str]]:
        return [sorted({s for _, s in call}) for call in self.log]


@pytest.fixture
def spy() -> SpyProjectionStore:
    return SpyProjectionStore()


@pytest.fixture
def papp(clock: ManualClock, spy: SpyProjectionStore) -> TaskQueue:
    return TaskQueue(clock=clock, projection_store=spy, worker_id="w-1")


def test_status_ranks() -> None:
    assert RANKS["scheduled"] < RANKS["processing"]
    terminal = ("executed", "failed", "ignored", "expired", "cancelled")
    assert {RANKS[s] for s in terminal} == {2}
    assert RANKS["processing"] < 2


async def test_statuses_move_scheduled_processing_executed(papp: TaskQueue) -> None:
    seen_inside: list[list[tuple[str, str]]] = []

    @papp.executor("q", "t")
    async def run(task: Task, actions: Actions) -> None:
        rows = await papp.entity_status(USER)
        seen_inside.append([(r.task_id, r.status) for r in rows])
        actions.success(task, {"ok": True})

    [tid] = await papp.add_tasks([make_task(entity=USER)])
    rows = await papp.entity_status(USER)
    assert [(r.task_id, r.status, r.error, r.result) for r in rows] == [
        (tid, "scheduled", None, None)
    ]
    await papp.run_until_idle()
    assert seen_inside == [[(tid, "processing")]]
    rows = await papp.entity_status(USER)
    assert [(r.task_id, r.status, r.error, r.result) for r in rows] == [
        (tid, "executed", None, {"ok": True})
    ]
    assert rows[0].entity == USER
    assert (rows[0].task_type, rows[0].queue_id) == ("t", "q")


async def test_processing_is_written_on_the_first_attempt_only(
    papp: TaskQueue, clock: ManualClock, spy: SpyProjectionStore
) -> None:
    @papp.executor("q", "t", retries=2, retry_after=1)
    async def run(task: Task, actions: Actions) -> None:
        if task.retry_count < 2:
            actions.fail(task, "flaky")
        else:
            actions.success(task)

    await papp.add_tasks([make_task(entity=USER)])
    for _ in range(3):
        await papp.run_until_idle()
        clock.advance(seconds=10)
    # Retried attempts write nothing; the final outcome does.
    assert spy.statuses() == [["scheduled"], ["processing"], ["executed"]]


async def test_final_failure_row_carries_the_error(
    papp: TaskQueue, spy: SpyProjectionStore
) -> None:
    @papp.executor("q", "t")
    async def run(task: Task, actions: Actions) -> None:
        if task.payload == "message":
            actions.fail(task, "card declined")
        else:
            actions.fail(task)

    ids = await papp.add_tasks(
        [make_task(payload="message", entity=USER), make_task(payload="bare", entity=USER)]
    )
    await papp.run_until_idle()
    rows = {r.task_id: r for r in await papp.entity_status(USER)}
    assert (rows[ids[0]].status, rows[ids[0]].error) == ("failed", "card declined")
    assert (rows[ids[1]].status, rows[ids[1]].error) == ("failed", "task failed")


async def test_tasks_without_entity_never_call_the_store(
    papp: TaskQueue, spy: SpyProjectionStore
) -> None:
    @papp.executor("q", "t")
    async def run(task: Task, actions: Actions) -> None:
        actions.success(task)

    await papp.add_tasks([make_task() for _ in range(5)])
    await papp.run_until_idle()
    assert spy.calls == 0


async def test_one_call_per_stage_for_a_batch(papp: TaskQueue, spy: SpyProjectionStore) -> None:
    @papp.executor("q", "t")
    async def run(task: Task, actions: Actions) -> None:
        actions.success(task)

    tasks = [
        make_task(entity=Entity(id=f"u-{n % 7}", type="user")) if n % 10 < 3 else make_task()
        for n in range(100)
    ]
    await papp.add_tasks(tasks)
    assert await papp.run_until_idle() == 1
    assert spy.statuses() == [["scheduled"], ["processing"], ["executed"]]
    assert [len(call) for call in spy.log] == [30, 30, 30]
    assert spy.calls == 3


async def test_one_terminal_call_for_a_batch_with_mixed_outcomes(
    papp: TaskQueue, spy: SpyProjectionStore
) -> None:
    @papp.executor("q", "t")
    async def run(task: Task, actions: Actions) -> None:
        if task.payload == "ok":
            actions.success(task)
        else:
            actions.fail(task, "no")

    await papp.add_tasks(
        [
            make_task(payload="ok", entity=USER),
            make_task(payload="bad", entity=USER),
            make_task("unknown", entity=USER),
        ]
    )
    await papp.run_until_idle()
    statuses = [sorted(s for _, s in call) for call in spy.log]
    assert statuses == [
        ["scheduled"] * 3,
        ["processing"] * 3,
        ["executed", "failed", "ignored"],
    ]


async def test_include_payload_copies_the_payload(clock: ManualClock) -> None:
    app = TaskQueue(clock=clock, include_payload=True)

    @app.executor("q", "t")
    async def run(task: Task, actions: Actions) -> None:
        actions.success(task)

    await app.add_tasks([make_task(payload={"to": "a@b.c"}, entity=USER)])
    await app.run_until_idle()
    [row] = await app.entity_status(USER)
    assert row.payload == {"to": "a@b.c"}


async def test_payload_is_left_out_by_default(papp: TaskQueue) -> None:
    await papp.add_tasks([make_task(payload={"secret": 1}, entity=USER)])
    [row] = await papp.entity_status(USER)
    assert row.payload is None


async def test_entity_status_is_per_entity_and_oldest_first(
    papp: TaskQueue, clock: ManualClock
) -> None:
    other = Entity(id="u-2", type="user")
    same_id_other_type = Entity(id="u-1", type="team")
    first = await papp.add_tasks([make_task(entity=USER)])
    clock.advance(seconds=1)
    second = await papp.add_tasks([make_task(entity=other), make_task(entity=USER)])
    clock.advance(seconds=1)
    third = await papp.add_tasks([make_task(entity=same_id_other_type)])
    rows = await papp.entity_status(USER)
    assert [r.task_id for r in rows] == [first[0], second[1]]
    assert [r.task_id for r in await papp.entity_status(other)] == [second[0]]
    assert [r.task_id for r in await papp.entity_status(same_id_other_type)] == third
    assert await papp.entity_status(Entity(id="nobody", type="user")) == []


async def test_projection_store_errors_never_disturb_processing(
    papp: TaskQueue, spy: SpyProjectionStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(rows: object) -> None:
        raise ConnectionError("projection table down")

    monkeypatch.setattr(spy, "upsert", broken)

    @papp.executor("q", "t")
    async def run(task: Task, actions: Actions) -> None:
        actions.success(task, "fine")

    [tid] = await papp.add_tasks([make_task(entity=USER, force_store=True)])
    await papp.run_until_idle()
    record = await papp.get_task(tid)
    assert record is not None and record.status == "executed"
    assert papp.stats.projection_errors == 3  # scheduled, processing, executed


# -- monotonic rows ------------------------------------------------------------------------

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _row(status: str, second: float, task_id: str = "t-1") -> ProjectionRow:
    task = make_task(id=task_id, entity=USER, created_at=T0)
    row = build_row(task, status, T0 + timedelta(seconds=second))
    assert row is not None
    return row


async def test_late_scheduled_never_overwrites_a_terminal_row() -> None:
    store = MemoryProjectionStore()
    await store.upsert([_row("executed", 2)])
    await store.upsert([_row("scheduled", 3)])
    await store.upsert([_row("processing", 4)])
    [row] = await store.for_entity(USER)
    assert row.status == "executed"


async def test_first_terminal_status_stays() -> None:
    store = MemoryProjectionStore()
    await store.upsert([_row("processing", 1)])
    await store.upsert([_row("cancelled", 2)])
    await store.upsert([_row("executed", 3)])
    await store.upsert([_row("failed", 4)])
    [row] = await store.for_entity(USER)
    assert (row.status, row.updated_at) == ("cancelled", T0 + timedelta(seconds=2))


async def test_newer_non_terminal_row_replaces_an_older_one_of_the_same_rank() -> None:
    store = MemoryProjectionStore()
    await store.upsert([_row("processing", 5)])
    await store.upsert([_row("processing", 3)])
    [row] = await store.for_entity(USER)
    assert row.updated_at == T0 + timedelta(seconds=5)
    await store.upsert([_row("processing", 7)])
    [row] = await store.for_entity(USER)
    assert row.updated_at == T0 + timedelta(seconds=7)


_writes = st.lists(
    st.tuples(st.sampled_from(sorted(RANKS)), st.integers(min_value=0, max_value=20)),
    min_size=1,
    max_size=12,
)


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(writes=_writes, duplicate=st.data())
def test_any_order_of_writes_ends_at_max_rank_and_first_terminal(
    writes: list[tuple[str, int]], duplicate: st.DataObject
) -> None:
    # Replay some writes again at random places, as duplicate deliveries would.
    extra = duplicate.draw(st.lists(st.sampled_from(writes), max_size=4))
    for item in extra:
        at = duplicate.draw(st.integers(min_value=0, max_value=len(writes)))
        writes = [*writes[:at], item, *writes[at:]]
    store = MemoryProjectionStore()

    async def apply() -> list[ProjectionRow]:
        for status, second in writes:
            await store.upsert([_row(status, second)])
        return await store.for_entity(USER)

    [row] = asyncio.run(apply())
    top = max(RANKS[s] for s, _ in writes)
    assert row.rank == top
    terminal = [(s, t) for s, t in writes if RANKS[s] == 2]
    if terminal:
        status, second = terminal[0]
        assert (row.status, row.updated_at) == (status, T0 + timedelta(seconds=second))
    else:
        newest = max(t for s, t in writes if RANKS[s] == top)
        assert row.updated_at == T0 + timedelta(seconds=newest)
        assert row.status == next(s for s, _ in writes if RANKS[s] == top)


def test_a_row_from_a_newer_writer_reads_with_its_unknown_fields_skipped() -> None:
    """A rolling deploy: rows written by a newer release carry fields this one does not know."""
    from datetime import UTC, datetime

    from tq_aws.core.projections import ProjectionRow

    now = datetime(2026, 1, 1, tzinfo=UTC).isoformat()
    doc = {
        "entity_id": "u-1",
        "entity_type": "user",
        "task_id": "t-1",
        "task_type": "send",
        "queue_id": "q",
        "status": "executed",
        "rank": 2,
        "version": 1,
        "created_at": now,
        "updated_at": now,
        "a_field_of_a_later_release": {"x": 1},
    }
    row = ProjectionRow.model_validate(doc)
    assert row.status == "executed" and not hasattr(row, "a_field_of_a_later_release")
