"""The ECS worker on moto: a record whose batch keeps failing is parked in the poison store after
``max_deliveries`` deliveries (Kinesis: failed deliveries counted in the poison store; SQS:
``ApproximateReceiveCount``), so the shard or the queue moves on; its neighbours, run alone, are
recorded."""

from __future__ import annotations

import pytest

from tests.runtimes.test_ecs_worker import FAST, Env, Running, env, until  # noqa: F401
from tests.support.lambda_events import fail_puts_for
from tq_aws import Task
from tq_aws.core.task import TaskStatus
from tq_aws.runtimes.ecs import EcsWorker


def _tasks(queue: str) -> list[Task]:
    return [
        Task(id=f"{queue}-{i}", type="record", queue_id=queue, partition_key=key, force_store=True)
        for i, key in enumerate(["k", "k", "j"])
    ]


@pytest.mark.parametrize("source", ["kinesis", "sqs"])
async def test_a_record_that_keeps_failing_is_parked_and_the_rest_run(
    env: Env,  # noqa: F811
    source: str,
) -> None:
    if source == "kinesis":
        env.make_stream(1)
        queue, options = "work", {}
    else:
        env.make_queue()
        queue, options = "work", {"sqs_wait_seconds": 1, "sqs_visibility_timeout": 120}
    app = env.app(batch_size=10)
    app.processor.max_deliveries = 3
    stuck, *others = _tasks(queue)
    await app.add_tasks([stuck, *others])
    fail_puts_for(app, {stuck.id or ""}, times=1_000)

    running = Running(EcsWorker(app, worker_id="solo", **FAST, **options))  # type: ignore[arg-type]
    await until(
        lambda: {t.id for t in others} <= set(env.executed()), "the other records to run", 60
    )
    parked = await until(app.poison_records, "the stuck record to be parked", 60)
    report = await running.stop()

    [record] = parked
    assert record.reason == "max_deliveries" and "WriteFailed" in record.error
    assert report.stats.records_parked >= 1
    for task in others:
        stored = await app.get_task(task.id or "")
        assert stored is not None and stored.status is TaskStatus.EXECUTED
    if source == "sqs":
        assert env.queue_counts() == (0, 0)  # the parked message was deleted too
