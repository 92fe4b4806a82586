"""Producers in other languages: a Node.js script on the AWS SDK for JavaScript v3
(``tests/interop/node/producer.mjs``) puts task records on a moto server's Kinesis stream, SQS
queue and FIFO queue (and one payload in S3 behind a claim-check marker), writing the bytes
``docs/wire-format.md`` describes; the records read back from the stream and the queues are
fed to a tq-aws Lambda handler as Lambda would send them, and each task runs once, in order
per partition key and per FIFO group.

The Node packages come from ``npm ci`` in ``tests/interop/node`` (``make interop``). Without
them the test is skipped on a developer's machine, never under CI.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from tests.support.aws import REGION, unique
from tq_aws import Actions, Entity, Task, TaskQueue
from tq_aws.core.codec import decode_task
from tq_aws.testing.moto import MotoServer

NODE_DIR = Path(__file__).resolve().parent / "node"
ACCOUNT = "123456789012"

if not (NODE_DIR / "node_modules" / "@aws-sdk" / "client-kinesis").is_dir():
    if os.environ.get("CI") == "true":
        raise RuntimeError(
            "tests/interop/node/node_modules is missing under CI: `make interop` runs npm ci"
        )
    pytest.skip(
        "the Node packages are not installed: run `make interop` (npm ci in tests/interop/node)",
        allow_module_level=True,
    )


class Context:
    """The Lambda context the handler reads."""

    function_name = "tq-worker"
    aws_request_id = "interop"
    memory_limit_in_mb = 1024
    invoked_function_arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:tq-worker"

    def get_remaining_time_in_millis(self) -> int:
        return 120_000


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    """moto on 127.0.0.1, Kinesis puts one at a time (moto numbers records without a lock)."""
    with MotoServer(serialize="kinesis_puts") as server:
        yield server.endpoint


def kinesis_events(kinesis: Any, stream: str) -> list[dict[str, Any]]:
    """One Lambda event per shard with every record of the shard, shaped as Lambda sends it."""
    arn = kinesis.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"][
        "StreamARN"
    ]
    events = []
    for shard in kinesis.list_shards(StreamName=stream)["Shards"]:
        shard_id = shard["ShardId"]
        iterator = kinesis.get_shard_iterator(
            StreamName=stream, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        records = kinesis.get_records(ShardIterator=iterator)["Records"]
        if records:
            events.append(
                {
                    "Records": [
                        {
                            "kinesis": {
                                "kinesisSchemaVersion": "1.0",
                                "partitionKey": r["PartitionKey"],
                                "sequenceNumber": r["SequenceNumber"],
                                "data": base64.b64encode(r["Data"]).decode("ascii"),
                                "approximateArrivalTimestamp": r[
                                    "ApproximateArrivalTimestamp"
                                ].timestamp(),
                            },
                            "eventSource": "aws:kinesis",
                            "eventVersion": "1.0",
                            "eventID": f"{shard_id}:{r['SequenceNumber']}",
                            "eventName": "aws:kinesis:record",
                            "awsRegion": REGION,
                            "eventSourceARN": arn,
                        }
                        for r in records
                    ]
                }
            )
    return events


def sqs_events(sqs: Any, queue_url: str) -> list[dict[str, Any]]:
    """The queue's messages as Lambda SQS events (up to 10 messages each)."""
    arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    events = []
    while True:
        messages = sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=0,
            VisibilityTimeout=300,
            AttributeNames=["All"],
        ).get("Messages", [])
        if not messages:
            return events
        events.append(
            {
                "Records": [
                    {
                        "messageId": m["MessageId"],
                        "receiptHandle": m["ReceiptHandle"],
                        "body": m["Body"],
                        "attributes": m.get("Attributes", {}),
                        "messageAttributes": {},
                        "md5OfBody": hashlib.md5(m["Body"].encode()).hexdigest(),
                        "eventSource": "aws:sqs",
                        "eventSourceARN": arn,
                        "awsRegion": REGION,
                    }
                    for m in messages
                ]
            }
        )


def run_producer(endpoint: str, **names: str) -> list[dict[str, Any]]:
    """Run ``producer.mjs`` against the moto server; return what it says it put."""
    node = shutil.which("node")
    assert node, "node is not on PATH"
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", "/tmp"),
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_EC2_METADATA_DISABLED": "true",
        "TQ_ENDPOINT_URL": endpoint,
        "TQ_REGION": REGION,
        **{f"TQ_{name.upper()}": value for name, value in names.items()},
    }
    done = subprocess.run(
        [node, "producer.mjs"], cwd=NODE_DIR, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def test_records_put_by_the_aws_sdk_for_javascript_run_in_order(endpoint: str) -> None:
    stream = unique("tq-interop")
    queue_url = f"{endpoint}/{ACCOUNT}/{unique('tq-emails')}"
    fifo_url = f"{endpoint}/{ACCOUNT}/{unique('tq-billing')}.fifo"
    bucket = unique("tq-blobs")
    app = TaskQueue.aws(
        stream=stream,
        queue_url=queue_url,
        sqs_queues={"emails": queue_url, "billing": fifo_url},
        table=unique("tq"),
        bucket=bucket,
        scheduler_role_arn=f"arn:aws:iam::{ACCOUNT}:role/tq",
        region=REGION,
        endpoint_url=endpoint,
    )
    ran: dict[str, list[tuple[str, Any]]] = defaultdict(list)  # ordering key -> (id, payload)

    @app.executor("orders", "ship")
    def ship(task: Task, actions: Actions) -> None:
        ran[task.partition_key or task.id or ""].append((task.id or "", task.payload))
        actions.success(task, {"shipped": task.payload["order"]})

    @app.executor("emails", "send")
    def send(task: Task, actions: Actions) -> None:
        ran["emails"].append((task.id or "", task.payload))
        actions.success(task)

    @app.executor("billing", "charge")
    def charge(task: Task, actions: Actions) -> None:
        ran[task.partition_key or ""].append((task.id or "", task.payload))
        actions.success(task)

    handler: Any = app.lambda_handler()
    try:
        handler.run(app.ensure_resources())
        put = run_producer(
            endpoint,
            stream=stream,
            queue_url=queue_url,
            fifo_queue_url=fifo_url,
            bucket=bucket,
        )
        assert len(put) == 15
        config = Config(retries={"max_attempts": 1})
        kinesis = boto3.client("kinesis", endpoint_url=endpoint, region_name=REGION, config=config)
        sqs = boto3.client("sqs", endpoint_url=endpoint, region_name=REGION, config=config)
        events = [
            *kinesis_events(kinesis, stream),
            *sqs_events(sqs, queue_url),
            *sqs_events(sqs, fifo_url),
        ]
        # the partition keys on the stream are the ones the producer chose
        on_stream = {
            decode_task(base64.b64decode(r["kinesis"]["data"])).id: r["kinesis"]["partitionKey"]
            for e in events
            if e["Records"][0]["eventSource"] == "aws:kinesis"
            for r in e["Records"]
        }
        assert on_stream == {p["id"]: p["key"] for p in put if p["transport"] == "kinesis"}
        for event in events:
            assert handler(event, Context()) == {"batchItemFailures": []}
        rows = handler.run(app.entity_status(Entity(id="o-1", type="order")))
    finally:
        handler.run(app.aclose())

    every_id = [task_id for runs in ran.values() for task_id, _ in runs]
    assert sorted(every_id) == sorted(p["id"] for p in put)  # each task ran, once
    assert [payload["step"] for _, payload in ran["order-o-1"]] == [1, 2, 3]  # Kinesis key order
    assert [payload["step"] for _, payload in ran["account-a-1"]] == [1, 2, 3]  # FIFO group
    assert sorted(payload["n"] for _, payload in ran["emails"]) == [1, 2, 3]  # JSON and base64
    orders = {p["order"]: p for runs in ran.values() for _, p in runs if "order" in p}
    assert len(orders["o-big"]["note"]) == 2000  # a zlib-compressed Kinesis record
    assert orders["o-large"] == {"order": "o-large", "step": 1, "lines": 5000}  # claim check
    assert [(r.status, r.result) for r in rows] == [("executed", {"shipped": "o-1"})] * 3
    assert app.stats.poison == 0
