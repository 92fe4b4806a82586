"""Property-based tests of flows under at-least-once delivery: duplicates, reordering, crashes.

Every step's outcome is a function of (flow, step, attempt), so the final outcome of each step
and the instant it is reached are known before the run. The clock moves only to the next due
time; retries fall on whole seconds and deadlines half-way between them, so the instant every
flow must close, the state it closes in and the results its join carries are known too.

The default profile runs 2,000 generated flow runs (1,100 with every fault, 900 without crashes)
and 500 cases of the closing rule; ``TQ_FLOWS_PROFILE=tq-flows-long`` runs ten times as many.
"""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tq_aws import Actions, Entity, Join, ProjectionRow, Task, TaskQueue, TaskStatus
from tq_aws.core.flows import FlowRecord, FlowState, decide, timeout_task_id
from tq_aws.core.projections import TERMINAL_RANK
from tq_aws.testing import (
    FaultInjector,
    InjectedCrash,
    ManualClock,
    run_until_idle_through_crashes,
)

settings.register_profile(
    "tq-flows",
    max_examples=1000,
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "tq-flows-long", parent=settings.get_profile("tq-flows"), max_examples=10_000
)
PROFILE = settings.get_profile(os.environ.get("TQ_FLOWS_PROFILE", "tq-flows"))


def examples(share: float, **overrides: Any) -> settings:
    """The profile, with ``share`` of its ``max_examples`` for one test."""
    return settings(PROFILE, max_examples=max(1, round(PROFILE.max_examples * share)), **overrides)


RESULT_LIMIT = 64
"""Bytes; a padded step result is larger and goes to the blob store."""
STARTER_KINDS = ("single", "parallel", "batch")
QUEUES = ("qa", "qb")
JOIN_QUEUES = ("qa", "qb", "qj")


def attempt_offset(attempt: int) -> int:
    """Seconds from the first attempt to attempt ``attempt`` with ``retry_after=1``."""
    return sum((n + 1) ** 2 for n in range(attempt))


# -- plans ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class StepPlan:
    kind: str
    retries: int
    outcomes: tuple[bool, ...]
    """Success of each attempt, ``retries + 1`` of them."""
    stored: bool
    entity: bool
    pad: int

    def final(self, flow: int, index: int) -> tuple[int, dict[str, Any]]:
        """Seconds after the start at which the step ends for good, and its step result."""
        if self.kind == "unknown":
            return 0, {"step_index": index, "status": "fail", "error": "unknown_executor"}
        for attempt, ok in enumerate(self.outcomes):
            if ok:
                result = step_result_value(flow, index, attempt, self.pad)
                return attempt_offset(attempt), {
                    "step_index": index,
                    "status": "success",
                    "result": result,
                }
        last = self.retries
        return attempt_offset(last), {
            "step_index": index,
            "status": "fail",
            "error": step_error(flow, index, last),
        }


def step_result_value(flow: int, index: int, attempt: int, pad: int) -> dict[str, Any]:
    value: dict[str, Any] = {"flow": flow, "i": index, "a": attempt}
    if pad:
        value["pad"] = "x" * pad
    return value


def step_error(flow: int, index: int, attempt: int) -> str:
    return f"e{flow}.{index}.{attempt}"


@dataclass(frozen=True)
class FlowPlan:
    steps: tuple[StepPlan, ...]
    failure_policy: str
    tolerated_failures: int | None
    tolerated_failure_percentage: float | None
    timeout: float | None
    entity: bool
    starter: str
    starter_stored: bool
    step_queue: str
    join_queue: str

    def threshold(self) -> float | None:
        """Abort once more than this many steps failed (``None``: never)."""
        if self.tolerated_failures is not None:
            return float(self.tolerated_failures)
        if self.tolerated_failure_percentage is not None:
            return len(self.steps) * self.tolerated_failure_percentage / 100
        return 0.0 if self.failure_policy == "abort" else None


@dataclass(frozen=True)
class Faults:
    duplicate_rate: float
    reorder: bool
    crash_rate: float
    max_crashes: int
    seed: int
    batch_size: int
    workers: int
    """Workers draining the queues at once; with more than one, every store call yields to
    the event loop before and after it, so their calls interleave."""


@dataclass(frozen=True)
class Expected:
    """What a flow must do, worked out from its plan alone."""

    state: str
    close_at: float
    """Seconds after the start."""
    surely_in: frozenset[int]
    """Steps whose result the join must carry."""
    maybe_in: frozenset[int]
    """Steps whose result the join may carry (they end at the closing instant)."""
    finals: dict[int, dict[str, Any]]
    threshold: float | None


def expect(plan: FlowPlan, flow: int) -> Expected:
    ends: dict[int, int] = {}
    finals: dict[int, dict[str, Any]] = {}
    for index, step in enumerate(plan.steps):
        ends[index], finals[index] = step.final(flow, index)
    threshold = plan.threshold()
    abort_at: int | None = None
    if threshold is not None:
        fail_times = sorted(ends[i] for i, r in finals.items() if r["status"] == "fail")
        needed = int(threshold) + 1  # the smallest failure count above the threshold
        if len(fail_times) >= needed:
            abort_at = fail_times[needed - 1]
    complete_at = max(ends.values())
    deadline = plan.timeout
    everything = frozenset(ends)
    if abort_at is not None and (deadline is None or abort_at < deadline):
        before = frozenset(i for i, t in ends.items() if t < abort_at)
        at = frozenset(i for i, t in ends.items() if t == abort_at)
        return Expected("aborted", abort_at, before, at, finals, threshold)
    if deadline is None or complete_at < deadline:
        return Expected("joined", complete_at, everything, frozenset(), finals, threshold)
    before = frozenset(i for i, t in ends.items() if t < deadline)
    return Expected("timed_out", deadline, before, frozenset(), finals, threshold)


SIZES = [(1, 8)] * 33 + [(9, 40)] * 6 + [(41, 200)]
"""Step counts: mostly small flows, now and then a large one."""
TOLERANCES: list[tuple[str, str | None, float]] = [
    ("continue", None, 0),
    ("continue", None, 0),
    ("abort", None, 0),
    ("abort", None, 0),
    *((policy, "count", f) for policy in ("continue", "abort") for f in (0, 0.1, 0.3, 0.5, 1)),
    *(
        (policy, "percentage", p)
        for policy in ("continue", "abort")
        for p in (0, 10, 12.5, 25, 50, 100)
    ),
]
"""``(failure_policy, tolerance kind, value)``: a count as a share of the step count, or a
percentage."""
KIND_MIXES = [
    ("single",),
    ("parallel",),
    ("batch",),
    ("single", "batch"),
    ("single", "parallel", "batch"),
    ("single", "unknown"),
    ("single", "parallel", "batch", "unknown"),
]


@dataclass(frozen=True)
class FlowShape:
    """The choices hypothesis makes for one flow; the steps' details follow from ``seed``."""

    size: tuple[int, int]
    success_rate: float
    max_retries: int
    kinds: tuple[str, ...]
    stored_rate: float
    entity_rate: float
    pad_rate: float
    tolerance: tuple[str, str | None, float]
    timeout: float | None
    entity: bool
    starter: str
    starter_stored: bool
    step_queue: str
    join_queue: str
    seed: int


def plan_from(shape: FlowShape) -> FlowPlan:
    rng = random.Random(shape.seed)
    n = rng.randint(*shape.size)
    steps = []
    for _ in range(n):
        retries = rng.randint(0, shape.max_retries)
        steps.append(
            StepPlan(
                kind=rng.choice(shape.kinds),
                retries=retries,
                outcomes=tuple(rng.random() < shape.success_rate for _ in range(retries + 1)),
                stored=rng.random() < shape.stored_rate,
                entity=rng.random() < shape.entity_rate,
                pad=80 if rng.random() < shape.pad_rate else 0,
            )
        )
    failure_policy, tolerance, value = shape.tolerance
    return FlowPlan(
        steps=tuple(steps),
        failure_policy=failure_policy,
        tolerated_failures=int(value * n) if tolerance == "count" else None,
        tolerated_failure_percentage=float(value) if tolerance == "percentage" else None,
        timeout=shape.timeout,
        entity=shape.entity,
        starter=shape.starter,
        starter_stored=shape.starter_stored,
        step_queue=shape.step_queue,
        join_queue=shape.join_queue,
    )


def flow_plans(*, stored_starters: bool = False) -> st.SearchStrategy[FlowPlan]:
    shapes = st.builds(
        FlowShape,
        size=st.sampled_from(SIZES),
        success_rate=st.sampled_from([0.0, 0.3, 0.6, 0.9, 1.0]),
        max_retries=st.integers(0, 3),
        kinds=st.sampled_from(KIND_MIXES),
        stored_rate=st.sampled_from([0.0, 0.5, 1.0]),
        entity_rate=st.sampled_from([0.0, 0.3]),
        pad_rate=st.sampled_from([0.0, 0.2]),
        tolerance=st.sampled_from(TOLERANCES),
        timeout=st.sampled_from([None, None, 0.5, 3.5, 9.5, 20.5]),
        entity=st.booleans(),
        starter=st.sampled_from(STARTER_KINDS),
        starter_stored=st.just(True) if stored_starters else st.booleans(),
        step_queue=st.sampled_from(QUEUES),
        join_queue=st.sampled_from(JOIN_QUEUES),
        seed=st.integers(0, 2**32 - 1),
    )
    return shapes.map(plan_from)


def faults(*, crashes: bool, workers: Sequence[int] = (1, 1, 2, 3)) -> st.SearchStrategy[Faults]:
    return st.builds(
        Faults,
        duplicate_rate=st.sampled_from([0.0, 0.05, 0.2, 0.5]),
        reorder=st.booleans(),
        crash_rate=st.sampled_from([0.0, 0.02, 0.05, 0.15]) if crashes else st.just(0.0),
        max_crashes=st.sampled_from([3, 10, 30]),
        seed=st.integers(0, 2**32 - 1),
        batch_size=st.sampled_from([1, 2, 3, 5, 10, 50, 500]),
        workers=st.sampled_from(workers),
    )


ANY_FLOWS = st.lists(flow_plans(), min_size=1, max_size=2)
FLOWS_STARTED_ONCE = st.lists(flow_plans(stored_starters=True), min_size=1, max_size=2)
ALL_FAULTS = faults(crashes=True)
NO_CRASHES = faults(crashes=False)


# -- running a scenario --------------------------------------------------------------------

LATENT_CALLS = {
    "task_store": ("put", "create", "get", "claim", "cancel"),
    "flow_store": ("init", "get", "record_steps", "results", "close", "release_results"),
    "projection_store": ("upsert", "for_entity"),
    "scheduler": ("schedule", "cancel"),
    "transport": ("publish",),
    "blob_store": ("put", "get"),
}


def add_latency(app: TaskQueue) -> None:
    """Make every store call give the event loop a turn before and after it."""

    def latent(method: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def call(*args: Any, **kwargs: Any) -> Any:
            await asyncio.sleep(0)
            result = await method(*args, **kwargs)
            await asyncio.sleep(0)
            return result

        return call

    for port, names in LATENT_CALLS.items():
        for name in names:
            target = getattr(app, port)
            setattr(target, name, latent(getattr(target, name)))


async def drain(app: TaskQueue, workers: int) -> None:
    """Run until nothing is due at this instant, through crashes, with ``workers`` workers."""
    if workers == 1:
        await run_until_idle_through_crashes(app)
        return

    async def worker() -> None:
        for _ in range(10_000):
            try:
                await app.run_until_idle()
                return
            except InjectedCrash:
                continue
        raise AssertionError("still crashing after 10,000 rounds")

    await asyncio.gather(*(worker() for _ in range(workers)))
    transport = app.transport
    assert transport.pending() == 0  # type: ignore[attr-defined]


class ProjectionLog:
    """Every row offered to the projection store, and the stored row of each task after
    every write that succeeded."""

    def __init__(self, app: TaskQueue):
        store = app.projection_store
        self.raw_upsert = store.upsert
        self.offered: list[ProjectionRow] = []
        self.history: dict[tuple[str, str, str], list[ProjectionRow]] = {}

        async def upsert(rows: Sequence[ProjectionRow]) -> None:
            await self.raw_upsert(rows)
            self.offered.extend(r.model_copy() for r in rows)
            for entity in {(r.entity_type, r.entity_id) for r in rows}:
                for row in await store.for_entity(Entity(type=entity[0], id=entity[1])):
                    seen = self.history.setdefault((*entity, row.task_id), [])
                    if not seen or seen[-1] != row:
                        seen.append(row)

        store.upsert = upsert  # type: ignore[method-assign]


@dataclass
class Run:
    app: TaskQueue
    faults: FaultInjector
    start: datetime
    projections: ProjectionLog
    starter_ids: list[str]
    flow_ids: dict[int, set[str]] = field(default_factory=dict)
    joins: list[tuple[datetime, Task]] = field(default_factory=list)
    anomalies: list[str] = field(default_factory=list)
    cleanup_violations: list[str] = field(default_factory=list)


def step_entity(flow: int, index: int) -> Entity:
    return Entity(id=f"f{flow}s{index}", type="step")


def flow_entity(flow: int) -> Entity:
    return Entity(id=f"flow{flow}", type="flow")


async def run_flows(plans: Sequence[FlowPlan], fault: Faults, *, watch_cleanup: bool) -> Run:
    clock = ManualClock()
    app = TaskQueue(
        clock=clock, batch_size=fault.batch_size, result_limit=RESULT_LIMIT, worker_id="w"
    )
    if fault.workers > 1:
        add_latency(app)
    projections = ProjectionLog(app)
    injector = FaultInjector(
        duplicate_rate=fault.duplicate_rate,
        reorder=fault.reorder,
        crash_rate=fault.crash_rate,
        max_crashes=fault.max_crashes,
        seed=fault.seed,
    ).install(app)
    run = Run(app, injector, clock.now(), projections, [])

    def start_one(task: Task, actions: Actions, parent: Task | None) -> None:
        k = task.payload["flow"]
        plan = plans[k]
        steps = [
            Task(
                type=f"step.{step.kind}",
                queue_id=plan.step_queue,
                payload={"flow": k, "i": i},
                retries=step.retries,
                retry_after=1,
                force_store=step.stored,
                entity=step_entity(k, i) if step.entity else None,
            )
            for i, step in enumerate(plan.steps)
        ]
        flow_id = actions.start_flow(
            steps=steps,
            join=Join(queue_id=plan.join_queue, type="join"),
            failure_policy=plan.failure_policy,
            tolerated_failures=plan.tolerated_failures,
            tolerated_failure_percentage=plan.tolerated_failure_percentage,
            timeout=plan.timeout,
            entity=flow_entity(k) if plan.entity else None,
            parent=parent,
        )
        run.flow_ids.setdefault(k, set()).add(flow_id)
        actions.success(task)

    def run_step(task: Task, actions: Actions) -> None:
        k, i = task.payload["flow"], task.payload["i"]
        step = plans[k].steps[i]
        attempt = task.retry_count
        if attempt > step.retries:
            run.anomalies.append(f"flow {k} step {i}: attempt {attempt} after the last one")
            actions.fail(task, "too many attempts")
        elif step.outcomes[attempt]:
            actions.success(task, step_result_value(k, i, attempt, step.pad))
        else:
            actions.fail(task, step_error(k, i, attempt))

    async def join(task: Task, actions: Actions) -> None:
        run.joins.append((clock.now(), task))
        actions.success(task, {"joined": task.payload["flow_results"]["flow_id"]})

    for queue in QUEUES:

        @app.executor(queue, "start.single")
        async def start_single(task: Task, actions: Actions) -> None:
            start_one(task, actions, None)

        @app.executor(queue, "start.parallel", parallel=True, chunk_size=2)
        async def start_parallel(task: Task, actions: Actions) -> None:
            start_one(task, actions, None)

        @app.batch_executor(queue, "start.batch")
        async def start_batch(tasks: list[Task], actions: Actions) -> None:
            for task in tasks:
                start_one(task, actions, task)

        @app.executor(queue, "step.single")
        async def step_single(task: Task, actions: Actions) -> None:
            run_step(task, actions)

        @app.executor(queue, "step.parallel", parallel=True, chunk_size=3)
        async def step_parallel(task: Task, actions: Actions) -> None:
            run_step(task, actions)

        @app.batch_executor(queue, "step.batch")
        async def step_batch(tasks: list[Task], actions: Actions) -> None:
            for task in tasks:
                run_step(task, actions)

    for queue in JOIN_QUEUES:
        app.executor(queue, "join")(join)

    run.starter_ids = await app.add_tasks(
        [
            Task(
                type=f"start.{plan.starter}",
                queue_id="qa",
                payload={"flow": k},
                force_store=plan.starter_stored,
                metadata={"log_context": {"corr": f"c{k}"}},
            )
            for k, plan in enumerate(plans)
        ]
    )
    await drain(app, fault.workers)
    if watch_cleanup:
        await watch(run)
    for _ in range(10_000):
        due = app.next_due()
        if due is None:
            break
        clock.set(due)
        await drain(app, fault.workers)
        if watch_cleanup:
            await watch(run)
    else:
        raise AssertionError("the scheduler never ran dry")
    return run


async def watch(run: Run) -> None:
    """After each instant: a closed flow has no pending deadline and holds no step results."""
    pending = run.app.scheduler.pending_names()  # type: ignore[attr-defined]
    for ids in run.flow_ids.values():
        for flow_id in ids:
            status = await run.app.flow_status(flow_id)
            if status is None or status.state == "open":
                continue
            sentinel = timeout_task_id(flow_id)
            if any(name.startswith(sentinel) for name in pending):
                run.cleanup_violations.append(f"{flow_id}: deadline still armed")
            held = run.app.flow_store.step_count(flow_id)  # type: ignore[attr-defined]
            if held:
                run.cleanup_violations.append(f"{flow_id}: {held} step results kept")


# -- checks --------------------------------------------------------------------------------


async def check_flows(plans: Sequence[FlowPlan], run: Run) -> None:
    app = run.app
    assert run.anomalies == []
    assert app.stats.flows_started == len(plans)
    joins_by_flow: dict[str, list[tuple[datetime, Task]]] = {}
    for at, task in run.joins:
        joins_by_flow.setdefault(task.payload["flow_results"]["flow_id"], []).append((at, task))
    flow_ids = []
    for k, plan in enumerate(plans):
        # one flow per starter, whatever the redeliveries
        assert len(run.flow_ids[k]) == 1, run.flow_ids[k]
        [flow_id] = run.flow_ids[k]
        flow_ids.append(flow_id)
        expected = expect(plan, k)
        status = await app.flow_status(flow_id)
        assert status is not None
        assert status.state == expected.state

        # exactly one join, run at the instant the flow had to close
        deliveries = joins_by_flow.get(flow_id, [])
        assert deliveries, f"flow {k} never joined"
        assert {task.id for _, task in deliveries} == {status.join_task_id}
        first_at, join = deliveries[0]
        assert first_at == run.start + timedelta(seconds=expected.close_at)
        assert status.finished_at == first_at
        assert all(task.payload == join.payload for _, task in deliveries)
        record = await app.task_store.get(status.join_task_id)
        assert record is not None and record.status is TaskStatus.EXECUTED
        assert record.payload == join.payload
        assert join.log_context.get("corr") == f"c{k}"
        assert join.queue_id == plan.join_queue

        # the join carries the first terminal outcome of exactly the steps it should
        results = join.payload["flow_results"]
        assert results.get("aborted", False) is (expected.state == "aborted")
        assert results.get("timed_out", False) is (expected.state == "timed_out")
        steps = results["steps"]
        indexes = [s["step_index"] for s in steps]
        assert indexes == sorted(set(indexes))
        assert expected.surely_in <= set(indexes) <= expected.surely_in | expected.maybe_in
        for s in steps:
            assert s == expected.finals[s["step_index"]]
        failed = sum(s["status"] == "fail" for s in steps)
        if expected.state == "aborted":
            assert expected.threshold is not None and failed > expected.threshold
        elif expected.threshold is not None:
            assert failed <= expected.threshold

        # the barrier's counts are the join's
        assert (status.total, status.succeeded, status.failed, status.pending) == (
            len(plan.steps),
            len(steps) - failed,
            failed,
            len(plan.steps) - len(steps),
        )
        assert status.started_at == run.start
        if plan.timeout is None:
            assert status.deadline is None
        else:
            assert status.deadline == run.start + timedelta(seconds=plan.timeout)
        assert status.parent_task_id == run.starter_ids[k]
        assert "flow_meta" not in str(join.payload)

        # every step ends in its own final status, whether the flow waited for it or not
        for i, step in enumerate(plan.steps):
            if not step.entity:
                continue
            [row] = await app.entity_status(step_entity(k, i))
            final = expected.finals[i]
            if step.kind == "unknown":
                assert (row.status, row.error) == ("ignored", "unknown_executor")
            elif final["status"] == "success":
                assert (row.status, row.result) == ("executed", final["result"])
            else:
                assert (row.status, row.error) == ("failed", final["error"])
        if plan.entity:
            rows = await app.entity_status(flow_entity(k))
            [flow_row] = [r for r in rows if r.task_id == flow_id]
            assert flow_row.rank == TERMINAL_RANK
            if expected.state == "joined":
                assert (flow_row.status, flow_row.result) == ("executed", {"joined": flow_id})
    assert set(joins_by_flow) == set(flow_ids)
    await check_projection_history(run)


async def check_projection_history(run: Run) -> None:
    """No stored row ever moved back, a terminal row never changed, and replaying every row
    ever offered (newest first) changes nothing."""
    for key, rows in run.projections.history.items():
        ranks = [r.rank for r in rows]
        assert ranks == sorted(ranks), (key, [r.status for r in rows])
        terminal = [r for r in rows if r.rank == TERMINAL_RANK]
        assert len(terminal) <= 1, (key, [(r.status, r.error) for r in terminal])
    entities = {(r.entity_type, r.entity_id) for r in run.projections.offered}
    store = run.app.projection_store
    before = {e: await store.for_entity(Entity(type=e[0], id=e[1])) for e in entities}
    await run.projections.raw_upsert(list(reversed(run.projections.offered)))
    after = {e: await store.for_entity(Entity(type=e[0], id=e[1])) for e in entities}
    assert after == before


async def check_cleanup(plans: Sequence[FlowPlan], run: Run) -> None:
    """A closed flow: deadline disarmed, results released, flow row from its closing state."""
    assert run.cleanup_violations == []
    for k, plan in enumerate(plans):
        [flow_id] = run.flow_ids[k]
        assert run.app.flow_store.step_count(flow_id) == 0  # type: ignore[attr-defined]
        if not plan.entity:
            continue
        status = await run.app.flow_status(flow_id)
        assert status is not None
        rows = await run.app.entity_status(flow_entity(k))
        [flow_row] = [r for r in rows if r.task_id == flow_id]
        expected_row = {
            "joined": ("executed", None),
            "aborted": ("failed", "flow_aborted"),
            "timed_out": ("failed", "flow_timeout"),
        }[status.state]
        assert (flow_row.status, flow_row.error) == expected_row


# -- the properties ------------------------------------------------------------------------


@examples(1.1)
@given(plans=ANY_FLOWS, fault=ALL_FAULTS)
def test_each_flow_joins_once_with_the_final_outcomes_its_policy_allows(
    plans: list[FlowPlan], fault: Faults
) -> None:
    async def scenario() -> None:
        run = await run_flows(plans, fault, watch_cleanup=False)
        await check_flows(plans, run)

    asyncio.run(scenario())


@examples(0.9)
@given(plans=FLOWS_STARTED_ONCE, fault=NO_CRASHES)
def test_a_closed_flow_leaves_nothing_behind_under_duplicates_and_reordering(
    plans: list[FlowPlan], fault: Faults
) -> None:
    async def scenario() -> None:
        run = await run_flows(plans, fault, watch_cleanup=True)
        await check_flows(plans, run)
        await check_cleanup(plans, run)

    asyncio.run(scenario())


@examples(0.3, phases=[Phase.explicit, Phase.generate])
@given(plans=ANY_FLOWS, fault=ALL_FAULTS)
def test_a_closed_flow_leaves_nothing_behind_under_crashes(
    plans: list[FlowPlan], fault: Faults
) -> None:
    async def scenario() -> None:
        run = await run_flows(plans, fault, watch_cleanup=True)
        await check_flows(plans, run)
        await check_cleanup(plans, run)

    asyncio.run(scenario())


@examples(0.5)
@given(
    total=st.integers(1, 200),
    data=st.data(),
    failure_policy=st.sampled_from(["continue", "abort"]),
    tolerance=st.sampled_from(["none", "count", "percentage"]),
    timed_out=st.booleans(),
)
def test_decide_closes_exactly_when_the_policy_says(
    total: int, data: st.DataObject, failure_policy: str, tolerance: str, timed_out: bool
) -> None:
    failed = data.draw(st.integers(0, total))
    succeeded = data.draw(st.integers(0, total - failed))
    count = data.draw(st.integers(0, total)) if tolerance == "count" else None
    percent = data.draw(st.integers(0, 100)) if tolerance == "percentage" else None
    record = FlowRecord(
        flow_id="f",
        total=total,
        join=Join(queue_id="q", type="j"),
        failure_policy=failure_policy,  # type: ignore[arg-type]
        tolerated_failures=count,
        tolerated_failure_percentage=None if percent is None else float(percent),
        started_at=datetime(2026, 1, 1),
        succeeded=succeeded,
        failed=failed,
    )
    # the rule in whole numbers: abort once MORE than the tolerance failed
    if count is not None:
        aborts = failed > count
    elif percent is not None:
        aborts = failed * 100 > total * percent
    else:
        aborts = failure_policy == "abort" and failed > 0
    if aborts:
        want: FlowState | None = FlowState.ABORTED
    elif failed + succeeded == total:
        want = FlowState.JOINED
    elif timed_out:
        want = FlowState.TIMED_OUT
    else:
        want = None
    assert decide(record, timed_out=timed_out) is want
    record.state = FlowState.JOINED
    assert decide(record, timed_out=timed_out) is None
