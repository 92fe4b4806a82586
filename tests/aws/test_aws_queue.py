"""Building a TaskQueue on AWS: ``TaskQueue.aws`` arguments, ``TaskQueue.from_env`` (``TQ_*``),
``ensure_resources`` on moto, and closing. End-to-end behaviour is in ``test_end_to_end.py``."""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
from datetime import timedelta
from typing import Any

import boto3
import pytest

from tq_aws import Actions, Task, TaskQueue
from tq_aws.backends.aws.factory import dynamodb_table_name, settings_from_env
from tq_aws.backends.aws.routing import KinesisRoute, SqsRoute
from tq_aws.backends.memory import MemoryBlobStore, MemoryTransport
from tq_aws.errors import ConfigurationError, InvalidScheduleNameError
from tq_aws.testing import ManualClock

REGION = "us-east-1"
ACCOUNT = "123456789012"
TQ_VARIABLES = (
    "STREAM",
    "QUEUE_URL",
    "SQS_QUEUES",
    "TABLE",
    "BUCKET",
    "SCHEDULER_GROUP",
    "SCHEDULER_ROLE_ARN",
    "SCHEDULER_DLQ_ARN",
    "REGION",
    "ENDPOINT_URL",
)


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """A clean ``TQ_*`` environment."""
    for name in TQ_VARIABLES:
        monkeypatch.delenv(f"TQ_{name}", raising=False)
    monkeypatch.delenv("AWS_REGION", raising=False)
    return monkeypatch


def _local(**kwargs: Any) -> TaskQueue:
    """``TaskQueue.aws`` against a loopback endpoint nothing listens on (no request is made)."""
    return TaskQueue.aws(endpoint_url="http://127.0.0.1:9", **kwargs)


# -- TaskQueue.aws arguments ------------------------------------------------------------------


def test_aws_needs_a_stream_or_a_queue() -> None:
    with pytest.raises(ConfigurationError, match=r"stream=\.\.\., queue_url=\.\.\."):
        _local(table="tq")


def test_sqs_queue_ids_without_urls_need_queue_url() -> None:
    with pytest.raises(ConfigurationError, match="queue_url"):
        _local(stream="s", sqs_queues=["mail"])


def test_a_queue_url_must_be_a_url() -> None:
    with pytest.raises(ConfigurationError, match="queue_url"):
        _local(queue_url="not-a-url")
    with pytest.raises(ConfigurationError, match="queue_url"):
        _local(stream="s", sqs_queues={"mail": "mail"})


def test_routing_sends_listed_queue_ids_by_sqs_and_the_rest_by_kinesis() -> None:
    url = f"http://127.0.0.1:9/{ACCOUNT}/mail"
    app = _local(stream="tq-tasks", queue_url=url, sqs_queues=["mail"])
    routing = app.resources.routing
    assert routing.route("mail") == SqsRoute(url)
    assert routing.route("media") == KinesisRoute("tq-tasks")
    sqs_only = _local(queue_url=url)
    assert sqs_only.resources.routing.route("anything") == SqsRoute(url)


def test_table_names_shorter_than_three_characters_become_a_prefix() -> None:
    assert dynamodb_table_name("abc") == "abc"
    assert dynamodb_table_name("t") == "t-store"
    assert dynamodb_table_name("tq") == "tq-store"
    with pytest.raises(ConfigurationError, match="table"):
        dynamodb_table_name("")
    assert _local(stream="s", table="tq").resources.table == "tq-store"


def test_a_table_name_DynamoDB_refuses_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="table="):
        _local(stream="s", table="no spaces allowed")


def test_a_bad_schedule_group_is_refused_up_front() -> None:
    with pytest.raises(InvalidScheduleNameError, match="group"):
        _local(stream="s", scheduler_group="bad group!")


def test_a_bucket_name_S3_refuses_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="bucket"):
        _local(stream="s", bucket="B")


def test_a_stream_name_Kinesis_refuses_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="stream"):
        _local(stream="bad name!")


def test_the_scheduler_role_is_required_on_aws_itself() -> None:
    with pytest.raises(ConfigurationError, match="scheduler_role_arn"):
        TaskQueue.aws(stream="s", region=REGION)
    app = TaskQueue.aws(
        stream="s", region=REGION, scheduler_role_arn=f"arn:aws:iam::{ACCOUNT}:role/tq"
    )
    assert app.scheduler.role_arn == f"arn:aws:iam::{ACCOUNT}:role/tq"  # type: ignore[attr-defined]
    assert _local(stream="s").scheduler.role_arn.startswith("arn:aws:iam::")  # type: ignore[attr-defined]


def test_schedules_fire_in_run_until_idle_only_on_a_local_endpoint() -> None:
    assert hasattr(_local(stream="s").scheduler, "fire_due")
    assert not hasattr(_local(stream="s", fire_schedules=False).scheduler, "fire_due")
    aws = TaskQueue.aws(stream="s", scheduler_role_arn=f"arn:aws:iam::{ACCOUNT}:role/tq")
    assert not hasattr(aws.scheduler, "fire_due")
    assert aws.next_due() is None
    with pytest.raises(ConfigurationError, match="simulate_firing"):
        TaskQueue.aws(
            stream="s",
            scheduler_role_arn=f"arn:aws:iam::{ACCOUNT}:role/tq",
            fire_schedules=True,
        )


def test_without_a_bucket_large_values_stay_in_process_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="tq_aws.backends.aws.factory"):
        app = _local(stream="s")
    assert isinstance(app.blob_store, MemoryBlobStore)
    assert "no bucket=" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="tq_aws.backends.aws.factory"):
        with_bucket = _local(stream="s", bucket="tq-blobs")
    assert not isinstance(with_bucket.blob_store, MemoryBlobStore)
    assert "no bucket=" not in caplog.text


def test_taskqueue_options_pass_through_and_are_checked() -> None:
    app = _local(stream="s", batch_size=7, processing_grace=0.5, result_limit=2048)
    assert app.batch_size == 7
    with pytest.raises(ConfigurationError, match="batch_size"):
        _local(stream="s", batch_size=0)
    with pytest.raises(ConfigurationError, match="max_record_bytes"):
        _local(stream="s", max_record_bytes=0)


async def test_ensure_resources_on_the_embedded_default_does_nothing() -> None:
    app = TaskQueue()
    await app.ensure_resources()
    await app.aclose()
    assert app.resources is None


# -- TaskQueue.from_env -------------------------------------------------------------------------


def test_from_env_without_a_transport_is_the_embedded_default(env: pytest.MonkeyPatch) -> None:
    env.setenv("TQ_TABLE", "orders")
    app = TaskQueue.from_env(batch_size=3)
    assert app.resources is None
    assert isinstance(app.transport, MemoryTransport)
    assert app.batch_size == 3


def test_settings_from_env_reads_every_variable() -> None:
    environ = {
        "TQ_STREAM": " tq-tasks ",
        "TQ_QUEUE_URL": "https://sqs.eu-west-1.amazonaws.com/1/q",
        "TQ_SQS_QUEUES": "mail, sms ,",
        "TQ_TABLE": "orders",
        "TQ_BUCKET": "tq-blobs",
        "TQ_SCHEDULER_GROUP": "grp",
        "TQ_SCHEDULER_ROLE_ARN": "arn:aws:iam::1:role/r",
        "TQ_SCHEDULER_DLQ_ARN": "arn:aws:sqs:eu-west-1:1:dlq",
        "TQ_REGION": "eu-west-1",
        "TQ_ENDPOINT_URL": "http://127.0.0.1:9",
        "AWS_REGION": "us-west-2",
    }
    assert settings_from_env(environ) == {
        "stream": "tq-tasks",
        "queue_url": "https://sqs.eu-west-1.amazonaws.com/1/q",
        "sqs_queues": ["mail", "sms"],
        "table": "orders",
        "bucket": "tq-blobs",
        "scheduler_group": "grp",
        "scheduler_role_arn": "arn:aws:iam::1:role/r",
        "scheduler_dead_letter_arn": "arn:aws:sqs:eu-west-1:1:dlq",
        "region": "eu-west-1",
        "endpoint_url": "http://127.0.0.1:9",
    }


def test_settings_from_env_defaults_and_region_fallbacks() -> None:
    got = settings_from_env({"TQ_STREAM": "s", "TQ_TABLE": "  ", "AWS_REGION": "us-west-2"})
    assert got is not None
    assert (got["table"], got["scheduler_group"], got["region"]) == ("tq", "tq", "us-west-2")
    assert (got["bucket"], got["endpoint_url"], got["sqs_queues"]) == (None, None, None)
    got = settings_from_env({"TQ_QUEUE_URL": "https://q", "AWS_DEFAULT_REGION": "ap-south-1"})
    assert got is not None and got["region"] == "ap-south-1"
    assert settings_from_env({"TQ_QUEUE_URL": "https://q"}) is not None
    assert settings_from_env({}) is None
    assert settings_from_env({"TQ_STREAM": "   "}) is None


def test_sqs_queues_as_a_json_object() -> None:
    got = settings_from_env({"TQ_STREAM": "s", "TQ_SQS_QUEUES": '{"mail": "https://q/mail"}'})
    assert got is not None and got["sqs_queues"] == {"mail": "https://q/mail"}


def test_sqs_queues_that_are_not_json_name_the_variable() -> None:
    with pytest.raises(ConfigurationError, match="TQ_SQS_QUEUES"):
        settings_from_env({"TQ_STREAM": "s", "TQ_SQS_QUEUES": '{"mail": '})


def test_from_env_builds_the_aws_app_the_variables_describe(env: pytest.MonkeyPatch) -> None:
    url = f"http://127.0.0.1:9/{ACCOUNT}/mail"
    env.setenv("TQ_STREAM", "tq-tasks")
    env.setenv("TQ_QUEUE_URL", url)
    env.setenv("TQ_SQS_QUEUES", "mail")
    env.setenv("TQ_TABLE", "orders")
    env.setenv("TQ_SCHEDULER_GROUP", "grp")
    env.setenv("TQ_ENDPOINT_URL", "http://127.0.0.1:9")
    clock = ManualClock()
    app = TaskQueue.from_env(clock=clock, batch_size=9)
    assert app.clock is clock and app.batch_size == 9
    resources = app.resources
    assert resources.settings.endpoint_url == "http://127.0.0.1:9"
    assert resources.settings.region == REGION  # AWS_DEFAULT_REGION, set for the tests
    assert (resources.table, resources.scheduler_group, resources.bucket) == (
        "orders",
        "grp",
        None,
    )
    assert resources.routing.route("mail") == SqsRoute(url)
    assert resources.routing.route("other") == KinesisRoute("tq-tasks")


def test_from_env_on_aws_without_a_role_says_which_variable(env: pytest.MonkeyPatch) -> None:
    env.setenv("TQ_STREAM", "tq-tasks")
    with pytest.raises(ConfigurationError, match="scheduler_role_arn"):
        TaskQueue.from_env()


def test_from_env_with_only_mapped_sqs_queues_is_not_silently_in_memory(
    env: pytest.MonkeyPatch,
) -> None:
    env.setenv("TQ_SQS_QUEUES", '{"mail": "http://127.0.0.1:9/123456789012/mail"}')
    env.setenv("TQ_ENDPOINT_URL", "http://127.0.0.1:9")
    app = TaskQueue.from_env()
    assert app.resources is not None


# -- ensure_resources on moto ---------------------------------------------------------------


async def test_ensure_resources_creates_everything_once(moto_server: str) -> None:
    stream, bucket, group = _name("tq-stream"), _name("tq-bucket"), _name("grp")
    url = f"{moto_server}/{ACCOUNT}/{_name('mail')}"
    app = TaskQueue.aws(
        stream=stream,
        queue_url=url,
        sqs_queues=["mail"],
        table="tq",
        bucket=bucket,
        scheduler_group=group,
        region=REGION,
        endpoint_url=moto_server,
    )
    await app.ensure_resources()
    await app.ensure_resources()  # safe to repeat
    await app.aclose()
    table = app.resources.table
    assert table == "tq-store"  # "tq" is too short for a table name: it is a prefix

    def client(service: str) -> Any:
        return boto3.client(service, region_name=REGION, endpoint_url=moto_server)

    summary = client("kinesis").describe_stream_summary(StreamName=stream)
    assert summary["StreamDescriptionSummary"]["StreamModeDetails"]["StreamMode"] == "ON_DEMAND"
    assert client("sqs").get_queue_url(QueueName=url.rsplit("/", 1)[1])["QueueUrl"] == url
    dynamodb = client("dynamodb")
    keys = dynamodb.describe_table(TableName=table)["Table"]["KeySchema"]
    assert {k["AttributeName"]: k["KeyType"] for k in keys} == {"pk": "HASH", "sk": "RANGE"}
    ttl = dynamodb.describe_time_to_live(TableName=table)["TimeToLiveDescription"]
    assert (ttl["TimeToLiveStatus"], ttl["AttributeName"]) == ("ENABLED", "ttl")
    rules = client("s3").get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    assert [(r["Filter"]["Prefix"], r["Expiration"]["Days"]) for r in rules] == [("tq/", 30)]
    groups = client("scheduler").list_schedule_groups()["ScheduleGroups"]
    assert group in [g["Name"] for g in groups]


async def test_an_app_keeps_working_after_aclose(moto_server: str) -> None:
    clock = ManualClock()
    app = TaskQueue.aws(
        stream=_name("tq-stream"), table="tq", region=REGION, endpoint_url=moto_server, clock=clock
    )
    await app.ensure_resources()
    ran: list[Any] = []

    @app.executor("q", "t")
    async def run(task: Task, actions: Actions) -> None:
        ran.append(task.payload)
        actions.success(task)

    await app.add_tasks([Task(type="t", queue_id="q", payload=1)])
    await app.run_until_idle()
    await app.aclose()
    await app.add_tasks([Task(type="t", queue_id="q", payload=2)])  # clients open again
    await app.run_until_idle()
    await app.aclose()
    assert ran == [1, 2]


async def test_compressed_records_travel_both_ways(moto_server: str) -> None:
    clock = ManualClock()
    url = f"{moto_server}/{ACCOUNT}/{_name('mail')}"
    app = TaskQueue.aws(
        stream=_name("tq-stream"),
        queue_url=url,
        sqs_queues=["mail"],
        table="tq",
        region=REGION,
        endpoint_url=moto_server,
        clock=clock,
        compress_over=256,
    )
    await app.ensure_resources()
    got: list[str] = []
    data: list[bytes] = []
    process = app.processor.process

    async def recording(deliveries: Any) -> None:
        data.extend(d.data for d in deliveries)
        await process(deliveries)

    app.processor.process = recording  # type: ignore[method-assign]
    for queue in ("mail", "media"):

        @app.executor(queue, "t")
        async def run(task: Task, actions: Actions) -> None:
            got.append(task.queue_id)
            actions.success(task)

    text = "compress me " * 200
    await app.add_tasks([Task(type="t", queue_id=q, payload=text) for q in ("mail", "media")])
    await app.run_until_idle()
    await app.aclose()
    assert sorted(got) == ["mail", "media"]
    assert len(data) == 2 and all(d[:1] == b"\x78" for d in data)  # zlib on both transports


async def test_a_fifo_queue_from_ensure_resources_takes_scheduled_deliveries(
    moto_server: str,
) -> None:
    clock = ManualClock()
    app = TaskQueue.aws(
        queue_url=f"{moto_server}/{ACCOUNT}/{_name('jobs')}.fifo",
        table="tq",
        region=REGION,
        endpoint_url=moto_server,
        clock=clock,
    )
    await app.ensure_resources()
    ran: list[str] = []

    @app.executor("q", "later")
    async def later(task: Task, actions: Actions) -> None:
        ran.append(task.id or "")
        actions.success(task)

    try:
        [tid] = await app.add_tasks(
            [Task(type="later", queue_id="q", execute_at=clock.now() + timedelta(hours=1))]
        )
        clock.advance(hours=1)
        await app.run_until_idle()
    finally:
        await app.aclose()
    assert ran == [tid]


async def test_aclose_stops_what_add_tasks_sync_started(moto_server: str) -> None:
    app = TaskQueue.aws(
        stream=_name("tq-stream"), table="tq", region=REGION, endpoint_url=moto_server
    )
    await app.ensure_resources()
    before = set(threading.enumerate())
    await asyncio.to_thread(app.add_tasks_sync, [Task(type="t", queue_id="q")])
    await app.aclose()
    left = [t for t in set(threading.enumerate()) - before if t.name == "tq-aws-sync-producer"]
    loop = app._sync_loop
    if left and loop is not None:  # leave nothing running behind this test
        asyncio.run_coroutine_threadsafe(app.resources.clients.aclose(), loop).result()
        loop.call_soon_threadsafe(loop.stop)
        for thread in left:
            thread.join(timeout=5)
    assert left == []


async def test_a_queue_with_smaller_messages_gets_large_payloads_by_claim_check(
    moto_server: str,
) -> None:
    sqs = boto3.client("sqs", region_name=REGION, endpoint_url=moto_server)
    url = sqs.create_queue(QueueName=_name("small"), Attributes={"MaximumMessageSize": "262144"})[
        "QueueUrl"
    ]
    app = TaskQueue.aws(
        queue_url=url,
        table="tq",
        bucket=_name("tq-bucket"),
        region=REGION,
        endpoint_url=moto_server,
        clock=ManualClock(),
        max_record_bytes=200_000,
    )
    await app.ensure_resources()
    got: list[int] = []

    @app.executor("q", "big")
    async def big(task: Task, actions: Actions) -> None:
        got.append(len(task.payload))
        actions.success(task)

    try:
        await app.add_tasks([Task(type="big", queue_id="q", payload="x" * 300_000)])
        await app.run_until_idle()
    finally:
        await app.aclose()
    assert got == [300_000]


async def test_scheduling_many_tasks_asks_for_the_stream_arn_once(moto_server: str) -> None:
    clock = ManualClock()
    app = TaskQueue.aws(
        stream=_name("tq-stream"), table="tq", region=REGION, endpoint_url=moto_server, clock=clock
    )
    await app.ensure_resources()
    kinesis = await app.resources.clients.get("kinesis")
    describes: list[str] = []

    def count(model: Any, **_: Any) -> None:
        describes.append(model.name)

    kinesis.meta.events.register("after-call.kinesis.DescribeStreamSummary", count)
    later = clock.now() + timedelta(hours=1)
    try:
        await app.add_tasks([Task(type="t", queue_id="q", execute_at=later) for _ in range(20)])
    finally:
        await app.aclose()
    assert len(describes) == 1
