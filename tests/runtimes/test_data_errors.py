"""A task's own data never blocks its key: an error it causes while it runs or is recorded ends
that task (failed, the reason in ``execution_stats``, its projection row written) and the rest
of the batch is recorded as usual; a task that cannot be recorded even as failed is parked in
the poison store. Fed to the Lambda handler as Kinesis events in the shape Lambda sends, on the
embedded default and on moto."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.aws import unique
from tests.support.lambda_events import Context, fail_puts_for, run_to_quiet
from tq_aws import Actions, Entity, Task, TaskQueue
from tq_aws.core.outcomes import DATA_ERROR_KEY
from tq_aws.core.task import TaskStatus
from tq_aws.errors import TaskValidationError
from tq_aws.runtimes.aws_lambda.loop import close_process_loop, process_loop
from tq_aws.testing import kinesis_event, published_records

ORDER = Entity(id="o-1", type="order")


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
    """Apps on the embedded default, or on moto (DynamoDB stores, EventBridge Scheduler)."""

    def make(**options: Any) -> TaskQueue:
        if request.param == "memory":
            return TaskQueue(**options)
        server = request.getfixturevalue("moto_server")
        app = TaskQueue.aws(
            stream=unique("tq-data"), table=unique("tq"), endpoint_url=server, **options
        )
        _fresh_process_loop.append(app)
        process_loop().run_until_complete(app.ensure_resources())
        return app

    make.backend = request.param  # type: ignore[attr-defined]
    return make


def _log_app(app: TaskQueue, log: list[str]) -> None:
    @app.executor("q", "ok")
    async def ok(task: Task, actions: Actions) -> None:
        log.append(task.payload["n"])
        actions.success(task)


def test_failure_meta_that_is_not_json_ends_that_task_and_the_batch_is_recorded(
    make_app: Any,
) -> None:
    app = make_app()
    log: list[str] = []
    _log_app(app, log)

    @app.executor("q", "meta", retries=3)
    async def meta(task: Task, actions: Actions) -> None:
        actions.fail(task, "card declined", meta={"when": object()})

    handler = app.lambda_handler()
    tasks = [
        Task(type="ok", queue_id="q", partition_key="k", payload={"n": "before"}),
        Task(type="meta", queue_id="q", partition_key="k", entity=ORDER, force_store=True),
        Task(type="ok", queue_id="q", partition_key="k", payload={"n": "after"}),
    ]
    records = handler.run(published_records(app, tasks))

    response = handler(kinesis_event(records), Context())

    assert response == {"batchItemFailures": []}
    assert log == ["before", "after"]  # the key moved on past the bad task
    task_id = json.loads(records[1][0])["task"]["id"]
    stored = handler.run(app.get_task(task_id))
    assert stored is not None and stored.status is TaskStatus.FAILED
    reason = stored.execution_stats[DATA_ERROR_KEY]
    assert "fail(meta=...)" in reason and "not JSON" in reason
    assert stored.execution_stats["last_error"] == reason
    assert stored.execution_stats["executor_error"] == "card declined"
    assert "when" not in stored.execution_stats
    [row] = handler.run(app.entity_status(ORDER))
    assert row.status == "failed" and row.error == reason
    if make_app.backend == "memory":
        assert app.next_due() is None  # no retry was scheduled
    # Lambda delivers the event again: nothing is reported, nothing runs twice
    assert handler(kinesis_event(records), Context()) == {"batchItemFailures": []}
    assert log.count("before") + log.count("after") >= 2


def test_a_next_attempt_whose_time_cannot_be_computed_ends_that_task() -> None:
    # Registration refuses retry_after=NaN; an executor spec that holds one anyway (built
    # before that check, or by hand) still cannot wedge the key.
    app = TaskQueue()
    log: list[str] = []
    _log_app(app, log)

    @app.executor("q", "nan", retries=2)
    async def nan(task: Task, actions: Actions) -> None:
        actions.fail(task, "busy")

    spec = app.registry.get("q", "nan")
    assert spec is not None
    app.registry.add(dataclasses.replace(spec, retry_after=float("nan")))
    handler = app.lambda_handler()
    tasks = [
        Task(type="nan", queue_id="q", partition_key="k", force_store=True),
        Task(type="ok", queue_id="q", partition_key="k", payload={"n": "after"}),
    ]
    records = handler.run(published_records(app, tasks))

    assert handler(kinesis_event(records), Context()) == {"batchItemFailures": []}

    assert log == ["after"]
    stored = handler.run(app.get_task(json.loads(records[0][0])["task"]["id"]))
    assert stored is not None and stored.status is TaskStatus.FAILED
    assert "retry_after=nan" in stored.execution_stats[DATA_ERROR_KEY]


def test_a_write_refused_for_a_tasks_data_ends_only_that_task(moto_server: str) -> None:
    # On AWS without a bucket for large values, the retry is over what EventBridge Scheduler
    # (and a DynamoDB item) takes: refused for its own data, at the write. The batch is written
    # task by task instead.
    app = TaskQueue.aws(stream=unique("tq-data"), table=unique("tq"), endpoint_url=moto_server)
    handler = app.lambda_handler()
    handler.run(app.ensure_resources())
    log: list[str] = []
    _log_app(app, log)

    @app.executor("q", "big", retries=2)
    async def big(task: Task, actions: Actions) -> None:
        actions.fail(task, "busy", meta={"dump": "x" * 390_000})

    tasks = [
        Task(type="ok", queue_id="q", partition_key="a", payload={"n": "a"}, force_store=True),
        Task(type="big", queue_id="q", partition_key="k", entity=ORDER, force_store=True),
        Task(type="ok", queue_id="q", partition_key="k", payload={"n": "after"}),
    ]
    records = handler.run(published_records(app, tasks))
    try:
        assert handler(kinesis_event(records), Context()) == {"batchItemFailures": []}

        assert log == ["a", "after"]
        ids = [json.loads(data)["task"]["id"] for data, _ in records]
        first = handler.run(app.get_task(ids[0]))
        assert first is not None and first.status is TaskStatus.EXECUTED
        stored = handler.run(app.get_task(ids[1]))
        assert stored is not None and stored.status is TaskStatus.FAILED
        reason = stored.execution_stats[DATA_ERROR_KEY]
        assert "could not be recorded" in reason and "TooLargeError" in reason
        assert "dump" not in stored.execution_stats
        [row] = handler.run(app.entity_status(ORDER))
        assert row.status == "failed"
    finally:
        handler.run(app.aclose())


def test_a_task_that_cannot_be_recorded_even_as_failed_is_parked(make_app: Any) -> None:
    # A record from another producer whose id no store can key (add_tasks refuses such an id;
    # a record that did not come through add_tasks can still hold one).
    app = make_app()
    log: list[str] = []
    _log_app(app, log)
    handler = app.lambda_handler()
    long_id = "x" * 3_000
    foreign = json.dumps(
        {"v": 1, "task": {"id": long_id, "type": "unknown", "queue_id": "q"}}
    ).encode()
    with pytest.raises(TaskValidationError):
        handler.run(app.add_tasks([Task(id=long_id, type="ok", queue_id="q")]))
    good = handler.run(
        published_records(
            app, [Task(type="ok", queue_id="q", partition_key="k", payload={"n": "after"})]
        )
    )

    event = kinesis_event([(foreign, "k"), *good])
    assert handler(event, Context()) == {"batchItemFailures": []}

    assert log == ["after"]
    [parked] = handler.run(app.poison_records())
    assert parked.reason == "unrecordable" and parked.data == foreign
    assert "TaskValidationError" in parked.error
    assert parked.position.endswith("/1")
    # delivered again, it is the same poison record, and the key still moves on
    assert run_to_quiet(handler, event["Records"]) == 1
    assert len(handler.run(app.poison_records())) == 1


def test_an_infrastructure_failure_is_still_reported_for_redelivery(make_app: Any) -> None:
    app = make_app()
    log: list[str] = []
    _log_app(app, log)
    handler = app.lambda_handler()
    tasks = [
        Task(type="ok", queue_id="q", partition_key="k", payload={"n": "one"}, force_store=True)
    ]
    records = handler.run(published_records(app, tasks))
    fail_puts_for(app, {json.loads(records[0][0])["task"]["id"]}, error=ConnectionError)

    response = handler(kinesis_event(records), Context())

    assert response == {"batchItemFailures": [{"itemIdentifier": "1"}]}
    assert handler.run(app.poison_records()) == []
    assert handler(kinesis_event(records), Context()) == {"batchItemFailures": []}
