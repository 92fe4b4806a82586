"""With ``payload_model``, the executor gets the validated model: ``actions.payload(task)``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel

from tests.support.events import make_task
from tq_aws import Actions, Task, TaskQueue, TaskStatus
from tq_aws.core.outcomes import PERMANENT_KEY
from tq_aws.testing import ManualClock


class Address(BaseModel):
    city: str


class Email(BaseModel):
    to: str
    send_at: datetime
    address: Address


PAYLOAD = {"to": "a@b.c", "send_at": "2024-05-01T12:00:00Z", "address": {"city": "Oslo"}}


async def test_the_executor_gets_its_payload_as_the_model(app: TaskQueue) -> None:
    seen: list[Any] = []

    @app.executor("q", "t", payload_model=Email)
    async def run(task: Task, actions: Actions) -> None:
        email = actions.payload(task)
        typed = actions.payload(task, Email)
        seen.extend([email, typed, task.payload])
        actions.success(task, {"city": email.address.city})

    await app.add_tasks([make_task(payload=PAYLOAD)])
    await app.run_until_idle()
    email, typed, raw = seen
    assert isinstance(email, Email) and typed is email  # validated once per task
    assert email.send_at == datetime(2024, 5, 1, 12, tzinfo=UTC)
    assert email.address == Address(city="Oslo")
    assert raw == PAYLOAD  # the record carries plain JSON; the task's payload stays as it was


async def test_a_model_given_as_the_payload_arrives_as_the_model(app: TaskQueue) -> None:
    seen: list[Email] = []

    @app.executor("q", "t", payload_model=Email)
    def run(task: Task, actions: Actions) -> None:
        seen.append(actions.payload(task, Email))
        actions.success(task)

    sent = Email.model_validate(PAYLOAD)
    await app.add_tasks([make_task(payload=sent)])
    await app.run_until_idle()
    assert seen == [sent]


async def test_batch_and_parallel_executors_get_each_tasks_model(app: TaskQueue) -> None:
    cities: list[str] = []

    @app.batch_executor("q", "batch", payload_model=Address)
    async def batch(tasks: list[Task], actions: Actions) -> None:
        for t in tasks:
            cities.append(actions.payload(t, Address).city)
            actions.success(t)

    @app.executor("q", "par", parallel=True, chunk_size=2, payload_model=Address)
    def par(task: Task, actions: Actions) -> None:
        cities.append("par " + actions.payload(task).city)
        actions.success(task)

    await app.add_tasks(
        [make_task(type="batch", payload={"city": c}) for c in ("Oslo", "Rome")]
        + [make_task(type="par", payload={"city": c}) for c in ("Lima", "Kyiv", "Baku")]
    )
    await app.run_until_idle()
    assert cities[:2] == ["Oslo", "Rome"]
    assert sorted(cities[2:]) == ["par Baku", "par Kyiv", "par Lima"]


async def test_without_a_model_the_payload_comes_as_it_is(app: TaskQueue) -> None:
    seen: list[Any] = []

    @app.executor("q", "t")
    async def run(task: Task, actions: Actions) -> None:
        seen.append(actions.payload(task))
        seen.append(actions.payload(task, Address))  # a model named at the call
        actions.success(task)

    await app.add_tasks([make_task(payload={"city": "Oslo"})])
    await app.run_until_idle()
    assert seen == [{"city": "Oslo"}, Address(city="Oslo")]


async def test_a_payload_that_does_not_match_fails_the_task_for_good(
    app: TaskQueue, clock: ManualClock
) -> None:
    """A record that reached the executor without matching its model (added before the model
    was registered, or by an older producer): a retry would carry the same payload."""
    attempts: list[int] = []
    [tid] = await app.add_tasks([make_task(payload={"to": 5}, force_store=True)])

    @app.executor("q", "t", retries=3, retry_after=1, payload_model=Email)
    async def run(task: Task, actions: Actions) -> None:
        attempts.append(task.retry_count)
        actions.payload(task)
        actions.success(task)

    for _ in range(3):
        await app.run_until_idle()
        clock.advance(seconds=600)
    assert attempts == [0]
    record = await app.get_task(tid)
    assert record is not None and record.status is TaskStatus.FAILED
    stats = record.execution_stats
    assert stats[PERMANENT_KEY] is True
    assert stats["payload_error_field"] == "payload.to"
    assert "payload.to" in stats["last_error"] and "Email" in stats["last_error"]
