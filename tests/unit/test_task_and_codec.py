"""The task model, ids and defaults at ``add_tasks``, validation, and the wire codec."""

from __future__ import annotations

import json
import uuid
import zlib
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from tests.support.events import USER, make_task
from tq_aws import Entity, Task, TaskQueue, TaskStatus
from tq_aws.core.codec import decode_task, encode_task
from tq_aws.core.task import is_naive
from tq_aws.errors import CodecError, TaskValidationError
from tq_aws.testing import ManualClock

# -- the model ---------------------------------------------------------------------------


def test_task_needs_only_type_and_queue_and_starts_scheduled() -> None:
    t = Task(type="send", queue_id="emails")
    assert t.status is TaskStatus.SCHEDULED
    assert (t.id, t.payload, t.retries, t.retry_after, t.execute_at) == (
        None,
        None,
        None,
        None,
        None,
    )
    assert t.execution_stats == {} and t.metadata == {}
    assert t.retry_count == 0
    assert t.log_context == {}


@pytest.mark.parametrize(
    "fields",
    [
        {"type": "", "queue_id": "q"},
        {"type": "t", "queue_id": ""},
        {"type": "t", "queue_id": "q", "retries": -1},
        {"type": "t", "queue_id": "q", "retry_after": -0.5},
        {"type": "t", "queue_id": "q", "no_such_field": 1},
    ],
)
def test_task_rejects_invalid_fields(fields: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        Task(**fields)


def test_datetimes_are_normalised_to_utc() -> None:
    naive = datetime(2026, 3, 1, 12, 0)
    plus_two = datetime(2026, 3, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))
    t = make_task(execute_at=naive, expires_at=plus_two)
    # a naive time reads as UTC, marked so that add_tasks can refuse it (see
    # tests/unit/test_add_tasks_validation.py)
    assert t.execute_at == datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    assert t.execute_at is not None and is_naive(t.execute_at)
    assert t.expires_at == datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    assert t.expires_at.tzinfo is UTC and not is_naive(t.expires_at)
    assert t.expires_at.utcoffset() == timedelta(0)


def test_a_zone_at_utc_only_part_of_the_year_is_normalised_too() -> None:
    london = ZoneInfo("Europe/London")
    winter = make_task(execute_at=datetime(2026, 1, 1, 12, 0, tzinfo=london))
    # +00:00 on that day, but not a fixed offset: kept as UTC, so the engine can compare it
    # under any zero-offset tzinfo without its meaning moving with the season
    assert winter.execute_at is not None and winter.execute_at.tzinfo is UTC
    assert winter.execute_at == datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def test_retry_count_reads_execution_stats() -> None:
    assert make_task(execution_stats={"retry_count": 3}).retry_count == 3
    assert make_task(execution_stats={"retry_count": "3"}).retry_count == 0


def test_entity_is_frozen_and_keyed_by_type_and_id() -> None:
    e = Entity(id="u-1", type="user")
    assert e.key == "user#u-1"
    with pytest.raises(ValidationError):
        e.id = "u-2"
    with pytest.raises(ValidationError):
        Entity(id="", type="user")


# -- ids and defaults at add_tasks ---------------------------------------------------------


async def test_add_tasks_assigns_uuid7_ids_in_order(app: TaskQueue) -> None:
    ids = await app.add_tasks([make_task(payload=i, force_store=True) for i in range(20)])
    assert len(ids) == len(set(ids)) == 20
    assert all(uuid.UUID(i).version == 7 for i in ids)
    assert ids == sorted(ids)  # time-sortable, in the order given
    later = await app.add_tasks([make_task()])
    assert later[0] > ids[-1]
    for n, tid in enumerate(ids):
        record = await app.get_task(tid)
        assert record is not None and record.payload == n


async def test_add_tasks_keeps_a_callers_id(app: TaskQueue) -> None:
    ids = await app.add_tasks([make_task(id="mine-1", force_store=True), make_task()])
    assert ids[0] == "mine-1"
    assert ids[1] != "mine-1" and uuid.UUID(ids[1]).version == 7
    record = await app.get_task("mine-1")
    assert record is not None and record.id == "mine-1"


async def test_add_tasks_fills_times_from_the_clock(app: TaskQueue, clock: ManualClock) -> None:
    clock.advance(seconds=42)
    [tid] = await app.add_tasks([make_task(force_store=True)])
    record = await app.get_task(tid)
    assert record is not None
    assert record.created_at == record.updated_at == record.execute_at == clock.now()
    assert record.status is TaskStatus.SCHEDULED


async def test_add_tasks_does_not_modify_the_callers_objects(app: TaskQueue) -> None:
    task = make_task(force_store=True)
    await app.add_tasks([task])
    assert task.id is None and task.created_at is None and task.stored is False


class Email(BaseModel):
    to: str
    subject: str = ""


async def test_payload_model_failure_names_the_field_and_adds_nothing(app: TaskQueue) -> None:
    @app.executor("emails", "send", payload_model=Email)
    async def send(task: Task, actions: object) -> None:
        raise AssertionError("must not run")

    good_future = make_task(
        "send",
        "emails",
        payload={"to": "a@b.c"},
        execute_at=app.clock.now() + timedelta(hours=1),
        entity=USER,
    )
    good_stored = make_task("send", "emails", payload={"to": "x@y.z"}, force_store=True)
    bad = make_task("send", "emails", payload={"subject": "hi"})
    with pytest.raises(TaskValidationError) as info:
        await app.add_tasks([good_future, good_stored, bad])
    err = info.value
    assert isinstance(err, ValueError)
    assert "payload.to" in str(err)
    assert err.field == "payload.to" and err.index == 2
    assert app.transport.pending() == 0
    assert len(app.task_store) == 0
    assert app.scheduler.next_due() is None
    assert await app.entity_status(USER) == []
    assert app.stats.added == 0
    assert await app.run_until_idle() == 0


async def test_payload_model_accepts_a_valid_payload(app: TaskQueue) -> None:
    got: list[object] = []

    @app.executor("emails", "send", payload_model=Email)
    async def send(task: Task, actions: object) -> None:
        got.append(task.payload)
        actions.success(task)

    await app.add_tasks([make_task("send", "emails", payload={"to": "a@b.c"})])
    await app.run_until_idle()
    assert got == [{"to": "a@b.c"}]


async def test_expires_before_execute_is_rejected(app: TaskQueue, clock: ManualClock) -> None:
    at = clock.now() + timedelta(seconds=10)
    with pytest.raises(TaskValidationError) as info:
        await app.add_tasks([make_task(execute_at=at, expires_at=at)])
    assert info.value.field == "expires_at"
    assert app.transport.pending() == 0


async def test_add_tasks_rejects_non_task_items(app: TaskQueue) -> None:
    with pytest.raises(TaskValidationError) as info:
        await app.add_tasks([make_task(), {"type": "t", "queue_id": "q"}])
    assert info.value.index == 1
    assert app.transport.pending() == 0


# -- codec ---------------------------------------------------------------------------------


def _full_task() -> Task:
    return Task(
        id="01234567-89ab-7cde-8f01-23456789abcd",
        type="send",
        queue_id="emails",
        payload={"to": "a@b.c", "n": [1, 2.5, None, True], "nested": {"k": None}},
        execute_at=datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC),
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
        retries=0,
        retry_after=0.0,
        expires_at=datetime(2026, 1, 3, tzinfo=timezone(timedelta(hours=-5))),
        force_store=True,
        execution_stats={"retry_count": 2, "last_error": "boom"},
        partition_key="pk-1",
        metadata={"log_context": {"request_id": "r-1"}},
        execution_result={"ok": None},
        entity=Entity(id="u-1", type="user"),
        stored=True,
    )


def test_encode_is_a_versioned_json_envelope_with_utc_iso_datetimes() -> None:
    data = encode_task(_full_task())
    doc = json.loads(data)
    assert set(doc) == {"v", "task"} and doc["v"] == 1
    assert doc["task"]["execute_at"] == "2026-01-02T03:04:05.678000Z"
    assert doc["task"]["expires_at"] == "2026-01-03T05:00:00Z"
    # Explicit zeros are kept; defaults and None fields are left out.
    assert doc["task"]["retries"] == 0 and doc["task"]["retry_after"] == 0.0
    assert "status" not in doc["task"] and "task_hash" not in doc["task"]


def test_codec_round_trip_keeps_every_field() -> None:
    task = _full_task()
    assert decode_task(encode_task(task)) == task


def test_times_equal_to_created_at_are_left_out_and_read_back() -> None:
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    added = make_task(created_at=now, updated_at=now, execute_at=now)
    doc = json.loads(encode_task(added))["task"]
    assert doc["created_at"] == "2026-01-02T03:04:05Z"
    assert "execute_at" not in doc and "updated_at" not in doc
    back = decode_task(encode_task(added))
    assert (back.execute_at, back.updated_at) == (now, now)
    assert back == added

    retried = make_task(created_at=now, updated_at=now + timedelta(seconds=9), execute_at=now)
    doc = json.loads(encode_task(retried))["task"]
    assert "execute_at" not in doc and doc["updated_at"] == "2026-01-02T03:04:14Z"
    assert decode_task(encode_task(retried)) == retried


def test_an_absent_time_stays_absent_when_created_at_is_set() -> None:
    now = datetime(2026, 1, 2, tzinfo=UTC)
    task = make_task(created_at=now, execute_at=now)  # no updated_at
    doc = json.loads(encode_task(task))["task"]
    assert doc["updated_at"] is None and "execute_at" not in doc
    back = decode_task(encode_task(task, compress_over=0))
    assert back.updated_at is None and back.execute_at == now
    # a record that spells every time out (as earlier releases wrote them) reads the same
    at = '"2026-01-02T00:00:00Z"'
    old = f'{{"v":1,"task":{{"type":"t","queue_id":"q","execute_at":{at},"created_at":{at},'
    old += f'"updated_at":{at}}}}}'
    assert decode_task(old.encode()) == make_task(created_at=now, updated_at=now, execute_at=now)


def test_compression_over_threshold_round_trips() -> None:
    task = make_task(payload={"text": "hello " * 500})
    plain = encode_task(task)
    packed = encode_task(task, compress_over=100)
    assert plain[:1] == b"{"
    assert packed[:1] == b"\x78" and len(packed) < len(plain)
    assert zlib.decompress(packed) == plain
    assert decode_task(packed) == task
    assert encode_task(task, compress_over=len(plain)) == plain  # not over: not compressed


def test_compression_is_dropped_when_it_does_not_shrink_the_record() -> None:
    task = make_task()
    assert encode_task(task, compress_over=0) == encode_task(task)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"garbage", "malformed"),
        (b"", "malformed"),
        (b"x\x9cnot-really-zlib", "malformed"),
        (b"[1, 2]", "malformed"),
        (b'{"task": {"type": "t", "queue_id": "q"}}', "malformed"),
        (b'{"v": 2, "task": {"type": "t", "queue_id": "q"}}', "unknown_version"),
        (b'{"v": 1, "task": {"queue_id": "q"}}', "invalid_task"),
        (b'{"v": 1, "task": {"type": "t", "queue_id": "q", "retries": -1}}', "invalid_task"),
        (b"\xff\xfe{", "malformed"),
    ],
)
def test_decode_errors_carry_a_reason(data: bytes, reason: str) -> None:
    with pytest.raises(CodecError) as info:
        decode_task(data)
    assert info.value.reason == reason


def test_invalid_task_error_names_the_field() -> None:
    with pytest.raises(CodecError) as info:
        decode_task(b'{"v": 1, "task": {"queue_id": "q"}}')
    assert "task.type" in str(info.value)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
_aware = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.timezones()
)


@settings(max_examples=60, deadline=None, derandomize=True, database=None)
@given(
    payload=_json,
    execute_at=_aware,
    retry_count=st.integers(min_value=0, max_value=50),
    log_context=st.dictionaries(st.text(min_size=1, max_size=5), st.text(max_size=10), max_size=3),
    compress_over=st.none() | st.integers(min_value=0, max_value=400),
)
def test_codec_round_trip_property(
    payload: object,
    execute_at: datetime,
    retry_count: int,
    log_context: dict[str, str],
    compress_over: int | None,
) -> None:
    task = make_task(
        id="i-1",
        payload=payload,
        execute_at=execute_at,
        execution_stats={"retry_count": retry_count},
        metadata={"log_context": log_context} if log_context else {},
    )
    back = decode_task(encode_task(task, compress_over=compress_over))
    assert back == task
    assert back.execute_at is not None and back.execute_at.utcoffset() == timedelta(0)
    assert back.execute_at == execute_at.astimezone(UTC)
