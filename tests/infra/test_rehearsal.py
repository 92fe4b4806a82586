"""The offline rehearsal: the SAM template's resources are created on a moto server on
127.0.0.1 (CloudFormation ``create_stack`` for the types moto supports; the schedule group and
the table's TTL from the template's own properties, since moto skips them; the queue and
bucket policies are left out, as moto neither supports nor enforces them), the functions'
environment is the template's own ``Environment`` resolved against that stack, and the
``lambdas/`` worker is fed the records read back from that stream and queue until a flow has
joined. Template, environment names and code cannot disagree."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import os
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.config import Config

from tests.infra.aws_calls import api_calls, needed_actions
from tests.infra.conftest import sam_transform
from tests.infra.templates import Template
from tests.support.aws import REGION, unique
from tq_aws import Entity, Task, TaskQueue

APP_SPEC = "tests.infra.rehearsal_app:app"
PARAMETERS = {"SqsQueueIds": "items", "AppSpec": APP_SPEC}
# What moto's CloudFormation creates; the rest is made from the template's properties below.
CREATED_BY_STACK = {
    "AWS::DynamoDB::Table",
    "AWS::Kinesis::Stream",
    "AWS::SQS::Queue",
    "AWS::S3::Bucket",
    "AWS::IAM::Role",
    "AWS::Logs::LogGroup",
}


class Context:
    """The Lambda context the handler reads (name, request id, remaining time)."""

    function_name = "tq-worker"
    aws_request_id = "rehearsal"
    memory_limit_in_mb = 1024
    invoked_function_arn = f"arn:aws:lambda:{REGION}:123456789012:function:tq-worker"

    def get_remaining_time_in_millis(self) -> int:
        return 120_000


@pytest.fixture(scope="module")
def transformed(tmp_path_factory: pytest.TempPathFactory) -> Template:
    out = tmp_path_factory.mktemp("rehearsal") / "template.json"
    return Template(sam_transform(out, **PARAMETERS), **PARAMETERS)


def deploy(template: Template, endpoint: str) -> dict[str, str]:
    """Create the template's resources on moto; return the worker function's environment,
    resolved against the stack."""
    stack_name = unique("tq")
    group = f"{stack_name}-ScheduleGroup"
    resources: dict[str, Any] = {}
    for name, resource in template.resources.items():
        if resource["Type"] in CREATED_BY_STACK:
            resources[name] = {
                "Type": resource["Type"],
                "Properties": template.with_parameters(resource.get("Properties", {})),
            }
    worker_name, _ = template.function("worker.handler")
    raw_env = template.raw(worker_name)["Properties"]["Environment"]["Variables"]
    env_exprs = {k: template.with_parameters(v) for k, v in raw_env.items()}
    outputs = {
        f"Env{i}": {"Value": expr}
        for i, expr in enumerate(env_exprs.values())
        if isinstance(expr, dict)
    }
    body = json.dumps({"Resources": resources, "Outputs": outputs})
    # moto has no AWS::Scheduler::ScheduleGroup: the group gets the name CloudFormation would
    # give it, and is made from the template's properties below.
    body = body.replace('{"Ref": "ScheduleGroup"}', json.dumps(group))
    body = body.replace("${ScheduleGroup}", group)
    config = Config(retries={"max_attempts": 1})
    cfn = boto3.client("cloudformation", endpoint_url=endpoint, region_name=REGION, config=config)
    cfn.create_stack(StackName=stack_name, TemplateBody=body)
    stack = cfn.describe_stacks(StackName=stack_name)["Stacks"][0]
    assert stack["StackStatus"] == "CREATE_COMPLETE", stack
    values = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    env: dict[str, str] = {}
    for i, (name, expr) in enumerate(env_exprs.items()):
        env[name] = values[f"Env{i}"] if isinstance(expr, dict) else str(expr)
    env["TQ_SCHEDULER_GROUP"] = group if raw_env["TQ_SCHEDULER_GROUP"] else ""

    [group_props] = template.of_type("AWS::Scheduler::ScheduleGroup").values()
    scheduler = boto3.client("scheduler", endpoint_url=endpoint, region_name=REGION, config=config)
    scheduler.create_schedule_group(Name=group, **group_props)
    [(table_id, table)] = template.of_type("AWS::DynamoDB::Table").items()
    dynamodb = boto3.client("dynamodb", endpoint_url=endpoint, region_name=REGION, config=config)
    physical = cfn.describe_stack_resource(StackName=stack_name, LogicalResourceId=table_id)
    table_name = physical["StackResourceDetail"]["PhysicalResourceId"]
    dynamodb.update_time_to_live(
        TableName=table_name, TimeToLiveSpecification=table["TimeToLiveSpecification"]
    )
    return env


@pytest.fixture
def deployed(
    transformed: Template, moto_server: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, str]]:
    env = deploy(transformed, moto_server)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("TQ_ENDPOINT_URL", moto_server)  # the only change for an emulator
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "1")
    sys.modules.pop("tests.infra.rehearsal_app", None)
    import lambdas.worker

    tq_logger = logging.getLogger("tq_aws")  # the handler's Powertools Logger configures it
    saved = (list(tq_logger.handlers), tq_logger.level, tq_logger.propagate)

    lambdas.worker.lambda_handler.cache_clear()
    yield env
    if lambdas.worker.lambda_handler.cache_info().currsize:
        handler: Any = lambdas.worker.lambda_handler()
        handler.run(handler.app.aclose())
    lambdas.worker.lambda_handler.cache_clear()
    tq_logger.handlers[:] = saved[0]
    tq_logger.setLevel(saved[1])
    tq_logger.propagate = saved[2]


def kinesis_events(
    kinesis: Any, stream: str, iterators: dict[str, str]
) -> Iterator[dict[str, Any]]:
    """One event per shard with the records added since the last read, shaped as Lambda
    shapes them."""
    description = kinesis.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]
    arn = description["StreamARN"]
    for shard in kinesis.list_shards(StreamName=stream)["Shards"]:
        shard_id = shard["ShardId"]
        if shard_id not in iterators:
            iterators[shard_id] = kinesis.get_shard_iterator(
                StreamName=stream, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON"
            )["ShardIterator"]
        page = kinesis.get_records(ShardIterator=iterators[shard_id])
        iterators[shard_id] = page["NextShardIterator"]
        if page["Records"]:
            yield {
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
                    for r in page["Records"]
                ]
            }


def sqs_event(sqs: Any, queue_url: str) -> tuple[dict[str, Any], dict[str, str]] | None:
    """The queue's waiting messages as an SQS event, and their receipt handles."""
    messages = sqs.receive_message(
        QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0, AttributeNames=["All"]
    ).get("Messages", [])
    if not messages:
        return None
    arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    records = [
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
    return {"Records": records}, {m["MessageId"]: m["ReceiptHandle"] for m in messages}


async def add_order(items: list[str]) -> str:
    producer = TaskQueue.from_env()
    try:
        [task_id] = await producer.add_tasks(
            [Task(type="order", queue_id="orders", payload=items, force_store=True)]
        )
        return task_id
    finally:
        await producer.aclose()


async def flow_of(task_id: str) -> Any:
    """The status of the flow the stored task started."""
    reader = TaskQueue.from_env()
    try:
        task = await reader.get_task(task_id)
        assert task is not None and task.execution_result is not None
        return await reader.flow_status(task.execution_result["flow_id"])
    finally:
        await reader.aclose()


class Worker:
    """The worker function fed with what its event sources would read: the stream's new
    records and the queue's messages, until both are idle. Records the AWS calls it makes."""

    def __init__(self, deployed: dict[str, str]) -> None:
        endpoint = os.environ["TQ_ENDPOINT_URL"]
        config = Config(retries={"max_attempts": 1})
        self.kinesis = boto3.client(
            "kinesis", endpoint_url=endpoint, region_name=REGION, config=config
        )
        self.sqs = boto3.client("sqs", endpoint_url=endpoint, region_name=REGION, config=config)
        self.deployed = deployed
        self.iterators: dict[str, str] = {}
        self.invocations = {"kinesis": 0, "sqs": 0}
        self.calls: set[str] = set()

    def invoke(self, event: dict[str, Any]) -> dict[str, Any]:
        import lambdas.worker

        with api_calls() as calls:
            response: dict[str, Any] = lambdas.worker.handler(event, Context())
        self.calls |= calls
        return response

    def drain(self) -> None:
        for _ in range(20):
            idle = True
            for event in kinesis_events(self.kinesis, self.deployed["TQ_STREAM"], self.iterators):
                idle = False
                self.invocations["kinesis"] += 1
                assert self.invoke(event) == {"batchItemFailures": []}
            received = sqs_event(self.sqs, self.deployed["TQ_QUEUE_URL"])
            if received is not None:
                idle = False
                self.invocations["sqs"] += 1
                event, handles = received
                assert self.invoke(event) == {"batchItemFailures": []}
                for handle in handles.values():  # Lambda deletes what was not reported
                    self.sqs.delete_message(
                        QueueUrl=self.deployed["TQ_QUEUE_URL"], ReceiptHandle=handle
                    )
            if idle:
                return
        raise AssertionError("the worker never went idle")


def granted_to(template: Template, handler: str) -> set[str]:
    """The actions the role of the function with ``handler`` is allowed."""
    function, _ = template.function(handler)
    return template.actions(template.role_name_of(template.raw(function)["Properties"]["Role"]))


def test_a_flow_completes_on_the_templates_resources(
    deployed: dict[str, str], transformed: Template
) -> None:
    assert deployed["TQ_QUEUE_URL"] and deployed["TQ_STREAM"] and deployed["TQ_BUCKET"]
    assert deployed["TQ_SCHEDULER_ROLE_ARN"].startswith("arn:aws:iam::")
    worker = Worker(deployed)

    order_id = asyncio.run(add_order(["a", "b", "c"]))
    worker.drain()
    assert worker.invocations["kinesis"] >= 2 and worker.invocations["sqs"] >= 1

    flow = asyncio.run(flow_of(order_id))
    assert flow.state == "joined", flow
    assert flow.total == 3

    # every call the worker made is one its role grants
    needed = needed_actions(worker.calls)
    assert {"dynamodb:PutItem", "kinesis:PutRecords"} <= needed, worker.calls
    granted = granted_to(transformed, "worker.handler")
    assert needed <= granted, sorted(needed - granted)


def status_call(method: str, path: str, body: Any = None) -> dict[str, Any]:
    """The status function invoked through its function URL, signed by an IAM principal."""
    import lambdas.status
    from tests.status.shop import url_event

    iam = {"userArn": "arn:aws:iam::123456789012:user/operator", "accountId": "123456789012"}
    response: dict[str, Any] = lambdas.status.handler(
        url_event(method, path, body=body, iam=iam), Context()
    )
    return response


def test_the_status_function_reads_and_acts_with_its_roles_rights(
    deployed: dict[str, str], transformed: Template
) -> None:
    import lambdas.status

    lambdas.status.status_handler.cache_clear()
    worker = Worker(deployed)
    [refund_id, later_id] = asyncio.run(add_refund_and_later())
    worker.drain()

    with api_calls() as calls:
        for path in ("/", "/entities/customer/c-1", f"/tasks/{refund_id}", "/poison"):
            assert status_call("GET", path)["statusCode"] == 200, path
        assert status_call("POST", f"/tasks/{refund_id}/retry")["statusCode"] == 200
        assert status_call("POST", f"/tasks/{later_id}/cancel")["statusCode"] == 200
    lambdas.status.status_handler.cache_clear()
    worker.drain()  # the retried refund runs (and fails) again
    assert asyncio.run(attempts_of(refund_id)) == 1

    needed = needed_actions(calls)
    assert {"dynamodb:Query", "dynamodb:GetItem", "kinesis:PutRecords"} <= needed, calls
    granted = granted_to(transformed, "status.handler")
    assert needed <= granted, sorted(needed - granted)


async def add_refund_and_later() -> list[str]:
    producer = TaskQueue.from_env()
    customer = Entity(id="c-1", type="customer")
    try:
        return await producer.add_tasks(
            [
                Task(type="refund", queue_id="orders", entity=customer),
                Task(
                    type="refund",
                    queue_id="orders",
                    entity=customer,
                    execute_at=datetime.now(UTC) + timedelta(hours=1),
                ),
            ]
        )
    finally:
        await producer.aclose()


async def attempts_of(task_id: str) -> int:
    reader = TaskQueue.from_env()
    try:
        task = await reader.get_task(task_id)
        assert task is not None and task.status == "failed", task
        return task.retry_count
    finally:
        await reader.aclose()
