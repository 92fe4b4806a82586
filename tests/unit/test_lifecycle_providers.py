"""The built-in Powertools providers: a structured JSON line per lifecycle event (Logger), and
EMF metrics per event (Metrics), read back from what they write."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from itertools import count
from typing import Any

import pytest
from aws_lambda_powertools import Logger, Metrics

from tests.support.events import make_task
from tq_aws import Actions, Join, Task, TaskQueue
from tq_aws.runtimes.providers import PowertoolsLoggerProvider, PowertoolsMetricsProvider
from tq_aws.testing import ManualClock

_services = count()


@pytest.fixture
def metrics() -> Iterator[Metrics]:
    made = Metrics(namespace="TqTest", service="orders")
    yield made
    made.clear_metrics()  # Powertools keeps metrics per process, not per instance


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def retrying_app(app: TaskQueue) -> None:
    @app.executor("q", "t", retries=1, retry_after=2)
    async def run(task: Task, actions: Actions) -> None:
        if task.retry_count == 0:
            raise ConnectionError("payments API unreachable")
        actions.success(task, "paid")


async def test_the_logger_provider_writes_each_event_as_a_json_line_with_its_fields(
    app: TaskQueue, clock: ManualClock
) -> None:
    out = io.StringIO()
    log = Logger(service=f"orders-{next(_services)}", stream=out, level="DEBUG")
    app.add_listener(PowertoolsLoggerProvider(log))
    retrying_app(app)
    [tid] = await app.add_tasks([make_task(metadata={"log_context": {"order": "o-7"}})])
    await app.run_until_idle()
    clock.advance(2)
    await app.run_until_idle()

    lines = json_lines(out.getvalue())
    assert [line["event"] for line in lines] == [
        "task_scheduled",
        "batch_started",
        "task_started",
        "task_failed",
        "batch_completed",
        "batch_started",
        "task_started",
        "task_completed",
        "batch_completed",
    ]
    failed = lines[3]
    assert failed["level"] == "WARNING"
    assert failed["message"] == f"task_failed {tid} (q/t): payments API unreachable"
    assert (failed["task_id"], failed["task_type"], failed["queue_id"]) == (tid, "t", "q")
    assert (failed["attempt"], failed["max_retries"], failed["will_retry"]) == (1, 1, True)
    assert failed["error"] == "payments API unreachable"
    assert failed["next_attempt_at"] == "2026-01-01T00:00:02+00:00"
    assert failed["log_context"] == {"order": "o-7"} and failed["worker_id"] == "w-1"
    assert failed["timing"]["processing_duration_ms"] == 0.0
    completed = lines[7]
    assert (completed["level"], completed["attempt"]) == ("INFO", 2)
    assert "result" not in completed and "payload" not in completed  # never user data
    assert [line["level"] for line in lines if line["event"] == "task_started"] == ["DEBUG"] * 2
    assert all("tq_context" not in line for line in lines)


async def test_the_logger_provider_writes_only_the_events_it_is_given_at_their_level(
    app: TaskQueue, capsys: pytest.CaptureFixture[str]
) -> None:
    log = Logger(service=f"orders-{next(_services)}")  # INFO, on standard output
    app.add_listener(
        PowertoolsLoggerProvider(log, events={"task_exhausted", "task_ignored"}, levels={})
    )
    app.executor("q", "t")(lambda task, actions: actions.fail(task, "out of stock"))
    failing, unknown = await app.add_tasks([make_task(), make_task("nobody")])
    await app.run_until_idle()
    lines = json_lines(capsys.readouterr().out)
    assert [(line["event"], line["task_id"], line["level"]) for line in lines] == [
        ("task_exhausted", failing, "ERROR"),
        ("task_ignored", unknown, "ERROR"),
    ]
    assert lines[0]["total_attempts"] == 1 and lines[1]["reason"] == "unknown_executor"


async def test_the_metrics_provider_publishes_emf_after_each_batch(
    app: TaskQueue, clock: ManualClock, metrics: Metrics, capsys: pytest.CaptureFixture[str]
) -> None:
    app.add_listener(PowertoolsMetricsProvider(metrics))
    retrying_app(app)
    await app.add_tasks([make_task(), make_task()])
    await app.run_until_idle()
    clock.advance(2)
    await app.run_until_idle()

    blobs = json_lines(capsys.readouterr().out)
    assert len(blobs) == 2  # one flush per delivered batch
    first, second = blobs
    [directive] = first["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == "TqTest" and directive["Dimensions"] == [["service"]]
    assert first["service"] == "orders"
    assert first["TasksScheduled"] == [1.0, 1.0]
    assert first["TaskAttemptsFailed"] == [1.0, 1.0] and first["TasksRetried"] == [1.0, 1.0]
    assert (first["Batches"], first["BatchSize"]) == ([1.0], [2.0])
    assert "TasksCompleted" not in first
    units = {m["Name"]: m["Unit"] for m in directive["Metrics"]}
    assert units["BatchDuration"] == "Milliseconds" and units["TasksScheduled"] == "Count"
    assert second["TasksCompleted"] == [1.0, 1.0]
    assert second["TaskQueuedTime"] == [2000.0, 2000.0]  # added, then due 2 s later
    assert "TaskAttemptsFailed" not in second


async def test_the_metrics_provider_counts_flows_and_poison_and_can_leave_flushing_to_the_caller(
    app: TaskQueue, metrics: Metrics, capsys: pytest.CaptureFixture[str]
) -> None:
    provider = PowertoolsMetricsProvider(metrics, flush="never")
    app.add_listener(provider)

    @app.executor("q", "parent")
    async def parent(task: Task, actions: Actions) -> None:
        steps = [Task(type="step", queue_id="q") for _ in range(2)]
        actions.start_flow(steps, Join(queue_id="q", type="done"))
        actions.success(task)

    app.executor("q", "step")(lambda task, actions: actions.success(task))
    app.executor("q", "done")(lambda task, actions: actions.success(task))
    await app.add_tasks([make_task("parent")])
    app.transport.put_raw("q", b"not a task")  # type: ignore[attr-defined]
    await app.run_until_idle()
    assert json_lines(capsys.readouterr().out) == []  # nothing flushed by the provider
    metrics.flush_metrics()
    [blob] = json_lines(capsys.readouterr().out)
    assert (blob["FlowsStarted"], blob["FlowsCompleted"], blob["PoisonRecords"]) == (
        [1.0],
        [1.0],
        [1.0],
    )
    assert blob["TasksCompleted"] == [1.0] * 4  # the parent, two steps, the join


def test_default_providers_make_their_own_powertools_objects(
    capsys: pytest.CaptureFixture[str],
) -> None:
    provider = PowertoolsMetricsProvider(service="svc")
    assert provider.metrics.namespace == "tq"
    provider.flush_metrics()  # nothing added: nothing written, no warning
    assert capsys.readouterr().out == ""
    logger_provider = PowertoolsLoggerProvider(service=f"svc-{next(_services)}")
    assert isinstance(logger_provider.logger, Logger)
