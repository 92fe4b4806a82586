"""The committed JSON Schema of a task record is the codec's model, and it says what the codec
writes and reads: records ``encode_task`` writes validate, and what the decoder refuses as an
invalid task or an unknown version the schema refuses too."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import jsonschema
import pytest

from tests.docs.wire_schema import build_schema, render, schema_path
from tq_aws import Entity, Task
from tq_aws.core.codec import CODEC_VERSION, decode_task, encode_task
from tq_aws.errors import CodecError

NOW = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(schema_path().read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_committed_schema_is_the_codec_model() -> None:
    path = schema_path()
    assert path.exists(), f"{path} is missing: run .venv/bin/python -m tests.docs.wire_schema"
    assert path.read_text() == render(build_schema()), (
        f"{path.name} drifted from tq_aws.core.codec: if the record changed on purpose, run "
        ".venv/bin/python -m tests.docs.wire_schema, bump CODEC_VERSION when old consumers "
        "cannot read the new records, and update docs/wire-format.md"
    )


def test_schema_names_the_codec_version() -> None:
    schema = build_schema()
    assert schema_path().name == f"task-record.v{CODEC_VERSION}.json"
    assert schema["properties"]["v"]["const"] == CODEC_VERSION


@pytest.mark.parametrize(
    "task",
    [
        Task(id="t-1", type="send", queue_id="emails", created_at=NOW, execute_at=NOW),
        Task(
            id="t-2",
            type="send",
            queue_id="emails",
            payload={"to": "a@b.c", "n": [1, 2.5, None]},
            created_at=NOW,
            execute_at=NOW + timedelta(minutes=5),
            expires_at=NOW + timedelta(days=1),
            retries=3,
            retry_after=0.5,
            partition_key="user-7",
            entity=Entity(id="u-7", type="user"),
            metadata={"log_context": {"request_id": "r-1"}},
            execution_stats={"retry_count": 1, "last_error": "boom"},
        ),
    ],
    ids=["minimal", "every-producer-field"],
)
def test_records_the_codec_writes_validate(
    task: Task, validator: jsonschema.Draft202012Validator
) -> None:
    record = json.loads(encode_task(task))
    validator.validate(record)
    assert decode_task(json.dumps(record).encode()).id == task.id


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        ({"v": 1, "task": {"type": "send"}}, "invalid_task"),  # no queue_id
        ({"v": 1, "task": {"type": "", "queue_id": "q"}}, "invalid_task"),
        ({"v": 1, "task": {"type": "t", "queue_id": "q", "retries": -1}}, "invalid_task"),
        ({"v": 1, "task": {"type": "t", "queue_id": "q", "entity": {"id": "u"}}}, "invalid_task"),
        ({"v": 2, "task": {"type": "t", "queue_id": "q"}}, "unknown_version"),
    ],
)
def test_what_the_decoder_refuses_the_schema_refuses(
    record: dict[str, object], reason: str, validator: jsonschema.Draft202012Validator
) -> None:
    with pytest.raises(CodecError) as refused:
        decode_task(json.dumps(record).encode())
    assert refused.value.reason == reason
    assert not validator.is_valid(record)


def test_a_field_of_a_newer_producer_is_skipped_not_refused(
    validator: jsonschema.Draft202012Validator,
) -> None:
    # Rolling deploys: version 1 only grows by optional fields; an older reader skips them.
    record = {"v": 1, "task": {"type": "t", "queue_id": "q", "colour": "red"}}
    assert not validator.is_valid(record)  # the schema says what to write
    assert decode_task(json.dumps(record).encode()).type == "t"
