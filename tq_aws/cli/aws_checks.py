"""What the AWS worker checks before it starts: credentials, then each resource it uses, one
cheap read each. A worker that cannot work says why and exits, instead of logging the same
failure every round."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from tq_aws.backends.aws.clients import error_code
from tq_aws.backends.aws.factory import AwsResources

FIX = "deploy the stack (docs/deploy.md), or create it with `await app.ensure_resources()`"


def _reason(exc: Exception) -> str:
    code = error_code(exc)
    text = str(exc).replace("\n", " ")
    return f"{code}: {text}" if code and code not in text else text


async def _check(what: str, call: Callable[[], Awaitable[Any]], fix: str) -> str | None:
    try:
        await call()
    except (BotoCoreError, ClientError, OSError) as exc:
        return f"{what}: {_reason(exc)}; {fix}"
    return None


async def aws_problems(resources: AwsResources) -> list[str]:
    """One line per thing that is not usable: the credentials (then nothing else is tried),
    the DynamoDB table, the Kinesis stream, each SQS queue, the bucket and the schedule group."""
    clients = resources.clients
    sts = await clients.get("sts")
    problem = await _check(
        "AWS credentials",
        sts.get_caller_identity,
        "give the worker credentials (a task role, AWS_PROFILE or AWS_ACCESS_KEY_ID)",
    )
    if problem:
        return [problem]
    checks: list[Awaitable[str | None]] = []
    dynamodb = await clients.get("dynamodb")
    checks.append(
        _check(
            f"DynamoDB table {resources.table!r}",
            lambda: dynamodb.describe_table(TableName=resources.table),
            FIX,
        )
    )
    stream = resources.routing.stream
    if stream:
        kinesis = await clients.get("kinesis")
        checks.append(
            _check(
                f"Kinesis stream {stream!r}",
                lambda: kinesis.describe_stream_summary(StreamName=stream),
                FIX,
            )
        )
    urls = resources.routing.queue_urls()
    if urls:
        sqs = await clients.get("sqs")
        for url in urls:
            checks.append(
                _check(
                    f"SQS queue {url}",
                    functools.partial(
                        sqs.get_queue_attributes, QueueUrl=url, AttributeNames=["QueueArn"]
                    ),
                    FIX,
                )
            )
    if resources.bucket:
        s3 = await clients.get("s3")
        bucket = resources.bucket
        checks.append(_check(f"S3 bucket {bucket!r}", lambda: s3.head_bucket(Bucket=bucket), FIX))
    scheduler = await clients.get("scheduler")
    group = resources.scheduler_group
    checks.append(
        _check(
            f"EventBridge Scheduler group {group!r}",
            lambda: scheduler.get_schedule_group(Name=group),
            FIX,
        )
    )
    return [p for p in await asyncio.gather(*checks) if p]


def where(resources: AwsResources) -> str:
    """``region us-east-1`` and the endpoint when one is set."""
    settings = resources.settings
    found = f"region {settings.region}"
    if settings.endpoint_url:
        found += f", endpoint {settings.endpoint_url}"
    return found


__all__ = ["FIX", "aws_problems", "where"]
