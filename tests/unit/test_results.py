"""Task results: JSON only, pydantic models dumped, large values kept in the blob store."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import BaseModel

from tests.support.events import USER, EventRecorder, make_task
from tq_aws import Actions, Task, TaskQueue, TaskStatus
from tq_aws.engine.blobs import DEFAULT_RESULT_LIMIT, MARKER
from tq_aws.errors import ResultNotSerializableError
from tq_aws.testing import ManualClock


def _returning(app: TaskQueue, result: Any) -> None:
    @app.executor("q", "t")
    async def run(task: Task, actions: Actions) -> None:
        actions.success(task, result)


def _json_size(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":")).encode())


class Receipt(BaseModel):
    message_id: str
    cost_cents: int


async def test_pydantic_model_result_is_stored_as_json(app: TaskQueue) -> None:
    _returning(app, Receipt(message_id="m-1", cost_cents=3))
    [tid] = await app.add_tasks([make_task(force_store=True, entity=USER)])
    await app.run_until_idle()
    record = await app.get_task(tid)
    assert record is not None and record.execution_result == {"message_id": "m-1", "cost_cents": 3}
    [row] = await app.entity_status(USER)
    assert row.result == {"message_id": "m-1", "cost_cents": 3}


async def test_success_without_result_stores_none(app: TaskQueue) -> None:
    _returning(app, None)
    [tid] = await app.add_tasks([make_task(force_store=True)])
    await app.run_until_idle()
    record = await app.get_task(tid)
    assert record is not None and record.status is TaskStatus.EXECUTED
    assert record.execution_result is None


@pytest.mark.parametrize("bad", [object(), {"f": lambda: 1}, b"\xff\xfe"])
async def test_non_json_result_raises_at_the_call(app: TaskQueue, bad: Any) -> None:
    raised: list[BaseException] = []

    @app.executor("q", "t")
    async def run(task: Task, actions: Actions) -> None:
        try:
            actions.success(task, bad)
        except ResultNotSerializableError as exc:
            raised.append(exc)
            raise

    [tid] = await app.add_tasks([make_task(force_store=True)])
    await app.run_until_idle()
    assert len(raised) == 1 and isinstance(raised[0], TypeError)
    record = await app.get_task(tid)
    assert record is not None and record.status is TaskStatus.FAILED
    assert "cannot be stored as JSON" in record.execution_stats["last_error"]
    assert record.execution_result is None


async def test_circular_result_fails_the_task(app: TaskQueue) -> None:
    loop: dict[str, Any] = {}
    loop["self"] = loop
    _returning(app, loop)
    [tid] = await app.add_tasks([make_task(force_store=True)])
    await app.run_until_idle()
    record = await app.get_task(tid)
    assert record is not None and record.status is TaskStatus.FAILED
    assert "ResultNotSerializableError" in record.execution_stats["last_error_stack"]


async def test_unserialisable_result_leaves_the_task_undecided_if_caught(app: TaskQueue) -> None:
    @app.executor("q", "t")
    async def run(task: Task, actions: Actions) -> None:
        try:
            actions.success(task, {1, object()})
        except ResultNotSerializableError:
            actions.success(task, "fallback")

    [tid] = await app.add_tasks([make_task(force_store=True)])
    await app.run_until_idle()
    record = await app.get_task(tid)
    assert record is not None
    assert (record.status, record.execution_result) == (TaskStatus.EXECUTED, "fallback")


async def test_large_result_goes_to_the_blob_store_and_reads_back(clock: ManualClock) -> None:
    app = TaskQueue(clock=clock, result_limit=1000)
    big = {"rows": ["x" * 50 for _ in range(40)]}
    assert _json_size(big) > 1000
    _returning(app, big)
    [tid] = await app.add_tasks([make_task(force_store=True, entity=USER)])
    await app.run_until_idle()
    raw = await app.task_store.get(tid)
    assert raw is not None
    marker = raw.execution_result
    assert set(marker) == {MARKER, "size"} and marker["size"] == _json_size(big)
    assert json.loads(await app.blob_store.get(marker[MARKER])) == big
    record = await app.get_task(tid)
    assert record is not None and record.execution_result == big
    [row] = await app.entity_status(USER)
    assert row.result == big


async def test_result_at_the_limit_stays_inline(clock: ManualClock) -> None:
    value = "y" * 98
    limit = _json_size(value)  # 100 bytes with the quotes
    app = TaskQueue(clock=clock, result_limit=limit)

    @app.executor("q", "t")
    async def run(task: Task, actions: Actions) -> None:
        actions.success(task, task.payload)

    ids = await app.add_tasks(
        [
            make_task(payload=value, force_store=True),
            make_task(payload=value + "y", force_store=True),
        ]
    )
    await app.run_until_idle()
    at_limit, over = [await app.task_store.get(i) for i in ids]
    assert at_limit is not None and at_limit.execution_result == value
    assert over is not None and isinstance(over.execution_result, dict)
    assert over.execution_result[MARKER]
    assert (await app.get_task(ids[1])).execution_result == value + "y"


async def test_default_limit_is_256_kib(app: TaskQueue) -> None:
    assert DEFAULT_RESULT_LIMIT == 256 * 1024

    @app.executor("q", "t")
    async def run(task: Task, actions: Actions) -> None:
        actions.success(task, "z" * task.payload)

    ids = await app.add_tasks(
        [
            make_task(payload=200 * 1024, force_store=True),
            make_task(payload=300 * 1024, force_store=True),
        ]
    )
    await app.run_until_idle()
    small, large = [await app.task_store.get(i) for i in ids]
    assert isinstance(small.execution_result, str)
    assert isinstance(large.execution_result, dict) and MARKER in large.execution_result
    assert (await app.get_task(ids[1])).execution_result == "z" * (300 * 1024)


async def test_large_result_of_an_unstored_task_reads_back_through_entity_status(
    clock: ManualClock,
) -> None:
    app = TaskQueue(clock=clock, result_limit=10)
    _returning(app, ["a long enough result"])
    [tid] = await app.add_tasks([make_task(entity=USER)])
    await app.run_until_idle()
    assert await app.get_task(tid) is None
    [row] = await app.entity_status(USER)
    assert row.result == ["a long enough result"]


async def test_listener_receives_the_real_result_even_when_offloaded(clock: ManualClock) -> None:
    app = TaskQueue(clock=clock, result_limit=10)
    events = EventRecorder()
    app.add_listener(events)
    _returning(app, ["a long enough result"])
    [tid] = await app.add_tasks([make_task()])
    await app.run_until_idle()
    assert events.of("completed") == [("completed", tid, ["a long enough result"])]
