"""The DynamoDB flow store's step batches under crashes, redeliveries and racing writers.

A call puts its step items first and counts them in one transaction after (``flow_record``).
These tests crash a call in between (and after, and while it deletes), replay the steps as a
redelivery would, race a writer against one that adopts its steps, and run many recorders of
one flow at once with crashes (on the serial moto server), checking each time that every step
counts once, that ``results`` returns exactly the counted steps, and that a join read at the
close carries exactly those.
"""

from __future__ import annotations

import asyncio
import random
import threading
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.aws.test_dynamodb_races import race
from tests.support.aws import REGION, unique
from tq_aws import Actions, Task, TaskQueue
from tq_aws.backends.aws.clients import AwsSettings
from tq_aws.backends.aws.dynamodb import DynamoFlowStore, ensure_table, flow_record
from tq_aws.core.flows import FlowRecord, FlowState, Join, RecordOutcome, StepResult
from tq_aws.testing import FaultInjector, InjectedCrash, ManualClock, run_until_idle_through_crashes

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
R = RecordOutcome
Recorder = flow_record.StepRecorder


def flow(total: int, flow_id: str = "f-1") -> FlowRecord:
    return FlowRecord(
        flow_id=flow_id,
        total=total,
        join=Join(queue_id="q", type="join"),
        failure_policy="continue",
        tolerated_failures=None,
        tolerated_failure_percentage=None,
        started_at=T0,
    )


def ok(index: int, by: str = "first") -> StepResult:
    return StepResult(index, "success", {"i": index, "by": by})


def bad(index: int, by: str = "first") -> StepResult:
    return StepResult(index, "fail", error=f"e{index} {by}")


@pytest.fixture
def store(moto: None) -> DynamoFlowStore:
    settings = AwsSettings(region=REGION, max_attempts=1)
    table = unique("tq-steps")
    ensure_table(table, settings)
    return DynamoFlowStore(table, settings, flow_steps="puts")


def raw_step(store: DynamoFlowStore, index: int, flow_id: str = "f-1") -> dict[str, Any] | None:
    item = store.models.connection.get_item(f"FLOW#{flow_id}", f"STEP#{index:08d}").get("Item")
    return None if item is None else dict(item)


async def counted(store: DynamoFlowStore, flow_id: str = "f-1") -> tuple[int, list[StepResult]]:
    """The barrier's count and the results, checked to agree."""
    record = await store.get(flow_id)
    assert record is not None
    results = await store.results(flow_id)
    assert record.completed == len(results)
    assert record.succeeded == sum(1 for r in results if r.status == "success")
    return record.completed, results


class Crashes:
    """Crash points inside ``StepRecorder``, armed one call at a time."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch):
        self.before_commit = 0
        self.after_commit = 0
        self.before_delete = 0
        self.on_commit: Any = None
        real_transact = Recorder._transact_sync
        real_delete = Recorder._delete

        def transact(recorder: Any, plan: Any) -> Any:
            if self.on_commit is not None:
                self.on_commit(recorder)
            if self.before_commit:
                self.before_commit -= 1
                raise InjectedCrash("crash between the puts and the commit")
            reasons = real_transact(recorder, plan)
            if reasons is None and self.after_commit:
                self.after_commit -= 1
                raise InjectedCrash("crash after the commit")
            return reasons

        async def delete(recorder: Any, index: int) -> None:
            if self.before_delete:
                self.before_delete -= 1
                raise InjectedCrash("crash before a delete")
            await real_delete(recorder, index)

        monkeypatch.setattr(Recorder, "_transact_sync", transact)
        monkeypatch.setattr(Recorder, "_delete", delete)


@pytest.fixture
def crashes(monkeypatch: pytest.MonkeyPatch) -> Crashes:
    return Crashes(monkeypatch)


async def test_a_crash_between_the_puts_and_the_commit(
    store: DynamoFlowStore, crashes: Crashes
) -> None:
    await store.init(flow(6))
    steps = [ok(0), bad(1), ok(2), ok(3)]
    crashes.before_commit = 1
    with pytest.raises(InjectedCrash):
        await store.record_steps("f-1", steps)
    assert raw_step(store, 0) is not None  # stored, not counted
    assert await counted(store) == (0, [])
    # the redelivery: the same steps, run again with other results; the first write wins
    again = [ok(0, "again"), ok(1, "again"), ok(2, "again"), ok(3, "again")]
    assert await store.record_steps("f-1", again) == [R.DUPLICATE] * 4
    assert await counted(store) == (4, steps)
    assert await store.record_steps("f-1", again) == [R.DUPLICATE] * 4
    assert await counted(store) == (4, steps)


async def test_a_redelivery_in_other_batches(store: DynamoFlowStore, crashes: Crashes) -> None:
    await store.init(flow(6))
    crashes.before_commit = 1
    with pytest.raises(InjectedCrash):
        await store.record_steps("f-1", [ok(0), ok(1), ok(2), ok(3)])
    assert await store.record_steps("f-1", [ok(2, "b"), ok(4), bad(5)]) == [
        R.DUPLICATE,
        R.RECORDED,
        R.RECORDED,
    ]
    assert await counted(store) == (3, [ok(2), ok(4), bad(5)])
    assert await store.record_steps("f-1", [ok(3, "c")]) == [R.DUPLICATE]
    assert (
        await store.record_steps("f-1", [ok(0, "d"), ok(1, "d"), ok(4, "d")]) == [R.DUPLICATE] * 3
    )
    assert await counted(store) == (6, [ok(0), ok(1), ok(2), ok(3), ok(4), bad(5)])


async def test_a_crash_after_the_commit(store: DynamoFlowStore, crashes: Crashes) -> None:
    await store.init(flow(4))
    crashes.after_commit = 1
    with pytest.raises(InjectedCrash):
        await store.record_steps("f-1", [ok(0), ok(1), ok(2)])
    assert await counted(store) == (3, [ok(0), ok(1), ok(2)])
    assert await store.record_steps("f-1", [ok(0), ok(1), ok(2), ok(3)]) == [
        R.DUPLICATE,
        R.DUPLICATE,
        R.DUPLICATE,
        R.RECORDED,
    ]
    assert await counted(store) == (4, [ok(0), ok(1), ok(2), ok(3)])


async def test_the_flow_closes_over_steps_stored_but_not_counted(
    store: DynamoFlowStore, crashes: Crashes
) -> None:
    await store.init(flow(5))
    await store.record_steps("f-1", [ok(0), ok(1), ok(2)])
    crashes.before_commit = 1
    with pytest.raises(InjectedCrash):
        await store.record_steps("f-1", [ok(3), bad(4), ok(1, "late")])
    # the deadline: the flow closes on what counts, and the join reads exactly that
    assert await store.close("f-1", FlowState.TIMED_OUT, expected_completed=3, now=T0)
    assert await counted(store) == (3, [ok(0), ok(1), ok(2)])
    assert await store.record_steps("f-1", [ok(3, "again"), bad(4), ok(1)]) == [
        R.CLOSED,
        R.CLOSED,
        R.DUPLICATE,
    ]
    assert await counted(store) == (3, [ok(0), ok(1), ok(2)])


async def test_a_step_that_finds_the_flow_closed_at_its_commit_is_deleted(
    store: DynamoFlowStore, crashes: Crashes
) -> None:
    await store.init(flow(6))
    await store.record_steps("f-1", [ok(0)])
    closer = DynamoFlowStore(store.models.table, store.settings)

    def close_first(recorder: Any) -> None:  # the flow closes between the puts and the commit
        crashes.on_commit = None
        assert asyncio.run(closer.close("f-1", FlowState.ABORTED, expected_completed=1, now=T0))

    crashes.on_commit = close_first
    assert await store.record_steps("f-1", [ok(1), ok(2), ok(0), ok(3)]) == [
        R.CLOSED,
        R.CLOSED,
        R.DUPLICATE,
        R.CLOSED,
    ]
    assert [raw_step(store, i) is None for i in range(4)] == [False, True, True, True]
    assert await counted(store) == (1, [ok(0)])


async def test_a_crash_while_deleting_leaves_steps_nothing_counts(
    store: DynamoFlowStore, crashes: Crashes
) -> None:
    await store.init(flow(6))
    closer = DynamoFlowStore(store.models.table, store.settings)

    def close_first(recorder: Any) -> None:
        crashes.on_commit = None
        assert asyncio.run(closer.close("f-1", FlowState.ABORTED, expected_completed=0, now=T0))

    crashes.on_commit = close_first
    crashes.before_delete = 3
    with pytest.raises(InjectedCrash):
        await store.record_steps("f-1", [ok(1), ok(2), ok(3)])
    assert raw_step(store, 1) is not None
    assert await counted(store) == (0, [])
    assert await store.record_steps("f-1", [ok(1), ok(2), ok(3)]) == [R.CLOSED] * 3
    assert await counted(store) == (0, [])


async def test_a_writer_overtaken_by_an_adopter(store: DynamoFlowStore, crashes: Crashes) -> None:
    """A slow writer is still between its puts and its commit when a duplicate delivery of its
    steps adopts them: the adopter counts them, the writer's commit is refused, and each step
    counts once (recorded for the writer, whose results are stored)."""
    await store.init(flow(5))
    slow = DynamoFlowStore(store.models.table, store.settings, flow_steps="puts")
    reached, release = threading.Event(), threading.Event()

    def hold(recorder: Any) -> None:
        if recorder.store is slow and not release.is_set():
            reached.set()
            assert release.wait(10)

    crashes.on_commit = hold
    writer = asyncio.create_task(slow.record_steps("f-1", [ok(0), ok(1), ok(2), ok(3)]))
    while not reached.is_set():
        await asyncio.sleep(0.01)
    assert await store.record_steps("f-1", [ok(1, "dup"), ok(2, "dup"), ok(4)]) == [
        R.DUPLICATE,
        R.DUPLICATE,
        R.RECORDED,
    ]
    assert await counted(store) == (3, [ok(1), ok(2), ok(4)])
    release.set()
    assert await writer == [R.RECORDED] * 4
    assert await counted(store) == (5, [ok(0), ok(1), ok(2), ok(3), ok(4)])


# -- many recorders at once ----------------------------------------------------------------------


@pytest.fixture
def serial_table(serial_aws_settings: AwsSettings) -> str:
    name = unique("tq-steps")
    ensure_table(name, serial_aws_settings)
    return name


@pytest.fixture
def random_crashes(monkeypatch: pytest.MonkeyPatch) -> Iterator[Counter[str]]:
    """Each store with a ``crash_rng`` crashes its calls at random: after a put, before the
    commit, after the commit (counted by where)."""
    real_put, real_transact = Recorder._put, Recorder._transact_sync
    seen: Counter[str] = Counter()
    lock = threading.Lock()

    def crash(where: str) -> InjectedCrash:
        with lock:
            seen[where] += 1
        return InjectedCrash(where)

    async def put(recorder: Any, index: int) -> Any:
        old = await real_put(recorder, index)
        rng = getattr(recorder.store, "crash_rng", None)
        if rng is not None and rng.random() < 0.05:
            raise crash("after a put")
        return old

    def transact(recorder: Any, plan: Any) -> Any:
        rng = getattr(recorder.store, "crash_rng", None)
        if rng is not None and rng.random() < 0.15:
            raise crash("before the commit")
        reasons = real_transact(recorder, plan)
        if rng is not None and rng.random() < 0.1:
            raise crash("after the commit")
        return reasons

    monkeypatch.setattr(Recorder, "_put", put)
    monkeypatch.setattr(Recorder, "_transact_sync", transact)
    yield seen


@pytest.mark.parametrize("flow_steps", ["puts", "auto", "transaction"])
@pytest.mark.parametrize("seed", [1, 2])
def test_recorders_of_one_flow_crash_and_redeliver(
    serial_table: str,
    serial_aws_settings: AwsSettings,
    random_crashes: Counter[str],
    flow_steps: Any,
    seed: int,
) -> None:
    total, workers = 24, 5
    setup = DynamoFlowStore(serial_table, serial_aws_settings)
    assert asyncio.run(setup.init(flow(total)))

    async def worker(w: int) -> list[tuple[int, RecordOutcome]]:
        store = DynamoFlowStore(serial_table, serial_aws_settings, flow_steps=flow_steps)
        rng = random.Random(seed * 100 + w)
        store.crash_rng = rng  # type: ignore[attr-defined]
        indexes = list(range(total))
        rng.shuffle(indexes)
        out: list[tuple[int, RecordOutcome]] = []
        i = 0
        while i < total:
            size = rng.choice([1, 2, 3, 5])
            chunk = [
                StepResult(index, "success" if (index + w) % 3 else "fail", {"by": w}, f"by {w}")
                for index in indexes[i : i + size]
            ]
            try:  # a crashed call is delivered again, until it goes through
                outcomes = await store.record_steps("f-1", chunk)
            except InjectedCrash:
                continue
            out.extend(zip([s.step_index for s in chunk], outcomes, strict=True))
            i += size
        return out

    by_worker = race(workers, worker)
    recorded: dict[int, list[int]] = defaultdict(list)
    for w, outcomes in enumerate(by_worker):
        for index, outcome in outcomes:
            assert outcome in (R.RECORDED, R.DUPLICATE)
            if outcome is R.RECORDED:
                recorded[index].append(w)
    completed, results = asyncio.run(counted(setup))
    assert completed == total
    assert [r.step_index for r in results] == list(range(total))
    for result in results:
        winners = recorded[result.step_index]
        assert len(winners) <= 1  # none when the writer crashed and a redelivery adopted it
        if winners:
            assert result.result == {"by": winners[0]}
    assert sum(random_crashes.values()) >= 5, random_crashes


@pytest.mark.parametrize("seed", [3, 4, 5])
def test_a_close_among_crashing_recorders_carries_exactly_what_counts(
    serial_table: str, serial_aws_settings: AwsSettings, random_crashes: Counter[str], seed: int
) -> None:
    """A closer (the deadline) races recorders that crash and redeliver: the results it read
    when its close won are what the flow keeps, before and after every redelivery."""
    total, workers = 30, 4
    setup = DynamoFlowStore(serial_table, serial_aws_settings)
    assert asyncio.run(setup.init(flow(total)))
    closed: list[list[StepResult]] = []

    async def closer() -> None:
        store = DynamoFlowStore(serial_table, serial_aws_settings)
        await asyncio.sleep(random.Random(seed).uniform(0.05, 0.4))
        while True:  # what the engine's evaluate does
            record = await store.get("f-1")
            assert record is not None
            results = await store.results("f-1")
            if len(results) != record.completed:
                continue
            if await store.close(
                "f-1", FlowState.TIMED_OUT, expected_completed=record.completed, now=T0
            ):
                closed.append(results)
                return

    async def worker(w: int) -> Counter[RecordOutcome]:
        if w == workers:
            await closer()
            return Counter()
        store = DynamoFlowStore(serial_table, serial_aws_settings)
        rng = random.Random(seed * 100 + w)
        store.crash_rng = rng  # type: ignore[attr-defined]
        indexes = list(range(total))
        rng.shuffle(indexes)
        got: Counter[RecordOutcome] = Counter()
        i = 0
        while i < total:
            chunk = [ok(index, f"w{w}") for index in indexes[i : i + 3]]
            try:
                got.update(await store.record_steps("f-1", chunk))
            except InjectedCrash:
                continue
            i += 3
        return got

    race(workers + 1, worker)
    [at_close] = closed
    record = asyncio.run(setup.get("f-1"))
    assert record is not None and record.state is FlowState.TIMED_OUT
    assert asyncio.run(counted(setup)) == (len(at_close), at_close)
    assert sum(random_crashes.values()) >= 3, random_crashes


# -- the engine over it ----------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [11, 12])
async def test_flows_through_the_engine_join_once_under_faults(
    store: DynamoFlowStore, random_crashes: Counter[str], seed: int
) -> None:
    """The engine on the DynamoDB flow store (the rest in memory), with duplicated, reordered
    and crashing deliveries and crashes inside the store's step calls: each flow joins once,
    carrying exactly the steps its barrier counted, each with its one outcome."""
    clock = ManualClock()
    app = TaskQueue(clock=clock, flow_store=store, batch_size=7)
    store.crash_rng = random.Random(seed)  # type: ignore[attr-defined]
    policies: dict[str, Any] = {"f-continue": "continue", "f-abort": "abort"}
    joins: list[dict[str, Any]] = []
    ids: dict[str, str] = {}

    @app.executor("q", "start")
    async def start(task: Task, actions: Actions) -> None:
        name = task.payload
        steps = [Task(type="step", queue_id="q", payload=i) for i in range(15)]
        ids[name] = actions.start_flow(
            steps, Join(queue_id="q", type="join"), failure_policy=policies[name]
        )
        actions.success(task)

    @app.executor("q", "step")
    async def step(task: Task, actions: Actions) -> None:
        if task.payload % 4 == 3:
            actions.fail(task, f"e{task.payload}")
        else:
            actions.success(task, task.payload * 10)

    @app.executor("q", "join")
    async def join(task: Task, actions: Actions) -> None:
        joins.append(task.payload["flow_results"])
        actions.success(task)

    FaultInjector(duplicate_rate=0.3, reorder=True, crash_rate=0.03, seed=seed).install(app)
    await app.add_tasks([Task(type="start", queue_id="q", payload=name) for name in policies])
    await run_until_idle_through_crashes(app)
    by_flow = {j["flow_id"]: j for j in joins}
    assert len(joins) == len(by_flow) == 2
    for name in policies:
        flow_id = ids[name]
        status = await app.flow_status(flow_id)
        assert status is not None
        steps = by_flow[flow_id]["steps"]
        assert len(steps) == status.succeeded + status.failed
        for s in steps:
            i = s["step_index"]
            if i % 4 == 3:
                assert s == {"step_index": i, "status": "fail", "error": f"e{i}"}
            else:
                assert s == {"step_index": i, "status": "success", "result": i * 10}
    assert by_flow[ids["f-continue"]].get("aborted") is None
    assert len(by_flow[ids["f-continue"]]["steps"]) == 15
    assert by_flow[ids["f-abort"]].get("aborted") is True
    assert sum(random_crashes.values()) >= 1, random_crashes
