"""FlowStore contract: the same assertions over the memory store and the DynamoDB store (moto),
the latter writing a call's steps as it does by default (``auto``), always with puts, in one
transaction and one transaction per step."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pynamodb.exceptions import CancellationReason

from tests.support.aws import REGION, unique
from tq_aws.backends.aws.clients import AwsSettings
from tq_aws.backends.aws.dynamodb import (
    DynamoFlowStore,
    ensure_table,
    flow_record,
)
from tq_aws.backends.memory import MemoryBlobStore, MemoryFlowStore
from tq_aws.core.flows import FlowRecord, FlowState, Join, RecordOutcome, StepResult
from tq_aws.core.task import Entity
from tq_aws.errors import FlowConflictError, ItemTooLargeError

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
ITEM_LIMIT = 4096
R = RecordOutcome


@dataclass
class Backend:
    kind: str
    store: Any
    blobs: MemoryBlobStore


MODES = {
    "dynamodb": ("auto", True),
    "dynamodb-puts": ("puts", True),
    "dynamodb-transaction": ("transaction", True),
    "dynamodb-per-step": ("transaction", False),
}


@pytest.fixture(params=["memory", *MODES])
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    blobs = MemoryBlobStore()
    if request.param == "memory":
        yield Backend("memory", MemoryFlowStore(), blobs)
        return
    request.getfixturevalue("moto")
    settings = AwsSettings(region=REGION, max_attempts=1)
    table = unique("tq-flows")
    ensure_table(table, settings)
    flow_steps, group_steps = MODES[request.param]
    store = DynamoFlowStore(
        table,
        settings,
        blob_store=blobs,
        item_limit=ITEM_LIMIT,
        flow_steps=flow_steps,  # type: ignore[arg-type]
        group_steps=group_steps,
    )
    yield Backend(request.param, store, blobs)


@pytest.fixture
def store(backend: Backend) -> Any:
    return backend.store


def flow(flow_id: str = "f-1", total: int = 4, **kw: Any) -> FlowRecord:
    return FlowRecord(
        flow_id=flow_id,
        total=total,
        join=Join(queue_id="q", type="join"),
        failure_policy=kw.pop("failure_policy", "continue"),
        tolerated_failures=kw.pop("tolerated_failures", None),
        tolerated_failure_percentage=kw.pop("tolerated_failure_percentage", None),
        started_at=T0,
        **kw,
    )


def ok(index: int, result: Any = None) -> StepResult:
    return StepResult(index, "success", index * 10 if result is None else result)


def bad(index: int, error: str = "boom") -> StepResult:
    return StepResult(index, "fail", error=error)


async def test_init_is_idempotent_and_get_round_trips(store: Any) -> None:
    record = flow(
        deadline=T0 + timedelta(hours=1),
        entity=Entity(id="o-1", type="order"),
        log_context={"request_id": "r-1"},
        parent_task_id="t-parent",
        tolerated_failure_percentage=12.5,
    )
    assert await store.init(record) is True
    assert await store.init(replace(record, total=99, parent_task_id="other")) is False
    assert await store.get("f-1") == record
    got = await store.get("f-1")
    got.succeeded = 3  # a copy
    assert (await store.get("f-1")).succeeded == 0


async def test_unknown_flow(store: Any) -> None:
    assert await store.get("f-none") is None
    assert await store.record_steps("f-none", [ok(0), bad(1)]) == [R.UNKNOWN, R.UNKNOWN]
    assert await store.results("f-none") == []
    assert await store.close("f-none", FlowState.JOINED, expected_completed=0, now=T0) is False
    await store.release_results("f-none")


async def test_first_write_wins_and_counters_move(store: Any) -> None:
    await store.init(flow(total=4))
    assert await store.record_steps("f-1", [ok(0), bad(2, "e2")]) == [R.RECORDED, R.RECORDED]
    assert await store.record_steps("f-1", [bad(0, "late"), ok(2)]) == [R.DUPLICATE, R.DUPLICATE]
    record = await store.get("f-1")
    assert (record.succeeded, record.failed, record.completed) == (1, 1, 2)
    assert record.state is FlowState.OPEN
    assert await store.results("f-1") == [ok(0), bad(2, "e2")]


async def test_the_same_step_twice_in_one_call(store: Any) -> None:
    await store.init(flow(total=4))
    outcomes = await store.record_steps("f-1", [ok(1), bad(1), ok(3), ok(1)])
    assert outcomes == [R.RECORDED, R.DUPLICATE, R.RECORDED, R.DUPLICATE]
    assert (await store.get("f-1")).completed == 2
    assert await store.results("f-1") == [ok(1), ok(3)]


async def test_new_and_duplicate_steps_in_one_call(store: Any) -> None:
    await store.init(flow(total=5))
    await store.record_steps("f-1", [ok(2)])
    outcomes = await store.record_steps("f-1", [ok(0), ok(2, "again"), bad(4), ok(1)])
    assert outcomes == [R.RECORDED, R.DUPLICATE, R.RECORDED, R.RECORDED]
    record = await store.get("f-1")
    assert (record.succeeded, record.failed) == (3, 1)
    assert [r.step_index for r in await store.results("f-1")] == [0, 1, 2, 4]
    assert (await store.results("f-1"))[2] == ok(2)


async def test_results_are_sorted_by_step_index(store: Any) -> None:
    await store.init(flow(total=12))
    order = [11, 3, 7, 0, 10, 1]
    for i in order:
        await store.record_steps("f-1", [ok(i, {"i": i})])
    await store.record_steps("f-1", [bad(9), ok(2, [2]), ok(5, None)])
    results = await store.results("f-1")
    assert [r.step_index for r in results] == sorted([*order, 9, 2, 5])
    assert results[0] == ok(0, {"i": 0})
    assert results[2] == ok(2, [2])


async def test_close_needs_an_open_flow_and_the_expected_count(store: Any) -> None:
    await store.init(flow(total=3))
    await store.record_steps("f-1", [ok(0), ok(1)])
    end = T0 + timedelta(minutes=5)
    assert await store.close("f-1", FlowState.JOINED, expected_completed=1, now=end) is False
    assert await store.close("f-1", FlowState.JOINED, expected_completed=3, now=end) is False
    assert (await store.get("f-1")).state is FlowState.OPEN
    assert await store.close("f-1", FlowState.ABORTED, expected_completed=2, now=end) is True
    assert await store.close("f-1", FlowState.JOINED, expected_completed=2, now=end) is False
    record = await store.get("f-1")
    assert (record.state, record.finished_at, record.completed) == (FlowState.ABORTED, end, 2)


async def test_a_closed_flow_refuses_results_but_keeps_first_writes(store: Any) -> None:
    await store.init(flow(total=4))
    await store.record_steps("f-1", [ok(0)])
    assert await store.close("f-1", FlowState.TIMED_OUT, expected_completed=1, now=T0)
    outcomes = await store.record_steps("f-1", [ok(1), bad(0), bad(3)])
    assert outcomes == [R.CLOSED, R.DUPLICATE, R.CLOSED]
    record = await store.get("f-1")
    assert (record.state, record.completed) == (FlowState.TIMED_OUT, 1)
    assert await store.results("f-1") == [ok(0)]
    await store.release_results("f-1")


async def test_step_index_out_of_range(store: Any) -> None:
    await store.init(flow(total=2))
    with pytest.raises(ValueError, match="step_index 2 out of range"):
        await store.record_steps("f-1", [ok(2)])
    with pytest.raises(ValueError, match="step_index -1 out of range"):
        await store.record_steps("f-1", [ok(-1)])
    assert (await store.get("f-1")).completed == 0
    assert await store.results("f-1") == []


async def test_a_flow_of_many_steps(backend: Backend) -> None:
    if backend.kind == "dynamodb-per-step":
        pytest.skip("one transaction per step has nothing to split (and moto is slow at it)")
    store = backend.store
    total = 130  # more steps than one transaction takes
    await store.init(flow(total=total))
    steps = [ok(i) if i % 3 else bad(i, f"e{i}") for i in range(total)]
    assert await store.record_steps("f-1", steps) == [R.RECORDED] * total
    record = await store.get("f-1")
    assert (record.succeeded, record.failed) == (86, 44)
    assert await store.results("f-1") == steps
    assert await store.close("f-1", FlowState.JOINED, expected_completed=total, now=T0)


async def test_large_results_round_trip(store: Any) -> None:
    await store.init(flow(total=3))
    big = ok(0, {"blob": "x" * 2 * ITEM_LIMIT})
    long_error = bad(1, "e" * 2 * ITEM_LIMIT)
    assert await store.record_steps("f-1", [big, long_error, ok(2)]) == [R.RECORDED] * 3
    assert await store.results("f-1") == [big, long_error, ok(2)]


# -- DynamoDB only -----------------------------------------------------------------------------


def dynamo(backend: Backend) -> DynamoFlowStore:
    if backend.kind == "memory":
        pytest.skip("DynamoDB store only")
    store: DynamoFlowStore = backend.store
    return store


def raw_barrier(store: DynamoFlowStore, flow_id: str) -> dict[str, Any]:
    return dict(store.models.connection.get_item(f"FLOW#{flow_id}", "FLOW")["Item"])


REQUESTS = {  # (PutItem, TransactWriteItems, items written) after each of the two calls
    "dynamodb": ((5, 1, 5 + 2), (8, 2, 7 + 2 + 2)),
    "dynamodb-puts": ((5, 1, 5 + 2), (8, 2, 7 + 2 + 2)),
    "dynamodb-transaction": ((0, 1, 5 + 1), (0, 3, 6 + 2 + 1)),
    "dynamodb-per-step": ((0, 5, 5 * 2), (0, 8, 10 + 2 * 2)),
}


async def test_request_counts(backend: Backend) -> None:
    store = dynamo(backend)
    await store.init(flow(total=10))
    expected = REQUESTS[backend.kind]
    await store.record_steps("f-1", [ok(i) for i in range(5)])
    puts, transactions, writes = expected[0]
    assert store.requests["PutItem"] - 1 == puts  # the barrier's init is a put too
    assert store.requests["TransactWriteItems"] == transactions
    assert store.writes - 1 == writes
    assert store.requests["GetItem"] == 1  # the barrier, read before anything is written
    await store.record_steps("f-1", [ok(4), ok(5), ok(6)])  # a duplicate among new steps
    puts, transactions, writes = expected[1]
    assert store.requests["PutItem"] - 1 == puts
    assert store.requests["TransactWriteItems"] == transactions
    assert store.writes - 1 == writes
    assert (await store.get("f-1")).completed == 7


async def test_calls_of_one_or_two_steps_are_one_transaction(backend: Backend) -> None:
    store = dynamo(backend)
    if store.flow_steps != "auto":
        pytest.skip("auto only")
    await store.init(flow(total=10))
    await store.record_steps("f-1", [ok(0), ok(1)])
    await store.record_steps("f-1", [ok(2)])
    assert (store.requests["PutItem"], store.requests["TransactWriteItems"]) == (1, 2)
    assert "batch" not in store.models.connection.get_item("FLOW#f-1", "STEP#00000002")["Item"]


async def test_the_barrier_does_not_grow_with_the_flow(backend: Backend) -> None:
    store = dynamo(backend)
    await store.init(flow(total=200))
    await store.record_steps("f-1", [ok(0)])
    small = raw_barrier(store, "f-1")
    await store.record_steps("f-1", [ok(i) for i in range(1, 40)])
    large = raw_barrier(store, "f-1")
    assert set(large) == set(small)
    assert large["definition"] == small["definition"]
    assert {k: v for k, v in large.items() if "N" not in v} == {
        k: v for k, v in small.items() if "N" not in v
    }
    assert (large["completed"], large["succeeded"]) == ({"N": "40"}, {"N": "40"})


async def test_large_step_results_live_in_the_blob_store(backend: Backend) -> None:
    store = dynamo(backend)
    await store.init(flow(total=2))
    await store.record_steps("f-1", [ok(0, "x" * 2 * ITEM_LIMIT)])
    assert len(backend.blobs._blobs) == 1
    bare = DynamoFlowStore(store.models.table, AwsSettings(region=REGION), item_limit=ITEM_LIMIT)
    with pytest.raises(ItemTooLargeError, match="blob_store="):
        await bare.record_steps("f-1", [ok(1, "x" * 2 * ITEM_LIMIT)])
    assert (await store.get("f-1")).completed == 1


async def test_a_busy_barrier_is_retried(backend: Backend, monkeypatch: pytest.MonkeyPatch) -> None:
    store = dynamo(backend)
    monkeypatch.setattr(flow_record, "RETRY_BASE_SECONDS", 0.0)
    await store.init(flow(total=4))
    real = flow_record.StepRecorder._transact_sync
    busy = {"left": 3}

    def conflicting(recorder: Any, plan: Any) -> Any:
        if busy["left"]:  # what DynamoDB answers while another transaction holds the barrier
            busy["left"] -= 1
            return [None] * (len(plan.roles) - 1) + [CancellationReason(code="TransactionConflict")]
        return real(recorder, plan)

    monkeypatch.setattr(flow_record.StepRecorder, "_transact_sync", conflicting)
    assert await store.record_steps("f-1", [ok(0), ok(1)]) == [R.RECORDED, R.RECORDED]
    assert (await store.get("f-1")).completed == 2
    busy["left"] = flow_record.MAX_ATTEMPTS
    with pytest.raises(FlowConflictError, match="busy") as info:
        await store.record_steps("f-1", [ok(2), ok(3), bad(1)])
    assert info.value.flow_id == "f-1"
    assert (await store.get("f-1")).completed == 2
    assert await store.results("f-1") == [ok(0), ok(1)]  # put, perhaps, but not counted
