"""``Task(...)`` and the codec build a task with plain values directly (``fast_fields``) and
leave anything else to pydantic: whatever the input, the task is the one pydantic gives (same
values of the same types, same fields set) or the same error."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from tq_aws import Entity, Task, TaskStatus
from tq_aws.core.codec import _PREFIX, _fast_body, _with_times, decode_task, encode_task
from tq_aws.core.task import fast_fields
from tq_aws.errors import CodecError

VALIDATOR = Task.__pydantic_validator__

texts = st.one_of(st.none(), st.text(max_size=5), st.integers(), st.just(""))
times = st.one_of(
    st.none(),
    st.datetimes(timezones=st.sampled_from([UTC, timezone(timedelta(hours=2))])),
    st.datetimes(),  # naive
    st.just("2026-01-01T00:00:00Z"),
    st.integers(min_value=0, max_value=2**31),
)
odd = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-3, max_value=10),
    st.floats(allow_nan=True),
    st.text(max_size=4),
    st.dictionaries(st.one_of(st.text(max_size=3), st.integers()), st.integers(), max_size=2),
    st.lists(st.integers(), max_size=2),
)
aware = st.datetimes(timezones=st.sampled_from([UTC, timezone(timedelta(hours=2))]))
plain_text = st.one_of(st.none(), st.text(max_size=5))
plain_map = st.dictionaries(st.text(max_size=3), st.integers(), max_size=2)
FIELDS: dict[str, tuple[st.SearchStrategy[Any], st.SearchStrategy[Any]]] = {
    # name: (what pydantic takes as it is, anything else)
    "id": (plain_text, texts),
    "type": (st.sampled_from(["send", "other"]), st.one_of(st.just(""), odd)),
    "queue_id": (st.just("q"), st.one_of(st.just(""), odd)),
    "payload": (odd, odd),
    "execute_at": (st.one_of(st.none(), aware), times),
    "status": (st.sampled_from(list(TaskStatus)), st.one_of(st.sampled_from(["failed", "x"]), odd)),
    "created_at": (st.one_of(st.none(), aware), times),
    "updated_at": (st.one_of(st.none(), aware), times),
    "retries": (st.one_of(st.none(), st.integers(0, 5)), odd),
    "retry_after": (st.one_of(st.none(), st.floats(0, 100)), odd),
    "expires_at": (st.one_of(st.none(), aware), times),
    "processing_started_at": (st.one_of(st.none(), aware), times),
    "force_store": (st.booleans(), odd),
    "execution_stats": (plain_map, odd),
    "partition_key": (plain_text, texts),
    "metadata": (plain_map, odd),
    "task_group": (plain_text, texts),
    "task_hash": (plain_text, texts),
    "execution_result": (odd, odd),
    "entity": (
        st.one_of(st.none(), st.just(Entity(id="e", type="user"))),
        st.one_of(st.just({"id": "e", "type": "u"}), odd),
    ),
    "stored": (st.booleans(), odd),
    "not_a_field": (odd, odd),
}
FIELD_VALUES = {name: st.one_of(plain, other) for name, (plain, other) in FIELDS.items()}


@st.composite
def arguments(draw: st.DrawFn) -> dict[str, Any]:
    names = draw(st.sets(st.sampled_from(sorted(FIELDS)), max_size=6))
    odd_one = draw(st.sampled_from(sorted(names))) if names and draw(st.booleans()) else None
    drawn = {name: draw(FIELDS[name][name == odd_one]) for name in sorted(names)}
    if draw(st.integers(0, 3)):  # mostly a task that can be valid: the fields' checks decide
        drawn.update(type="send", queue_id="q")
        drawn.pop("not_a_field", None)
    return drawn


def same_value(a: Any, b: Any) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, datetime):
        return a == b and a.utcoffset() == b.utcoffset() and repr(a.tzinfo) == repr(b.tzinfo)
    return bool(a == b) or (a != a and b != b)  # NaN is itself


def assert_same(fast: Task, slow: Task) -> None:
    assert fast.__pydantic_fields_set__ == slow.__pydantic_fields_set__
    assert list(fast.__dict__) == list(slow.__dict__)
    for name, value in slow.__dict__.items():
        assert same_value(fast.__dict__[name], value), (name, fast.__dict__[name], value)


@settings(max_examples=2000, deadline=None)
@given(arguments())
def test_task_is_what_pydantic_builds_or_the_same_error(kwargs: dict[str, Any]) -> None:
    try:
        slow = VALIDATOR.validate_python(kwargs)
    except Exception as exc:  # ValidationError, or what a validator let through
        with pytest.raises(type(exc)):
            Task(**kwargs)
        return
    assert_same(Task(**kwargs), slow)
    # a copy of a mutable mapping, as pydantic makes
    for name in ("metadata", "execution_stats"):
        if isinstance(kwargs.get(name), dict):
            assert Task(**kwargs).__dict__[name] is not kwargs[name]


def decode_with_pydantic(data: bytes) -> Task:
    return _with_times(VALIDATOR.validate_json(data[len(_PREFIX) : -1]))


@settings(max_examples=700, deadline=None)
@given(arguments())
def test_a_decoded_record_is_what_pydantic_reads(kwargs: dict[str, Any]) -> None:
    try:
        task = VALIDATOR.validate_python(kwargs)
        data = encode_task(task)
    except (ValidationError, ValueError, OverflowError):
        return
    assert_same_time_values(decode_task(data), decode_with_pydantic(data))


@settings(max_examples=700, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(sorted(set(FIELD_VALUES) - {"not_a_field"})),
        st.one_of(odd, times),
        max_size=6,
    )
)
def test_any_json_object_reads_as_pydantic_reads_it(doc: dict[str, Any]) -> None:
    doc = {"type": "send", "queue_id": "q", **doc}
    data = _PREFIX + json.dumps(doc, default=str).encode() + b"}"
    try:
        slow = decode_with_pydantic(data)
    except ValidationError:
        try:
            decode_task(data)
        except CodecError:
            return
        raise AssertionError(f"{data!r} decoded; pydantic refuses it") from None
    assert_same_time_values(decode_task(data), slow)


def test_what_is_not_plain_is_left_to_pydantic() -> None:
    assert fast_fields({"type": "send"}, json=True) is None  # queue_id is required
    assert fast_fields({"type": "send", "queue_id": "q", "later": 1}, json=True) is None
    assert fast_fields({"type": "send", "queue_id": "q", "retry_after": 1}, json=False) is None
    # a newer producer's field: the codec still reads the record without it
    data = _PREFIX + b'{"type":"send","queue_id":"q","later":1}}'
    assert decode_task(data).type == "send"


def assert_same_time_values(fast: Task, slow: Task) -> None:
    """Decoded times may differ in their zero-offset tzinfo object (pydantic's or UTC)."""
    assert fast.__pydantic_fields_set__ == slow.__pydantic_fields_set__
    assert list(fast.__dict__) == list(slow.__dict__)
    for name, value in slow.__dict__.items():
        got = fast.__dict__[name]
        if isinstance(value, datetime):
            assert isinstance(got, datetime)
            assert got == value and got.utcoffset() == value.utcoffset(), name
        else:
            assert same_value(got, value), (name, got, value)
    assert encode_task(fast) == encode_task(slow)


class Point(BaseModel):
    x: int | None = None
    y: int = 0


nested = st.one_of(
    odd,
    st.builds(Point, x=st.one_of(st.none(), st.integers(0, 3)), y=st.integers(0, 1)),
    st.lists(st.builds(Point), max_size=2),
    st.dictionaries(st.text(max_size=2), st.one_of(odd, st.builds(Point)), max_size=2),
    st.lists(st.integers(), min_size=60, max_size=80),  # over the fast path's budget
    st.sampled_from([float("nan"), float("inf"), b"bytes", (1, 2), {1, 2}]),
)


@settings(max_examples=1000, deadline=None)
@given(arguments(), nested, nested)
def test_a_record_is_written_as_the_model_serializer_writes_it(
    kwargs: dict[str, Any], payload: Any, result: Any
) -> None:
    try:
        task = VALIDATOR.validate_python({**kwargs, "payload": payload, "execution_result": result})
    except Exception:
        return
    try:
        expected = task.model_dump_json(exclude_none=True, exclude_defaults=True).encode()
    except Exception as exc:
        with pytest.raises(type(exc)):
            _fast_body(task, None)
        return
    got = _fast_body(task, None)
    assert got is None or got == expected
