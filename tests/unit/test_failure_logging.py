"""Failures every app logs by default on ``tq_aws.failures``: a WARNING per failed attempt, an
ERROR when a task failed for good, is ignored, or its record is kept as poison; structured
fields for JSON formatters (Powertools); silenced with standard logging configuration."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from datetime import timedelta

import pytest
from aws_lambda_powertools import Logger

from tests.support.events import make_task
from tq_aws import Actions, Task, TaskQueue, TaskStatus
from tq_aws.core.codec import encode_task
from tq_aws.core.lifecycle import FAILURE_LOGGER
from tq_aws.core.prepare import prepare_tasks
from tq_aws.ports import Delivery
from tq_aws.runtimes.aws_lambda.observability import powertools_logger
from tq_aws.testing import ManualClock


def failure_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == FAILURE_LOGGER]


def failing_app(app: TaskQueue) -> None:
    @app.executor("q", "charge", retries=2, retry_after=1)
    async def charge(task: Task, actions: Actions) -> None:
        raise ConnectionError(f"gateway timeout on attempt {task.retry_count + 1}")


async def run_all_attempts(app: TaskQueue, clock: ManualClock) -> None:
    for _ in range(3):
        await app.run_until_idle()
        clock.advance(60)


async def test_each_failed_attempt_is_one_warning_and_exhaustion_one_error(
    app: TaskQueue, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    failing_app(app)
    caplog.set_level(logging.INFO)
    start = clock.now()
    [tid] = await app.add_tasks([make_task("charge")])
    await run_all_attempts(app, clock)

    records = failure_records(caplog)
    assert [r.levelno for r in records] == [logging.WARNING] * 3 + [logging.ERROR]
    first, second, last, exhausted = records
    due_first = start + timedelta(seconds=1)  # retry_after * 1**2
    assert first.getMessage() == (
        f"task {tid} (q/charge) attempt 1 of 3 failed: gateway timeout on attempt 1; "
        f"next attempt at {due_first.isoformat()}"
    )
    assert second.getMessage().endswith(
        "attempt 2 of 3 failed: gateway timeout on attempt 2; next attempt at "
        f"{(start + timedelta(seconds=60 + 4)).isoformat()}"
    )
    assert last.getMessage().endswith(
        "attempt 3 of 3 failed: gateway timeout on attempt 3; no retries left"
    )
    assert exhausted.getMessage() == (
        f"task {tid} (q/charge) failed for good after 3 attempt(s): gateway timeout on attempt 3"
    )
    # the same values as fields of the records, for structured handlers
    assert (first.task_id, first.task_type, first.queue_id, first.attempt) == (  # type: ignore[attr-defined]
        tid,
        "charge",
        "q",
        1,
    )
    assert first.error == "gateway timeout on attempt 1"  # type: ignore[attr-defined]
    assert first.next_attempt_at == due_first.isoformat()  # type: ignore[attr-defined]
    assert last.next_attempt_at is None and last.will_retry is False  # type: ignore[attr-defined]
    assert (exhausted.tq_event, exhausted.total_attempts) == ("task_exhausted", 3)  # type: ignore[attr-defined]
    assert (await app.get_task(tid)).status is TaskStatus.FAILED


async def test_a_permanent_failure_says_so_and_successes_log_nothing(
    app: TaskQueue, caplog: pytest.LogCaptureFixture
) -> None:
    @app.executor("q", "t", retries=5)
    async def run(task: Task, actions: Actions) -> None:
        if task.payload == "bad":
            actions.fail(task, "invalid card", retry=False)
        else:
            actions.success(task)

    caplog.set_level(logging.INFO)
    _, bad = await app.add_tasks([make_task(), make_task(payload="bad")])
    await app.run_until_idle()
    warning, error = failure_records(caplog)
    assert warning.getMessage().endswith(
        "attempt 1 of 6 failed: invalid card; failed permanently, no retry"
    )
    assert (
        error.getMessage()
        == f"task {bad} (q/t) failed permanently after 1 attempt(s): invalid card"
    )


async def test_an_ignored_task_and_a_poison_record_are_one_error_each(
    app: TaskQueue, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    [tid] = await app.add_tasks([make_task("nobody")])
    app.transport.put_raw("q", b"\x00 not a task")  # type: ignore[attr-defined]
    await app.run_until_idle()
    records = failure_records(caplog)
    assert [r.levelno for r in records] == [logging.ERROR, logging.ERROR]
    poison, ignored = records  # the poison record is kept before the batch runs
    [kept] = await app.poison_records()
    assert poison.getMessage() == (
        f"record at {kept.position} of q parked in the poison store ({kept.reason}): {kept.error}"
    )
    assert (poison.position, poison.reason) == (kept.position, kept.reason)  # type: ignore[attr-defined]
    assert ignored.getMessage() == (
        f"task {tid} (q/nobody) ignored: unknown_executor (register an executor for q/nobody)"
    )
    assert ignored.reason == "unknown_executor"  # type: ignore[attr-defined]
    # one line each: the engine's own modules do not repeat them
    repeated = [
        r for r in caplog.records if r.levelno >= logging.ERROR and r.name != FAILURE_LOGGER
    ]
    assert repeated == []


async def test_standard_logging_configuration_silences_them(
    app: TaskQueue, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    failing_app(app)
    caplog.set_level(logging.INFO)
    quiet = logging.getLogger(FAILURE_LOGGER)
    quiet.setLevel(logging.CRITICAL)
    try:
        [tid] = await app.add_tasks([make_task("charge")])
        await run_all_attempts(app, clock)
    finally:
        quiet.setLevel(logging.NOTSET)
    assert failure_records(caplog) == []
    assert (await app.get_task(tid)).status is TaskStatus.FAILED


@pytest.fixture
def restore_tq_logger() -> Iterator[None]:
    lib = logging.getLogger("tq_aws")
    before = (lib.level, lib.propagate, list(lib.handlers))
    yield
    lib.setLevel(before[0])
    lib.propagate = before[1]
    lib.handlers[:] = before[2]


async def test_with_a_powertools_logger_the_lines_are_json_with_their_fields(
    app: TaskQueue, clock: ManualClock, restore_tq_logger: None
) -> None:
    out = io.StringIO()
    powertools_logger(Logger(service="payments", stream=out), "payments")
    failing_app(app)
    [tid] = await app.add_tasks([make_task("charge")])
    await run_all_attempts(app, clock)

    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    failures = [line for line in lines if line.get("tq_event")]
    assert [(line["level"], line["tq_event"]) for line in failures] == [
        ("WARNING", "task_failed"),
        ("WARNING", "task_failed"),
        ("WARNING", "task_failed"),
        ("ERROR", "task_exhausted"),
    ]
    first = failures[0]
    assert (first["task_id"], first["task_type"], first["queue_id"]) == (tid, "charge", "q")
    assert first["error"] == "gateway timeout on attempt 1"
    assert (
        first["next_attempt_at"]
        == (clock.now() - timedelta(seconds=180) + timedelta(seconds=1)).isoformat()
    )
    assert first["service"] == "payments" and first["attempt"] == 1
    assert failures[-1]["total_attempts"] == 3


async def test_a_record_parked_after_its_deliveries_ran_out_is_one_error(
    clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    app = TaskQueue(clock=clock, worker_id="w-1", max_deliveries=2)
    task = prepare_tasks([make_task()], app.registry, clock.now())[0]
    delivery = Delivery.decode("q", encode_task(task), "q:7", deliveries=2)
    caplog.set_level(logging.INFO)
    parked = await app.processor.settle_unrecorded(
        [delivery], RuntimeError("the table refused the write")
    )
    assert parked == [delivery]
    [line] = failure_records(caplog)
    [kept] = await app.poison_records()
    assert line.levelno == logging.ERROR
    assert line.getMessage() == (
        f"record at q:7 of q parked in the poison store ({kept.reason}): {kept.error}"
    )
    assert "the table refused the write" in kept.error
