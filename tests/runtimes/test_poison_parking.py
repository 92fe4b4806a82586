"""Bounded deliveries: a record that still cannot be recorded after ``max_deliveries``
deliveries (Kinesis: counted in the poison store; SQS: ``ApproximateReceiveCount``) is parked
in the poison store with its bytes, reason and exception, so its key moves on; a passing fault
(throttling, connections) parks nothing. Lambda events in the shapes Lambda sends, on memory
and moto."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.aws import unique
from tests.support.lambda_events import Context, fail_puts_for, run_to_quiet
from tq_aws import Actions, Task, TaskQueue
from tq_aws.core.task import TaskStatus
from tq_aws.errors import ConfigurationError
from tq_aws.runtimes.aws_lambda.handler import reported_identifiers
from tq_aws.runtimes.aws_lambda.loop import close_process_loop, process_loop
from tq_aws.testing import kinesis_event, published_records, sqs_event


@pytest.fixture(autouse=True)
def _fresh_process_loop() -> Iterator[list[TaskQueue]]:
    apps: list[TaskQueue] = []
    close_process_loop()
    yield apps
    loop = process_loop()
    for app in apps:
        loop.run_until_complete(app.aclose())
    close_process_loop()


@pytest.fixture(params=["memory", "moto"])
def make_app(request: pytest.FixtureRequest, _fresh_process_loop: list[TaskQueue]) -> Any:
    def make(**options: Any) -> TaskQueue:
        if request.param == "memory":
            return TaskQueue(**options)
        server = request.getfixturevalue("moto_server")
        app = TaskQueue.aws(
            stream=unique("tq-park"), table=unique("tq"), endpoint_url=server, **options
        )
        _fresh_process_loop.append(app)
        process_loop().run_until_complete(app.ensure_resources())
        return app

    return make


def _app_with_log(make_app: Any, **options: Any) -> tuple[TaskQueue, list[tuple[str, int]]]:
    app = make_app(**options)
    log: list[tuple[str, int]] = []

    @app.executor("q", "step")
    async def step(task: Task, actions: Actions) -> None:
        log.append((task.payload["key"], task.payload["n"]))
        actions.success(task)

    return app, log


def _steps(*order: tuple[str, int]) -> list[Task]:
    return [
        Task(
            type="step",
            queue_id="q",
            partition_key=key,
            payload={"key": key, "n": n},
            force_store=True,
        )
        for key, n in order
    ]


def _id(record: tuple[bytes, str | None]) -> str:
    return str(json.loads(record[0])["task"]["id"])


def test_a_record_that_keeps_failing_is_parked_after_max_deliveries(make_app: Any) -> None:
    app, log = _app_with_log(make_app, max_deliveries=3)
    handler = app.lambda_handler()
    records = handler.run(published_records(app, _steps(("a", 0), ("b", 0), ("a", 1))))
    stuck = _id(records[0])
    fail_puts_for(app, {stuck}, times=1_000)  # a fault that lasts (not throttling)
    event = kinesis_event(records)["Records"]

    invocations = run_to_quiet(handler, event)

    assert invocations == 3  # the third failed delivery parks it; the key moves on
    [parked] = handler.run(app.poison_records())
    assert parked.reason == "max_deliveries"
    assert parked.data == records[0][0]  # the bytes, for a redrive after the fix
    assert "WriteFailed" in parked.error and "3 deliveries" in parked.error
    assert parked.position.endswith("/1")
    # its neighbour in the batch was run alone and recorded, not parked with it
    assert ("b", 0) in log and ("a", 1) in log
    for record in records[1:]:
        stored = handler.run(app.get_task(_id(record)))
        assert stored is not None and stored.status is TaskStatus.EXECUTED


def test_a_passing_fault_parks_nothing(make_app: Any) -> None:
    app, _ = _app_with_log(make_app, max_deliveries=2)
    handler = app.lambda_handler()
    records = handler.run(published_records(app, _steps(("a", 0))))
    fail_puts_for(app, {_id(records[0])}, times=5, error=ConnectionError)
    event = kinesis_event(records)

    for _ in range(5):  # an outage longer than max_deliveries
        assert reported_identifiers(handler(event, Context())) == ["1"]

    assert handler.run(app.poison_records()) == []
    assert handler(event, Context()) == {"batchItemFailures": []}  # it recovered
    stored = handler.run(app.get_task(_id(records[0])))
    assert stored is not None and stored.status is TaskStatus.EXECUTED


def test_sqs_receive_count_bounds_the_deliveries() -> None:
    app, log = _app_with_log(lambda **o: TaskQueue(**o), max_deliveries=4)
    handler = app.lambda_handler(sub_batch_size=1)
    records = handler.run(published_records(app, _steps(("g", 0), ("g", 1))))
    fail_puts_for(app, {_id(records[0])}, times=1_000)
    arn = "arn:aws:sqs:us-east-1:123456789012:tq.fifo"

    early = handler(sqs_event(records, queue_arn=arn, receive_count=3), Context())
    assert reported_identifiers(early) == ["m-1", "m-2"]  # the group waits
    assert handler.run(app.poison_records()) == []

    late = handler(sqs_event(records, queue_arn=arn, receive_count=4), Context())
    assert late == {"batchItemFailures": []}
    [parked] = handler.run(app.poison_records())
    assert (parked.reason, parked.position) == ("max_deliveries", "m-1")
    assert log[-1] == ("g", 1)  # the group moved on


def test_no_bound_means_retry_for_ever() -> None:
    app, _ = _app_with_log(lambda **o: TaskQueue(**o), max_deliveries=None)
    handler = app.lambda_handler()
    records = handler.run(published_records(app, _steps(("a", 0))))
    fail_puts_for(app, {_id(records[0])}, times=1_000)
    event = kinesis_event(records)
    for _ in range(12):
        assert reported_identifiers(handler(event, Context())) == ["1"]
    assert handler.run(app.poison_records()) == []


def test_the_bound_is_read_from_tq_max_deliveries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TQ_STREAM", raising=False)
    monkeypatch.delenv("TQ_QUEUE_URL", raising=False)
    monkeypatch.delenv("TQ_SQS_QUEUES", raising=False)
    monkeypatch.setenv("TQ_MAX_DELIVERIES", "7")
    assert TaskQueue.from_env().processor.max_deliveries == 7
    assert TaskQueue.from_env(max_deliveries=2).processor.max_deliveries == 2
    monkeypatch.setenv("TQ_MAX_DELIVERIES", "none")
    assert TaskQueue.from_env().processor.max_deliveries is None
    monkeypatch.delenv("TQ_MAX_DELIVERIES")
    assert TaskQueue.from_env().processor.max_deliveries == 10
    monkeypatch.setenv("TQ_MAX_DELIVERIES", "0")
    with pytest.raises(ConfigurationError, match="TQ_MAX_DELIVERIES"):
        TaskQueue.from_env()
    with pytest.raises(ConfigurationError, match="max_deliveries"):
        TaskQueue(max_deliveries=0)
