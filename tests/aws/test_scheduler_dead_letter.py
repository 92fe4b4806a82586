"""The deploy templates' schedule dead-letter queue reaches every schedule the app creates."""

from __future__ import annotations

from typing import Any

import boto3
import pytest

from tests.support.aws import REGION, unique
from tq_aws import Task, TaskQueue
from tq_aws.backends.aws.scheduler import EventBridgeScheduler
from tq_aws.testing import ManualClock

DLQ = "arn:aws:sqs:us-east-1:123456789012:tq-schedule-dlq"


def test_from_env_reads_the_schedule_dead_letter_queue(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TQ_STREAM", "tq-stream")
    monkeypatch.setenv("TQ_ENDPOINT_URL", "http://127.0.0.1:1")
    monkeypatch.setenv("TQ_SCHEDULER_DLQ_ARN", DLQ)
    app = TaskQueue.from_env()
    assert isinstance(app.scheduler, EventBridgeScheduler)
    assert app.scheduler.dead_letter_arn == DLQ


def test_without_the_variable_schedules_carry_no_dead_letter_queue(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TQ_STREAM", "tq-stream")
    monkeypatch.setenv("TQ_ENDPOINT_URL", "http://127.0.0.1:1")
    monkeypatch.delenv("TQ_SCHEDULER_DLQ_ARN", raising=False)
    app = TaskQueue.from_env()
    assert isinstance(app.scheduler, EventBridgeScheduler)
    assert app.scheduler.dead_letter_arn is None


async def test_a_retry_schedule_names_the_dead_letter_queue(moto_server: str) -> None:
    """On moto: a failed attempt's retry schedule has the queue as its target's dead letter."""
    group = unique("grp")
    app = TaskQueue.aws(
        stream=unique("stream"),
        table=unique("tbl"),
        scheduler_group=group,
        endpoint_url=moto_server,
        clock=ManualClock(),
        fire_schedules=False,
        scheduler_dead_letter_arn=DLQ,
    )

    @app.executor("q", "flaky", retries=1, retry_after=3600)
    async def flaky(task: Task, actions: Any) -> None:
        raise RuntimeError("boom")

    try:
        await app.ensure_resources()
        await app.add_tasks([Task(type="flaky", queue_id="q", payload={})])
        await app.run_until_idle()
    finally:
        await app.aclose()
    client = boto3.client("scheduler", region_name=REGION, endpoint_url=moto_server)
    [summary] = client.list_schedules(GroupName=group)["Schedules"]
    schedule = client.get_schedule(Name=summary["Name"], GroupName=group)
    assert schedule["Target"]["DeadLetterConfig"] == {"Arn": DLQ}
