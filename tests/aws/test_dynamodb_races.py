"""Races on the DynamoDB stores: many writers at once, exactly one winner each time.

These run against ``serial_moto_server``, a moto server that handles one request at a time.
moto's own server (``moto_server``) and in-process ``mock_aws`` evaluate a condition and apply
the write without holding a lock across both, so two concurrent conditional writes can both
succeed there (aws-tooling-facts.md, sections 0.2 and 2.10: 16 threads raced a guarded ``ADD``
and some keys got two winners). Pointed at it, these tests failed in each of three runs (two
closers of one flow, two creators of one task, two writers of one step all "won"), whatever the
store does: it cannot judge them. DynamoDB itself applies each conditional write and each
transaction atomically; serializing the requests gives moto that property, and the requests of
the writers below still interleave freely.
"""

from __future__ import annotations

import asyncio
import random
import threading
from collections import Counter
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, TypeVar

import pytest

from tests.support.aws import unique
from tq_aws.backends.aws.clients import AwsSettings
from tq_aws.backends.aws.dynamodb import DynamoFlowStore, DynamoTaskStore, ensure_table
from tq_aws.core.flows import FlowRecord, FlowState, Join, RecordOutcome, StepResult
from tq_aws.core.task import Task, TaskStatus

T = TypeVar("T")
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
WORKERS = 6


def race(workers: int, body: Callable[[int], Awaitable[T]]) -> list[T]:
    """Run ``body(w)`` for each worker in its own thread and event loop, all released at once."""
    start = threading.Barrier(workers)

    def run(w: int) -> T:
        start.wait()
        return asyncio.run(body(w))

    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(run, range(workers)))


def flow(total: int) -> FlowRecord:
    return FlowRecord(
        flow_id="f-race",
        total=total,
        join=Join(queue_id="q", type="join"),
        failure_policy="continue",
        tolerated_failures=None,
        tolerated_failure_percentage=None,
        started_at=NOW,
    )


@pytest.fixture
def table(serial_aws_settings: AwsSettings) -> str:
    name = unique("tq-races")
    ensure_table(name, serial_aws_settings)
    return name


@pytest.mark.parametrize("group_steps", [True, False], ids=["grouped", "per-step"])
def test_one_winner_per_step(
    table: str, serial_aws_settings: AwsSettings, group_steps: bool
) -> None:
    total = 12
    setup = DynamoFlowStore(table, serial_aws_settings)
    assert asyncio.run(setup.init(flow(total)))

    def step(w: int, index: int) -> StepResult:
        # Worker w reports its own result, so the stored one names the winner.
        return StepResult(index, "success" if w % 2 else "fail", {"by": w}, f"by {w}")

    async def worker(w: int) -> list[tuple[int, RecordOutcome]]:
        store = DynamoFlowStore(table, serial_aws_settings, group_steps=group_steps)
        indexes = list(range(total))
        random.Random(w).shuffle(indexes)
        out: list[tuple[int, RecordOutcome]] = []
        for i in range(0, total, 3):  # calls of three steps
            chunk = [step(w, index) for index in indexes[i : i + 3]]
            outcomes = await store.record_steps("f-race", chunk)
            out.extend(zip([s.step_index for s in chunk], outcomes, strict=True))
        return out

    by_worker = race(WORKERS, worker)
    winners: dict[int, list[int]] = {index: [] for index in range(total)}
    for w, outcomes in enumerate(by_worker):
        for index, outcome in outcomes:
            assert outcome in (RecordOutcome.RECORDED, RecordOutcome.DUPLICATE)
            if outcome is RecordOutcome.RECORDED:
                winners[index].append(w)
    assert all(len(ws) == 1 for ws in winners.values()), winners
    record = asyncio.run(setup.get("f-race"))
    results = asyncio.run(setup.results("f-race"))
    assert record is not None
    assert record.completed == total
    assert [r.step_index for r in results] == list(range(total))
    for result in results:  # the stored result is the winner's, and the counters agree
        assert result.result == {"by": winners[result.step_index][0]}
    assert record.succeeded == sum(1 for r in results if r.status == "success")


def test_one_winner_per_close(table: str, serial_aws_settings: AwsSettings) -> None:
    setup = DynamoFlowStore(table, serial_aws_settings)
    asyncio.run(setup.init(flow(3)))
    asyncio.run(setup.record_steps("f-race", [StepResult(i, "success") for i in range(3)]))
    targets = [FlowState.JOINED, FlowState.ABORTED, FlowState.TIMED_OUT]

    async def closer(w: int) -> bool:
        store = DynamoFlowStore(table, serial_aws_settings)
        return await store.close(
            "f-race", targets[w % 3], expected_completed=3, now=NOW.replace(second=w)
        )

    won = race(16, closer)
    assert won.count(True) == 1
    record = asyncio.run(setup.get("f-race"))
    assert record is not None
    winner = won.index(True)
    assert (record.state, record.finished_at) == (targets[winner % 3], NOW.replace(second=winner))


def test_the_last_step_and_a_close_on_the_count_before_it(
    table: str, serial_aws_settings: AwsSettings
) -> None:
    """Either the last step lands (and no close on the old count can), or a close on the old
    count lands (and the step is refused as closed): never both, never neither."""
    setup = DynamoFlowStore(table, serial_aws_settings)
    asyncio.run(setup.init(flow(4)))
    asyncio.run(setup.record_steps("f-race", [StepResult(i, "success") for i in range(3)]))

    async def racer(w: int) -> Any:
        store = DynamoFlowStore(table, serial_aws_settings)
        if w % 2:
            return await store.close("f-race", FlowState.TIMED_OUT, expected_completed=3, now=NOW)
        [outcome] = await store.record_steps("f-race", [StepResult(3, "success")])
        return outcome

    got = Counter(race(8, racer))
    record = asyncio.run(setup.get("f-race"))
    assert record is not None
    if got[RecordOutcome.RECORDED]:
        assert got == {RecordOutcome.RECORDED: 1, RecordOutcome.DUPLICATE: 3, False: 4}
        assert (record.state, record.completed) == (FlowState.OPEN, 4)
    else:
        assert got == {True: 1, False: 3, RecordOutcome.CLOSED: 4}
        assert (record.state, record.completed) == (FlowState.TIMED_OUT, 3)


def test_one_creator_and_one_canceller(table: str, serial_aws_settings: AwsSettings) -> None:
    async def creator(w: int) -> bool:
        store = DynamoTaskStore(table, serial_aws_settings)
        [created] = await store.create([Task(id="t-race", type="t", queue_id="q", payload=w)])
        return created

    created = race(WORKERS, creator)
    assert created.count(True) == 1
    reader = DynamoTaskStore(table, serial_aws_settings)
    stored = asyncio.run(reader.get("t-race"))
    assert stored is not None and stored.payload == created.index(True)

    async def canceller(w: int) -> bool:
        store = DynamoTaskStore(table, serial_aws_settings)
        return await store.cancel("t-race", NOW) is not None

    assert race(WORKERS, canceller).count(True) == 1
    stored = asyncio.run(reader.get("t-race"))
    assert stored is not None and stored.status is TaskStatus.CANCELLED
