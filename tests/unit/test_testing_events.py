"""``tq_aws.testing.published_records``, ``kinesis_event`` and ``sqs_event``: events in the shape
Lambda sends (the fields of the AWS documentation, Powertools' test events and ``sam local
generate-event``; parsed by Powertools' own event models), built from the records an app's
transport makes, on the embedded default and on moto."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator

import boto3
import pytest
from aws_lambda_powertools.utilities.data_classes import KinesisStreamEvent, SQSEvent
from aws_lambda_powertools.utilities.parser.models import KinesisDataStreamModel, SqsModel

import tq_aws.testing
from tests.support.aws import REGION, unique
from tests.support.lambda_events import Context
from tq_aws import Actions, Task, TaskQueue
from tq_aws.core.codec import decode_sqs_body, decode_task
from tq_aws.runtimes.aws_lambda.loop import close_process_loop, process_loop
from tq_aws.testing import kinesis_event, published_records, sqs_event

KINESIS_RECORD_FIELDS = {
    "kinesis",
    "eventSource",
    "eventVersion",
    "eventID",
    "eventName",
    "invokeIdentityArn",
    "awsRegion",
    "eventSourceARN",
}
KINESIS_FIELDS = {
    "kinesisSchemaVersion",
    "partitionKey",
    "sequenceNumber",
    "data",
    "approximateArrivalTimestamp",
}
SQS_RECORD_FIELDS = {
    "messageId",
    "receiptHandle",
    "body",
    "attributes",
    "messageAttributes",
    "md5OfBody",
    "eventSource",
    "eventSourceARN",
    "awsRegion",
}
SQS_ATTRIBUTES = {
    "ApproximateReceiveCount",
    "SentTimestamp",
    "SenderId",
    "ApproximateFirstReceiveTimestamp",
}
FIFO_ATTRIBUTES = SQS_ATTRIBUTES | {"MessageGroupId", "MessageDeduplicationId", "SequenceNumber"}


@pytest.fixture(autouse=True)
def _fresh_process_loop() -> Iterator[None]:
    close_process_loop()
    yield
    close_process_loop()


def test_the_helpers_load_lazily_with_the_rest_of_tq_aws_testing() -> None:
    assert tq_aws.testing.kinesis_event is kinesis_event
    assert {"published_records", "kinesis_event", "sqs_event"} <= set(tq_aws.testing.__all__)


def test_a_kinesis_event_has_the_shape_lambda_sends() -> None:
    arn = "arn:aws:kinesis:eu-west-1:123456789012:stream/orders"
    event = kinesis_event([(b'{"v":1}', "k-1"), (b"\x00\xff", None)], stream_arn=arn)

    first, second = event["Records"]
    for record in (first, second):
        assert set(record) == KINESIS_RECORD_FIELDS
        assert set(record["kinesis"]) == KINESIS_FIELDS
        assert record["eventSource"] == "aws:kinesis"
        assert record["eventName"] == "aws:kinesis:record"
        assert record["awsRegion"] == "eu-west-1" and record["eventSourceARN"] == arn
        assert isinstance(record["kinesis"]["approximateArrivalTimestamp"], float)
    assert first["eventID"] == "shardId-000000000000:1"
    assert base64.b64decode(first["kinesis"]["data"]) == b'{"v":1}'
    assert second["kinesis"]["partitionKey"] == hashlib.md5(b"\x00\xff").hexdigest()
    # Powertools reads it as Lambda's own
    parsed = KinesisDataStreamModel.model_validate(event)
    assert parsed.Records[1].kinesis.data == b"\x00\xff"
    assert next(KinesisStreamEvent(event).records).kinesis.sequence_number == "1"


def test_an_sqs_event_has_the_shape_lambda_sends() -> None:
    event = sqs_event([(b'{"v":1}', None)], receive_count=3)
    [record] = event["Records"]
    assert set(record) == SQS_RECORD_FIELDS
    assert set(record["attributes"]) == SQS_ATTRIBUTES
    assert record["attributes"]["ApproximateReceiveCount"] == "3"
    assert record["md5OfBody"] == hashlib.md5(record["body"].encode()).hexdigest()
    assert SqsModel.model_validate(event).Records[0].body == '{"v":1}'

    fifo = sqs_event(
        [(b'{"v":1}', "g-1"), (b"\x78\x9c\x00binary", "g-2")],
        queue_arn="arn:aws:sqs:us-east-1:123456789012:tq.fifo",
    )
    first, second = fifo["Records"]
    assert set(first["attributes"]) == FIFO_ATTRIBUTES
    assert first["attributes"]["MessageGroupId"] == "g-1"
    assert decode_sqs_body(second["body"]) == b"\x78\x9c\x00binary"  # base64, as SQS carries
    assert next(SQSEvent(fifo).records).attributes.message_group_id == "g-1"


def _app(app: TaskQueue, log: list[str]) -> TaskQueue:
    @app.executor("q", "send")
    async def send(task: Task, actions: Actions) -> None:
        log.append(task.payload["to"])
        actions.success(task)

    return app


def test_published_records_on_the_embedded_default_feed_the_handler() -> None:
    log: list[str] = []
    app = _app(TaskQueue(), log)
    handler = app.lambda_handler()
    tasks = [
        Task(type="send", queue_id="q", payload={"to": "a"}, partition_key="user-1"),
        Task(type="send", queue_id="q", payload={"to": "b"}),
    ]

    records = handler.run(published_records(app, tasks))

    assert [decode_task(data).payload for data, _ in records] == [{"to": "a"}, {"to": "b"}]
    assert records[0][1] == "user-1" and records[1][1] == decode_task(records[1][0]).id
    assert handler.run(app.source.receive(10)) == []  # handed back, not queued
    assert handler(kinesis_event(records), Context()) == {"batchItemFailures": []}
    assert handler(sqs_event(records), Context()) == {"batchItemFailures": []}
    assert log == ["a", "b", "a", "b"]


def test_published_records_on_aws_are_what_the_transports_would_send(moto_server: str) -> None:
    stream, queue = unique("tq-events"), unique("tq-events") + ".fifo"
    kinesis = boto3.client("kinesis", region_name=REGION, endpoint_url=moto_server)
    sqs = boto3.client("sqs", region_name=REGION, endpoint_url=moto_server)
    kinesis.create_stream(StreamName=stream, ShardCount=1)
    url = f"{moto_server}/123456789012/{queue}"  # made by ensure_resources
    log: list[str] = []
    app = TaskQueue.aws(
        stream=stream,
        sqs_queues={"mail": url},
        table=unique("tq"),
        endpoint_url=moto_server,
        compress_over=64,
    )
    _app(app, log)

    @app.executor("mail", "send")
    async def mail(task: Task, actions: Actions) -> None:
        log.append(task.payload["to"])
        actions.success(task)

    handler = app.lambda_handler()
    loop = process_loop()
    try:
        loop.run_until_complete(app.ensure_resources())
        big = {"to": "c", "text": "x" * 500}
        records = loop.run_until_complete(
            published_records(
                app,
                [
                    Task(type="send", queue_id="q", payload={"to": "a"}, partition_key="k"),
                    Task(type="send", queue_id="mail", payload=big, partition_key="g"),
                ],
            )
        )
        [(data, key), (body, group)] = records
        assert key == "k" and decode_task(data).payload == {"to": "a"}
        assert group == "g"
        assert decode_task(decode_sqs_body(body.decode())).payload == big  # compressed body
        # nothing was sent: the stream and the queue are empty
        shard = kinesis.list_shards(StreamName=stream)["Shards"][0]["ShardId"]
        iterator = kinesis.get_shard_iterator(
            StreamName=stream, ShardId=shard, ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        assert kinesis.get_records(ShardIterator=iterator)["Records"] == []
        assert "Messages" not in sqs.receive_message(QueueUrl=url, WaitTimeSeconds=0)

        queue_arn = f"arn:aws:sqs:{REGION}:123456789012:{queue}"
        assert handler(kinesis_event(records[:1]), Context()) == {"batchItemFailures": []}
        sqs_records = sqs_event(records[1:], queue_arn=queue_arn)
        assert sqs_records["Records"][0]["attributes"]["MessageGroupId"] == "g"
        assert handler(sqs_records, Context()) == {"batchItemFailures": []}
        assert log == ["a", "c"]
    finally:
        loop.run_until_complete(app.aclose())
