"""Rolling deploys: a record from a newer producer with an optional field this release does not
know (same codec version) runs on an older consumer; a record of a newer codec version is
poison ``unknown_version``. Fed to the Lambda handler as Kinesis and SQS events."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.support.lambda_events import Context
from tq_aws import Actions, Task, TaskQueue
from tq_aws.core.codec import decode_task
from tq_aws.runtimes.aws_lambda.loop import close_process_loop
from tq_aws.testing import kinesis_event, sqs_event

NEWER = {
    "v": 1,
    "task": {
        "id": "t-new",
        "type": "send",
        "queue_id": "q",
        "payload": {"to": "a"},
        "priority": "high",  # a field a later release adds
        "entity": {"id": "u-1", "type": "user", "tenant": "acme"},
    },
    "trace": {"id": "abc"},  # beside the task, too
}


@pytest.fixture(autouse=True)
def _fresh_process_loop() -> Iterator[None]:
    close_process_loop()
    yield
    close_process_loop()


def test_the_codec_skips_fields_it_does_not_know() -> None:
    task = decode_task(json.dumps(NEWER).encode())
    assert (task.id, task.payload, task.entity and task.entity.key) == (
        "t-new",
        {"to": "a"},
        "user#u-1",
    )


@pytest.mark.parametrize("event_of", [kinesis_event, sqs_event], ids=["kinesis", "sqs"])
def test_a_newer_producers_record_runs_and_a_newer_version_is_poison(event_of: object) -> None:
    app = TaskQueue()
    ran: list[str] = []

    @app.executor("q", "send")
    async def send(task: Task, actions: Actions) -> None:
        ran.append(task.id or "")
        actions.success(task)

    handler = app.lambda_handler()
    newer_version = json.dumps({"v": 2, "task": {"id": "t-v2", "type": "send", "queue_id": "q"}})
    records = [(json.dumps(NEWER).encode(), "k"), (newer_version.encode(), "k")]
    event = event_of(records)  # type: ignore[operator]

    assert handler(event, Context()) == {"batchItemFailures": []}

    assert ran == ["t-new"]
    [poison] = handler.run(app.poison_records())
    assert poison.reason == "unknown_version"
    assert poison.data == newer_version.encode()
