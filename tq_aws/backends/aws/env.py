"""The ``TQ_*`` environment variables that name an app's AWS resources (what the SAM and CDK
templates set), read without importing any AWS SDK: ``TaskQueue.from_env()`` on the embedded
default stays free of botocore."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from tq_aws.errors import ConfigurationError

ENV_PREFIX = "TQ_"


def settings_from_env(environ: Mapping[str, str] | None = None) -> dict[str, Any] | None:
    """``TaskQueue.aws`` arguments from ``TQ_*`` variables, or ``None`` when neither
    ``TQ_STREAM`` nor ``TQ_QUEUE_URL`` is set (then the embedded default is used)."""
    env = os.environ if environ is None else environ

    def get(name: str) -> str | None:
        value = env.get(ENV_PREFIX + name)
        return value.strip() if value and value.strip() else None

    stream, queue_url = get("STREAM"), get("QUEUE_URL")
    sqs_raw = get("SQS_QUEUES")
    if not stream and not queue_url and not (sqs_raw and sqs_raw.startswith("{")):
        return None
    sqs_queues: Mapping[str, str] | list[str] | None = None
    if sqs_raw:
        if sqs_raw.startswith("{"):
            try:
                sqs_queues = dict(json.loads(sqs_raw))
            except ValueError as exc:
                raise ConfigurationError(
                    f"TQ_SQS_QUEUES is not valid JSON ({exc}); give a JSON object "
                    '{"queue_id": "queue URL"} or a comma-separated list of queue ids'
                ) from exc
        else:
            sqs_queues = [q.strip() for q in sqs_raw.split(",") if q.strip()]
    return {
        "stream": stream,
        "queue_url": queue_url,
        "sqs_queues": sqs_queues,
        "table": get("TABLE") or "tq",
        "bucket": get("BUCKET"),
        "scheduler_group": get("SCHEDULER_GROUP") or "tq",
        "scheduler_role_arn": get("SCHEDULER_ROLE_ARN"),
        "scheduler_dead_letter_arn": get("SCHEDULER_DLQ_ARN"),
        "region": get("REGION")
        or env.get("AWS_REGION")
        or env.get("AWS_DEFAULT_REGION")
        or "us-east-1",
        "endpoint_url": get("ENDPOINT_URL"),
    }
