"""The ECS worker's lifecycle events on moto: worker started, heartbeats and stopped; one
consumer for the stream and one per SQS queue, named on the events of the tasks they deliver.

Every wait is bounded and polls for a state; no assertion depends on how long something took.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from typing import Any

from tests.support.aws import unique
from tq_aws import Actions, Task, TaskQueue
from tq_aws.backends.aws.clients import AwsClients, AwsSettings
from tq_aws.backends.aws.dynamodb import ensure_table
from tq_aws.core.lifecycle import (
    ConsumerStarted,
    ConsumerStopped,
    LifecycleEvent,
    TaskCompleted,
    WorkerHeartbeat,
    WorkerStarted,
    WorkerStopped,
)
from tq_aws.runtimes.ecs import EcsWorker


class Log:
    def __init__(self) -> None:
        self.events: list[LifecycleEvent] = []

    def on_event(self, event: LifecycleEvent) -> None:
        self.events.append(event)

    def of(self, kind: type[Any]) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]


async def until(check: Callable[[], Any], what: str, limit: float = 60.0) -> None:
    deadline = time.monotonic() + limit
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        await asyncio.sleep(0.05)


async def test_the_worker_tells_its_life_and_each_consumer_names_its_tasks(
    aws_settings: AwsSettings,
) -> None:
    clients = AwsClients(aws_settings)
    table = unique("tq-events")
    await asyncio.to_thread(ensure_table, table, aws_settings)
    stream = unique("tq-events")
    clients.sync("kinesis").create_stream(StreamName=stream, ShardCount=1)
    queue_url = clients.sync("sqs").create_queue(QueueName=unique("tq-mail"))["QueueUrl"]
    queue_name = queue_url.rsplit("/", 1)[-1]
    app = TaskQueue.aws(
        stream=stream,
        queue_url=queue_url,
        sqs_queues=["mail"],
        table=table,
        endpoint_url=aws_settings.endpoint_url,
        fire_schedules=False,
    )
    log = Log()
    app.add_listener(log)

    async def done(task: Task, actions: Actions) -> None:
        actions.success(task)

    app.executor("work", "t")(done)
    app.executor("mail", "t")(done)
    work, mail = "k-1", "m-1"
    await app.add_tasks(
        [Task(id=work, type="t", queue_id="work"), Task(id=mail, type="t", queue_id="mail")]
    )
    log.events.clear()
    worker = EcsWorker(
        app,
        worker_id="ecs-1",
        lease_seconds=2.0,
        renew_every=0.3,
        poll_interval=0.05,
        sqs_wait_seconds=1,
        grace_seconds=10.0,
        lifecycle_heartbeat=0.05,
    )
    running = asyncio.create_task(worker.run())
    try:
        await until(lambda: len(log.of(TaskCompleted)) == 2, "both tasks to run")

        def beat_counts_both() -> bool:
            beats = log.of(WorkerHeartbeat)
            return bool(beats) and beats[-1].stats.tasks_processed == 2

        await until(beat_counts_both, "a heartbeat counting both tasks")
    finally:
        worker.request_stop()
        await asyncio.wait_for(running, timeout=60)
        await app.aclose()
        await clients.aclose()

    kinesis, sqs = f"kinesis:{stream}", f"sqs:{queue_name}"
    [started] = log.of(WorkerStarted)
    assert (started.worker_id, started.pid, started.enabled_queues) == (
        app.worker_id,
        os.getpid(),
        ("mail", "work"),
    )
    assert [(c.consumer_id, c.queue_id) for c in log.of(ConsumerStarted)] == [
        (kinesis, stream),
        (sqs, queue_name),
    ]
    by_task = {e.task_id: e.consumer_id for e in log.of(TaskCompleted)}
    assert by_task == {work: kinesis, mail: sqs}
    beat = log.of(WorkerHeartbeat)[-1]
    assert sorted((c.consumer_id, c.tasks_succeeded) for c in beat.active_consumers) == [
        (kinesis, 1),
        (sqs, 1),
    ]
    stopped = log.of(ConsumerStopped)
    assert [(c.consumer_id, c.reason, c.stats.tasks_processed) for c in stopped] == [
        (kinesis, "shutdown", 1),
        (sqs, "shutdown", 1),
    ]
    [end] = log.of(WorkerStopped)
    assert (end.reason, end.final_stats.tasks_succeeded) == ("shutdown", 2)
    assert log.events[0] is started and log.events[-1] is end
