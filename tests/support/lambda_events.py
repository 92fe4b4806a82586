"""Lambda events and invocations for the runtime tests, built on ``tq_aws.testing.events`` (the
event shapes users build their own tests with): a Lambda context whose remaining time a test
drives, the records a memory app published as one Kinesis shard's, and Lambda's redelivery."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tq_aws import TaskQueue
from tq_aws.runtimes.aws_lambda.handler import reported_identifiers
from tq_aws.runtimes.aws_lambda.loop import process_loop
from tq_aws.testing import events

REGION = events.REGION
ACCOUNT = events.ACCOUNT
STREAM_ARN = f"arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/tq-memory"
SHARD = events.SHARD_ID


class Context:
    """A Lambda context: ``remaining_ms`` may be changed while the handler runs, and
    ``on_remaining`` is called whenever the handler asks for the remaining time."""

    function_name = "tq-test-fn"

    def __init__(
        self,
        remaining_ms: int = 900_000,
        on_remaining: Callable[[], None] | None = None,
        request_id: str = "req-1",
    ):
        self.remaining_ms = remaining_ms
        self.on_remaining = on_remaining
        self.aws_request_id = request_id

    def get_remaining_time_in_millis(self) -> int:
        if self.on_remaining is not None:
            self.on_remaining()
        return self.remaining_ms


def kinesis_record(
    data: bytes,
    partition_key: str,
    sequence: str,
    *,
    arrival: float = events.ARRIVAL,
    stream_arn: str = STREAM_ARN,
    shard: str = SHARD,
) -> dict[str, Any]:
    """One record of a Kinesis event, as Lambda shapes it (stream ``tq-memory`` unless told)."""
    return events.kinesis_record(
        data, partition_key, sequence, stream_arn=stream_arn, shard_id=shard, arrival=arrival
    )


def sqs_record(
    message_id: str, body: str, queue_arn: str, attributes: dict[str, str]
) -> dict[str, Any]:
    """One record of an SQS event, as Lambda shapes it, with the message's own attributes."""
    return dict(events.sqs_record(body, message_id, queue_arn=queue_arn), attributes=attributes)


def drain_memory_kinesis(app: TaskQueue) -> list[dict[str, Any]]:
    """The records the memory transport holds, as the records of one Kinesis shard (sequence
    numbers 1, 2, ... in publish order)."""
    source = app.source
    assert source is not None
    records: list[dict[str, Any]] = []
    loop = process_loop()
    for delivery in loop.run_until_complete(source.receive(100_000)):
        sequence = str(len(records) + 1)
        records.append(kinesis_record(delivery.data, delivery.partition_key or "", sequence))
    return records


def restart_at_lowest(
    records: list[dict[str, Any]], response: dict[str, Any]
) -> list[dict[str, Any]]:
    """What Lambda delivers next from a Kinesis shard: every record from the lowest reported
    sequence number on."""
    reported = [int(s) for s in reported_identifiers(response)]
    if not reported:
        return []
    lowest = min(reported)
    return [r for r in records if int(r["kinesis"]["sequenceNumber"]) >= lowest]


def sequences(records: list[dict[str, Any]]) -> list[str]:
    return [r["kinesis"]["sequenceNumber"] for r in records]


class WriteFailed(RuntimeError):
    """A store write that failed (injected): a fault that lasts, not a passing one."""


def fail_puts_for(
    app: TaskQueue, task_ids: set[str], times: int = 1, error: type[Exception] = WriteFailed
) -> dict[str, int]:
    """Make ``app.task_store.put`` raise ``error`` when it writes one of ``task_ids``
    (``times`` times each); returns the count of injected failures per id."""
    store: Any = app.task_store
    original = store.put
    failures: dict[str, int] = {}

    async def put(tasks: Any) -> Any:
        for task in tasks:
            if task.id in task_ids and failures.get(task.id, 0) < times:
                failures[task.id] = failures.get(task.id, 0) + 1
                raise error(f"injected: the write of task {task.id} failed")
        return await original(tasks)

    store.put = put
    return failures


def run_to_quiet(
    handler: Callable[[dict[str, Any], Any], dict[str, Any]],
    records: list[dict[str, Any]],
    *,
    limit: int = 12,
) -> int:
    """Invoke ``handler`` as Lambda does on one shard (restart at the lowest reported sequence
    number) until nothing is reported; return the number of invocations, at most ``limit``."""
    event = records
    invocations = 0
    while event and invocations < limit:
        invocations += 1
        response = handler({"Records": event}, Context())
        event = restart_at_lowest(records, response)
    return invocations
