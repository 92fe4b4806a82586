"""TaskStore.reopen contract (an operator's retry): one conditional write from ``failed`` at a
given attempt to the next attempt; a repeat, or any other stored state, changes nothing. The
same assertions over the memory store and the DynamoDB store (moto)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.support.aws import REGION, unique
from tq_aws.backends.aws.clients import AwsSettings
from tq_aws.backends.aws.dynamodb import DynamoTaskStore, ensure_table
from tq_aws.backends.memory import MemoryTaskStore
from tq_aws.core.task import Task, TaskStatus

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(params=["memory", "dynamodb"])
def store(request: pytest.FixtureRequest) -> Iterator[Any]:
    if request.param == "memory":
        yield MemoryTaskStore()
        return
    request.getfixturevalue("moto")
    settings = AwsSettings(region=REGION, max_attempts=1)
    table = unique("tq-reopen")
    ensure_table(table, settings)
    yield DynamoTaskStore(table, settings)


def failed(attempt: int) -> Task:
    return Task(
        id="t-1",
        type="t",
        queue_id="q",
        status=TaskStatus.FAILED,
        created_at=NOW,
        updated_at=NOW,
        execution_stats={"retry_count": attempt, "last_error": "boom"},
    )


def next_attempt(attempt: int) -> Task:
    return failed(attempt).model_copy(
        update={
            "status": TaskStatus.SCHEDULED,
            "updated_at": NOW + timedelta(minutes=1),
            "execution_stats": {"retry_count": attempt + 1},
            "metadata": {"operator_retries": 1},
        }
    )


async def test_a_failed_record_is_reopened_once(store: Any) -> None:
    await store.put([failed(2)])
    assert await store.reopen(next_attempt(2), failed_attempt=2) is True
    stored = await store.get("t-1")
    assert (stored.status, stored.retry_count) == (TaskStatus.SCHEDULED, 3)
    assert stored.metadata == {"operator_retries": 1}
    assert "last_error" not in stored.execution_stats
    # the same retry again: the record is no longer failed at attempt 2
    assert await store.reopen(next_attempt(2), failed_attempt=2) is False
    assert (await store.get("t-1")).retry_count == 3


async def test_only_a_failed_record_at_that_attempt_is_reopened(store: Any) -> None:
    assert await store.reopen(next_attempt(0), failed_attempt=0) is False  # never stored
    assert await store.get("t-1") is None
    await store.put([failed(1)])
    assert await store.reopen(next_attempt(0), failed_attempt=0) is False  # another attempt
    for status in (TaskStatus.EXECUTED, TaskStatus.CANCELLED, TaskStatus.SCHEDULED):
        other = Task(id=f"t-{status.value}", type="t", queue_id="q", status=status)
        await store.put([other])
        again = other.model_copy(update={"status": TaskStatus.SCHEDULED})
        assert await store.reopen(again, failed_attempt=0) is False
        assert (await store.get(other.id or "")).status is status


async def test_a_reopened_record_is_claimed_at_its_new_attempt_only(store: Any) -> None:
    await store.put([failed(0)])
    await store.reopen(next_attempt(0), failed_attempt=0)
    old = failed(0).model_copy(update={"status": TaskStatus.SCHEDULED})
    claims = await store.claim([old], NOW)
    assert claims["t-1"].state.value == "stale"  # a late copy of the failed attempt
    claims = await store.claim([next_attempt(0)], NOW)
    assert claims["t-1"].state.value == "run"
