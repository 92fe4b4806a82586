"""``add_tasks`` refuses at the call what a backend would fail on later, on the embedded default
as on AWS: each refusal is a ``TaskValidationError`` naming the task's index, the field and the
fix, and nothing of the call is added (no record, no stored task, no schedule, no projection).
The same checks on moto are in tests/aws/test_derived_names.py."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from tests.support.events import USER, make_task
from tq_aws import Actions, Entity, Task, TaskQueue, TaskStatus
from tq_aws.backends.memory import MemoryTaskStore, MemoryTransport
from tq_aws.core.limits import (
    MAX_BYTES_BESIDE_PAYLOAD,
    MAX_ID_BYTES,
    MAX_ID_CHARS,
    MAX_INT_DIGITS,
    MAX_PARTITION_KEY_CHARS,
    MAX_RETRIES,
    MAX_SCHEDULE_AHEAD,
)
from tq_aws.errors import (
    InvalidPartitionKeyError,
    ResultNotSerializableError,
    TaskAlreadyExistsError,
    TaskValidationError,
)
from tq_aws.testing import ManualClock

NAN = float("nan")
INF = float("inf")


def _bad(**fields: Any) -> Task:
    return make_task(**fields)


def _nan_retry_after() -> Task:
    # the constructor refuses NaN (ge=0); a copy does not validate, add_tasks still must
    return make_task().model_copy(update={"retry_after": NAN})


BAD: list[tuple[str, Any, str]] = [
    ("not JSON", lambda: _bad(payload={"when": object()}), "payload.when"),
    ("NaN in a payload", lambda: _bad(payload={"x": [1.0, NAN]}), "payload.x[1]"),
    ("infinity as the payload", lambda: _bad(payload=INF), "payload"),
    ("-infinity in metadata", lambda: _bad(metadata={"m": -INF}), "metadata.m"),
    ("NaN in execution_stats", lambda: _bad(execution_stats={"s": NAN}), "execution_stats.s"),
    (
        "an int over 4,300 digits",
        lambda: _bad(payload={"n": 10**MAX_INT_DIGITS}),
        "payload.n",
    ),
    ("a lone surrogate in the payload", lambda: _bad(payload={"s": "a\ud800"}), "payload.s"),
    ("year 9999", lambda: _bad(execute_at=datetime(9999, 12, 31, tzinfo=UTC)), "execute_at"),
    ("a naive execute_at", lambda: _bad(execute_at=datetime(2030, 1, 1, 9, 0)), "execute_at"),
    ("a naive expires_at", lambda: _bad(expires_at=datetime(2030, 1, 1)), "expires_at"),
    ("a 3,000-character id", lambda: _bad(id="x" * 3000), "id"),
    ("an id too long as the default partition key", lambda: _bad(id="x" * 257), "id"),
    ("an id over 512 bytes", lambda: _bad(id="\U0001f600" * 129), "id"),
    ("a control character in an id", lambda: _bad(id="a\x00b"), "id"),
    ("a newline in an id", lambda: _bad(id="a\nb"), "id"),
    ("a lone surrogate in an id", lambda: _bad(id="a\ud800"), "id"),
    ("a partition key over 256", lambda: _bad(partition_key="k" * 257), "partition_key"),
    ("retry_after=inf", lambda: _bad(retry_after=INF), "retry_after"),
    ("retry_after=NaN", _nan_retry_after, "retry_after"),
    ("retries over the limit", lambda: _bad(retries=MAX_RETRIES + 1), "retries"),
    ("'#' in an entity type", lambda: _bad(entity=Entity(id="1", type="a#b")), "entity.type"),
    ("an entity id too long", lambda: _bad(entity=Entity(id="e" * 3000, type="user")), "entity.id"),
    (
        "metadata too large to stay beside the payload",
        lambda: _bad(metadata={"blob": "x" * MAX_BYTES_BESIDE_PAYLOAD}),
        "metadata",
    ),
    ("a type too long", lambda: _bad(type="t" * 300), "type"),
]


def _good(clock: ManualClock) -> list[Task]:
    return [
        make_task(payload=1, entity=USER, force_store=True),
        make_task(payload=2, entity=USER, execute_at=clock.now() + timedelta(hours=1)),
        make_task(payload=3),
    ]


async def assert_nothing_added(app: TaskQueue) -> None:
    assert app.transport.pending() == 0  # type: ignore[attr-defined]
    assert len(app.task_store) == 0  # type: ignore[arg-type]
    assert app.scheduler.pending_names() == []  # type: ignore[attr-defined]
    assert await app.entity_status(USER) == []
    assert app.stats.added == 0


@pytest.mark.parametrize(("case", "build", "field"), BAD, ids=[b[0] for b in BAD])
async def test_each_refusal_names_the_index_the_field_and_the_fix_and_adds_nothing(
    app: TaskQueue, clock: ManualClock, case: str, build: Any, field: str
) -> None:
    good = _good(clock)
    tasks = [good[0], build(), *good[1:]]
    with pytest.raises(TaskValidationError) as caught:
        await app.add_tasks(tasks)
    error = caught.value
    assert (error.index, error.field) == (1, field), str(error)
    message = str(error)
    assert message.startswith("tasks[1] (q/t") and field in message
    assert "No task of this call was added" in message
    assert ";" in message  # what is wrong; then how to fix it
    await assert_nothing_added(app)
    # the good tasks alone go through
    assert len(await app.add_tasks(good)) == 3


async def test_a_naive_datetime_is_refused_with_the_fix(app: TaskQueue) -> None:
    with pytest.raises(TaskValidationError) as caught:
        await app.add_tasks([make_task(execute_at=datetime.now())])
    assert caught.value.field == "execute_at"
    assert "naive" in str(caught.value) and "datetime.now(UTC)" in str(caught.value)
    # any aware time is fine, whatever its zone
    plus_two = datetime.now(timezone(timedelta(hours=2)))
    [tid] = await app.add_tasks([make_task(execute_at=plus_two, force_store=True)])
    stored = await app.get_task(tid)
    assert stored is not None and stored.execute_at == plus_two


async def test_the_limits_themselves_are_accepted_and_read_back(
    app: TaskQueue, clock: ManualClock
) -> None:
    seen: dict[str, Any] = {}

    @app.executor("q", "t")
    async def run(task: Task, actions: Actions) -> None:
        seen[task.id or ""] = task.payload
        actions.success(task)

    big = 10 ** (MAX_INT_DIGITS - 1)  # exactly 4,300 digits
    tasks = [
        make_task(id="i" * MAX_ID_CHARS, payload={"n": big, "f": 1e308, "s": "NaN"}),
        make_task(id="\U0001f600" * (MAX_ID_BYTES // 4), payload=[-big]),
        make_task(partition_key="k" * MAX_PARTITION_KEY_CHARS, id="a#b", payload=None),
        make_task(id="later", execute_at=clock.now() + MAX_SCHEDULE_AHEAD - timedelta(days=1)),
        make_task(id="retries", retries=MAX_RETRIES, retry_after=0),
    ]
    ids = await app.add_tasks(tasks)
    await app.run_until_idle()
    assert seen == {
        ids[0]: {"n": big, "f": 1e308, "s": "NaN"},
        ids[1]: [-big],
        ids[2]: None,
        "retries": None,
    }
    later = await app.get_task("later")
    assert later is not None and later.status is TaskStatus.SCHEDULED


async def test_duplicate_ids_in_one_call_are_refused(app: TaskQueue) -> None:
    with pytest.raises(TaskValidationError) as caught:
        await app.add_tasks(
            [make_task(id="d", force_store=True), make_task(id="e"), make_task(id="d", payload=2)]
        )
    assert (caught.value.index, caught.value.field) == (2, "id")
    assert "tasks[0]" in str(caught.value) and "'d'" in str(caught.value)
    await assert_nothing_added(app)


@pytest.mark.parametrize("again", ["immediate", "force_store", "future"])
async def test_an_explicit_id_of_a_stored_task_is_refused_and_the_stored_task_is_kept(
    app: TaskQueue, clock: ManualClock, again: str
) -> None:
    runs: list[Any] = []

    @app.executor("q", "t")
    async def run(task: Task, actions: Actions) -> None:
        runs.append((task.id, task.payload))
        actions.success(task)

    await app.add_tasks([make_task(id="order-1", payload="first", force_store=True)])
    fields: dict[str, Any] = {
        "immediate": {},
        "force_store": {"force_store": True},
        "future": {"execute_at": clock.now() + timedelta(minutes=5)},
    }[again]
    retried = [make_task(id="fresh", payload="x"), make_task(id="order-1", payload="2nd", **fields)]
    with pytest.raises(TaskAlreadyExistsError) as caught:
        await app.add_tasks(retried)
    error = caught.value
    assert isinstance(error, TaskValidationError)
    assert (error.task_id, error.index, error.field) == ("order-1", 1, "id")
    assert "'order-1'" in str(error)
    assert await app.get_task("fresh") is None
    stored = await app.get_task("order-1")
    assert stored is not None and stored.payload == "first"
    clock.advance(minutes=10)
    await app.run_until_idle()
    assert runs == [("order-1", "first")]
    # once it ran, the id is still taken
    with pytest.raises(TaskAlreadyExistsError):
        await app.add_tasks([make_task(id="order-1", force_store=True)])
    done = await app.get_task("order-1")
    assert done is not None and done.status is TaskStatus.EXECUTED


async def test_the_engines_own_re_adds_of_children_stay_silent(app: TaskQueue) -> None:
    """A parent delivered twice adds the same children again: no error, one child each."""
    parents: list[str] = []
    children: list[str] = []

    @app.executor("q", "parent")
    async def parent(task: Task, actions: Actions) -> None:
        parents.append(task.id or "")
        actions.add_tasks(
            [make_task("child", id="child-of-p", force_store=True), make_task("child")]
        )
        actions.success(task)

    @app.executor("q", "child")
    async def child(task: Task, actions: Actions) -> None:
        children.append(task.id or "")
        actions.success(task)

    [pid] = await app.add_tasks([make_task("parent", id="p")])
    transport: MemoryTransport = app.transport  # type: ignore[assignment]
    [delivery] = await transport.receive(10)
    await transport.nack([delivery])
    await app.run_until_idle()
    transport.put_raw("q", delivery.data, delivery.partition_key)  # delivered again
    await app.run_until_idle()
    assert parents == [pid, pid]
    assert children.count("child-of-p") == 1  # the stored child's copy ran once
    stored = await app.get_task("child-of-p")
    assert stored is not None and stored.status is TaskStatus.EXECUTED


@pytest.mark.parametrize(
    ("result", "where"),
    [({"ratio": NAN}, "result.ratio"), ([INF], "result[0]"), ({"n": 10**5000}, "result.n")],
)
async def test_a_result_json_cannot_carry_fails_the_attempt_at_success(
    app: TaskQueue, result: Any, where: str
) -> None:
    raised: list[BaseException] = []

    @app.executor("q", "t")
    async def run(task: Task, actions: Actions) -> None:
        try:
            actions.success(task, result)
        except ResultNotSerializableError as exc:
            raised.append(exc)
            raise

    [tid] = await app.add_tasks([make_task()])
    await app.run_until_idle()
    assert len(raised) == 1 and where in str(raised[0])
    stored = await app.get_task(tid)
    assert stored is not None and stored.status is TaskStatus.FAILED
    assert where in str(stored.execution_stats.get("last_error"))
    assert stored.execution_result is None


async def test_the_memory_transport_publishes_all_or_nothing() -> None:
    transport = MemoryTransport()
    good = make_task(id="ok")
    with pytest.raises(InvalidPartitionKeyError):
        await transport.publish([good, make_task(id="bad", partition_key="k" * 257)])
    assert transport.pending() == 0
    with pytest.raises(ValueError):  # not JSON: encoding fails before anything is queued
        await transport.publish([good, make_task(id="x", payload=object())])
    assert transport.pending() == 0


async def test_the_memory_task_store_refuses_ids_the_dynamodb_store_refuses() -> None:
    store = MemoryTaskStore()
    with pytest.raises(TaskValidationError) as caught:
        await store.put([make_task(id="ok"), make_task(id="x" * 3000)])
    assert (caught.value.index, caught.value.field) == (1, "id")
    assert len(store) == 0
    assert await store.create([make_task(id="ok")]) == [True]


def test_nan_and_infinite_floats_are_found_wherever_they_are() -> None:
    from tq_aws.core.json_values import to_checked_json

    assert to_checked_json({"a": "NaN", "b": "Infinity", "c": "1" * 5000}, "v")[1] is None
    deep = {"a": [{"b": (1, {"c": {NAN}})}]}
    problem = to_checked_json(deep, "payload")[1]
    assert problem is not None and problem.path == "payload.a[0].b[1].c[0]"
    assert math.isnan(NAN)
